"""Model comparison: which models the comparison covers, and reading its evaluation artifacts.

Issue 4 compares the shipped models with the architectures of the source documents, all
trained from scratch by this project's own CLIs with one recipe. :func:`planned_models` lists every
model of the comparison, with the command that trains it; the artifacts themselves are written
by ``python -m core.evaluate artifacts`` (:mod:`core.evaluation.artifacts`) into :func:`eval_dir`:

* ``comparison.json``: one entry per model (status, headline metrics with 95 % CIs, params,
  file size, CPU latency, training command, paths of the files below);
* ``models/<name>.json``: full metrics (confusion matrices, ROC, reliability, per class);
* ``predictions/*.csv``: per-image predictions (paths relative to the dataset folder);
* ``latency.json``: per-model CPU latency from ``python -m core.bench --models``;
* ``logs/<name>.csv``: the per-epoch training log of the evaluated weights;
* ``cards/<name>.json``: model cards of models whose weights do not ship (trained elsewhere).

Everything here only reads files (no Streamlit, no deep-learning backend), so the page stays
fast and never evaluates a model on load.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import config

#: Splits of the classification test set: the official one and the de-duplicated subset.
SPLITS: dict[str, str] = {"official": "Official Testing split", "dedup": "De-duplicated Testing split"}
#: Where the segmenters are scored: the held-out patient fold of figshare_3064.
SEG_SPLIT = "fold4"
#: Dice bands of the segmentation error browser (lower bound inclusive, upper exclusive).
DICE_BANDS: dict[str, tuple[float, float]] = {
    "missed or failed (Dice < 0.5)": (0.0, 0.5),
    "partial (0.5 ≤ Dice < 0.8)": (0.5, 0.8),
    "good (Dice ≥ 0.8)": (0.8, 1.01),
}
STATUS_TEXT: dict[str, str] = {
    "evaluated": "evaluated",
    "awaiting_gpu": "awaiting a GPU training run",
    "awaiting_training": "awaiting a CPU training run",
    "not_evaluated": "trained; artifacts not yet written",
    "weights_missing": "card present, weights file missing here",
}
CLASSIFIER_RECIPE = "--size 128 --epochs 30"
#: Where GPU runs write their (large, non-shipping) weights (``scripts/gpu_train.sh RUNS`` with
#: RUNS = runs/gpu); the artifacts command reads them with --weights.
GPU_RUNS = "runs/gpu/comparison"
TASKS = ("classification", "segmentation", "brats")
#: The GPU recipe of the original 3D U-Net (``scripts/gpu_train.sh RUNS MINUTES 1 unet3d_brats``).
UNET3D_COMMAND = ("python -m core.train.brats --model unet3d --split-like unet2d_brats --crop 96 --base 16 --depth 4 "
                  "--batch 2 --epochs 60 --samples-per-epoch 800 --workers 4 --max-minutes 18 --out runs/gpu/brats")
ARTIFACTS_COMMAND = "python -m core.evaluate artifacts --out weights/eval"


#: Short names of the models for people (the page and its figures); a model not listed uses its label.
DISPLAY_NAMES: dict[str, str] = {
    "resnet_compact": "ResNet-18 style, compact",
    "mobilenet_compact": "MobileNetV2 ×0.5, compact",
    "densenet_compact": "DenseNet-BC, compact",
    "efficientnet_compact": "EfficientNet-B0 style, compact",
    "stacking_ensemble": "Ensemble of the 4 compact CNNs",
    "xception": "Xception",
    "inceptionv3": "InceptionV3",
    "resnet50": "ResNet50",
    "vgg19": "VGG19",
    "densenet121": "DenseNet121",
    "efficientnetb0": "EfficientNetB0",
    "stacking_backbones": "Ensemble of the 4 large CNNs",
    "resunet": "ResUNet",
    "unet": "U-Net",
    "attention_unet": "Attention U-Net",
    "unet2d_brats": "2D U-Net, slice by slice",
    "unet3d_brats": "3D U-Net, sliding window",
}


def display_name(name: str, entry: dict | None = None) -> str:
    """How a model is named for people: :data:`DISPLAY_NAMES`, else its label, else its id."""
    return DISPLAY_NAMES.get(name) or (entry or {}).get("label") or name


class ArtifactMissing(FileNotFoundError):
    """An evaluation artifact is not there; the message says which command writes it."""


@dataclass(frozen=True)
class PlannedModel:
    """One model of the comparison and how it is (or would be) trained."""

    name: str
    task: str                    # classification | segmentation | brats
    label: str
    group: str                   # shipped | comparison
    needs: str                   # cpu | gpu: what its planned training run needs
    command: str
    architecture: str = ""
    input_size: int = 128
    members: tuple[str, ...] = ()
    builder_kwargs: dict = field(default_factory=dict)


def _classifier(name: str, label: str, group: str, needs: str) -> PlannedModel:
    out = f" --out {GPU_RUNS}" if needs == "gpu" else ""
    return PlannedModel(name, "classification", label, group, needs,
                        f"python -m core.train.classifier --model {name} {CLASSIFIER_RECIPE}{out}", name)


def _segmenter_recipe(cards: dict[str, dict]) -> tuple[str, dict]:
    """Training flags and builder arguments of the shipped ResUNet (the recipe U-Net and Attention U-Net copy)."""
    card = cards.get("resunet", {})
    cfg = card.get("config", {})
    flags = card.get("training_command", "python -m core.train.segmenter --model resunet --size 256 --crop 160 "
                                         "--base 12 --epochs 24 --max-minutes 95")
    kwargs = {"input_size": int(cfg.get("size", 256)), "channels": 1, "num_classes": 1,
              "base": int(cfg.get("base", 12)), "depth": int(cfg.get("depth", 4))}
    return flags, kwargs


def _segmenter(name: str, label: str, group: str, cards: dict[str, dict]) -> PlannedModel:
    command, kwargs = _segmenter_recipe(cards)
    words = shlex.split(command)
    if "--model" in words:
        words[words.index("--model") + 1] = name
    else:
        words[3:3] = ["--model", name]
    return PlannedModel(name, "segmentation", label, group, "cpu", shlex.join(words), name,
                        kwargs["input_size"], builder_kwargs=kwargs)


def _manifest() -> dict[str, dict]:
    from core.serving.registry import load_manifest

    return load_manifest().get("models", {})


BACKBONES_4 = ("xception", "inceptionv3", "resnet50", "vgg19")
COMPACT_4 = ("resnet_compact", "mobilenet_compact", "densenet_compact", "efficientnet_compact")


def planned_models() -> list[PlannedModel]:
    """Every model of the comparison, in display order (shipped first)."""
    cards = _manifest()
    return [
        _classifier("resnet_compact", "ResNet-18 layout, compact (member)", "shipped", "cpu"),
        _classifier("mobilenet_compact", "MobileNetV2 α=0.5, compact (member)", "shipped", "cpu"),
        _classifier("densenet_compact", "DenseNet-BC, compact (member)", "shipped", "cpu"),
        _classifier("efficientnet_compact", "EfficientNet-B0 rules, compact (member)", "shipped", "cpu"),
        PlannedModel("stacking_ensemble", "classification", "Stacking ensemble of the 4 compact members", "shipped",
                     "cpu", "python -m core.train.ensemble --members " + " ".join(COMPACT_4), members=COMPACT_4),
        _classifier("xception", "Xception (keras.applications, from scratch)", "comparison", "gpu"),
        _classifier("inceptionv3", "InceptionV3 (keras.applications, from scratch)", "comparison", "gpu"),
        _classifier("resnet50", "ResNet50 (keras.applications, from scratch)", "comparison", "gpu"),
        _classifier("vgg19", "VGG19 (keras.applications, from scratch)", "comparison", "gpu"),
        _classifier("densenet121", "DenseNet121 (keras.applications, from scratch)", "comparison", "gpu"),
        _classifier("efficientnetb0", "EfficientNetB0 (keras.applications, from scratch)", "comparison", "gpu"),
        PlannedModel("stacking_backbones", "classification", "Stacking ensemble of Xception, InceptionV3, ResNet50, VGG19",
                     "comparison", "gpu", "python -m core.train.ensemble --members " + " ".join(BACKBONES_4)
                     + f" --name stacking_backbones --role comparison --out {GPU_RUNS}", members=BACKBONES_4),
        _segmenter("resunet", "ResUNet (shipped)", "shipped", cards),
        _segmenter("unet", "U-Net", "comparison", cards),
        _segmenter("attention_unet", "Attention U-Net", "comparison", cards),
        PlannedModel("unet2d_brats", "brats", "2D region-based U-Net, slice by slice (BraTS)", "shipped", "cpu",
                     cards.get("unet2d_brats", {}).get(
                         "training_command", "python -m core.train.brats --base 12 --size 96 --epochs 30 --max-minutes 110"),
                     "unet2d_brats"),
        PlannedModel("unet3d_brats", "brats", "3D U-Net on 96³ crops, sliding window (BraTS, the original design)",
                     "comparison", "gpu", cards.get("unet3d_brats", {}).get("training_command", UNET3D_COMMAND),
                     "unet3d"),
    ]


def protocol_tta(cards: dict[str, dict] | None = None) -> str:
    """Test-time augmentation every single classifier is scored (and timed) with: the shipped
    ensemble's ``member_tta`` (``hflip``: average over the image and its mirror), so a
    standalone model is measured the way the app runs its members."""
    cards = _manifest() if cards is None else cards
    return (cards.get("stacking_ensemble") or {}).get("member_tta", "none")


def planned(name: str) -> PlannedModel | None:
    return next((p for p in planned_models() if p.name == name), None)


def all_model_names(cards: dict[str, dict] | None = None) -> list[str]:
    """Planned models, then any other classification/segmentation/BraTS model of ``cards``
    (default: the shipped manifest)."""
    names = [p.name for p in planned_models()]
    extra = [n for n, c in (_manifest() if cards is None else cards).items() if n not in names and c.get("task") in TASKS]
    return names + sorted(extra)


# --------------------------------------------------------------------------- reading artifacts

def eval_dir() -> Path:
    """Folder of the evaluation artifacts: ``BTD_EVAL_DIR`` or ``weights/eval``."""
    env = os.environ.get("BTD_EVAL_DIR")
    return Path(env) if env else config.WEIGHTS_DIR / "eval"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ArtifactMissing(f"{path.name} is missing from {path.parent}: run `{ARTIFACTS_COMMAND}`")
    return json.loads(path.read_text())


def load_summary(folder: Path | None = None) -> dict:
    """``comparison.json``: every model's status and headline numbers."""
    return _read_json((folder or eval_dir()) / "comparison.json")


def load_detail(entry: dict, folder: Path | None = None) -> dict:
    """A model's full metrics (``models/<name>.json``) from its summary entry."""
    if not entry.get("detail"):
        raise ArtifactMissing(f"{entry['name']} has no evaluation artifact ({STATUS_TEXT.get(entry['status'], entry['status'])})")
    return _read_json((folder or eval_dir()) / entry["detail"])


def load_predictions(entry: dict, folder: Path | None = None) -> pd.DataFrame:
    """Per-image predictions of a model joined with the test index (paths, labels, split flags)."""
    folder = folder or eval_dir()
    pred = entry.get("predictions") or {}
    if not pred.get("file") or not pred.get("index"):
        raise ArtifactMissing(f"{entry['name']} has no per-image predictions: run `{ARTIFACTS_COMMAND}`")
    for rel in (pred["file"], pred["index"]):
        if not (folder / rel).is_file():
            raise ArtifactMissing(f"{rel} is missing from {folder}: run `{ARTIFACTS_COMMAND}`")
    index = pd.read_csv(folder / pred["index"])
    values = pd.read_csv(folder / pred["file"])
    if len(index) != len(values):
        raise ArtifactMissing(f"{pred['file']} ({len(values)} rows) does not match {pred['index']} ({len(index)} rows): "
                              f"run `{ARTIFACTS_COMMAND} --force`")
    return pd.concat([index, values], axis=1)


def load_log(entry: dict, folder: Path | None = None) -> pd.DataFrame | None:
    """Per-epoch training log (``<eval>/logs/<name>.csv``, copied there by the artifacts command) as a
    frame with epochs counted from 1; ``None`` if absent or empty."""
    if not entry.get("log"):
        return None
    path = (folder or eval_dir()) / entry["log"]
    if not path.is_file() or path.stat().st_size == 0:
        return None
    frame = pd.read_csv(path)
    if frame.empty:
        return None
    if "epoch" in frame:
        frame["epoch"] = frame["epoch"] + 1  # Keras CSVLogger counts from 0
    return frame


# --------------------------------------------------------------------------- tables

def status_text(entry: dict) -> str:
    """What a model's row says about it (flags artifacts made from earlier weights)."""
    if entry["status"] == "evaluated" and entry.get("stale"):
        return f"evaluated on earlier weights: rerun `{ARTIFACTS_COMMAND}`"
    if entry["status"] == "evaluated" and entry.get("member_runs_differ"):
        runs = ", ".join(f"{m} (val accuracy {acc})" if acc is not None else m
                         for m, acc in entry["member_runs_differ"].items())
        return f"evaluated; fitted on other runs of {runs} than their rows show"
    return STATUS_TEXT.get(entry["status"], entry["status"])


def _mb(size: Any) -> float | None:
    return round(size / 1e6, 3) if isinstance(size, (int, float)) else None


def _ci(values: Any, k: int) -> float | None:
    return values[k] if isinstance(values, list) and len(values) == 2 else None


def _identity(m: dict) -> dict:
    """The leading columns of every comparison table."""
    return {"model": m["name"], "description": m["label"], "group": m["group"]}


def _footprint(m: dict, unit: str) -> dict:
    """The trailing columns of every comparison table: training epochs (``*``: cut by the wall-time
    budget, the learning rate annealed within it), size, CPU latency per ``unit``, status."""
    epochs = m.get("epochs")
    trained = None if epochs is None else f"{epochs}{'*' if m.get('stopped_by_time_budget') else ''}"
    return {"epochs": trained, "params": m.get("params"), "size MB": _mb(m.get("size_bytes")),
            f"CPU ms/{unit}": m.get("latency_ms"), f"LiteRT ms/{unit}": m.get("latency_litert_ms"),
            "status": status_text(m)}


def models_of(summary: dict, task: str) -> list[dict]:
    return [m for m in summary["models"].values() if m["task"] == task]


def classification_table(summary: dict, split: str) -> pd.DataFrame:
    """One row per classifier: metrics on ``split`` (``official``/``dedup``) with 95 % CIs, size, speed, status."""
    rows = []
    for m in models_of(summary, "classification"):
        s = (m.get("metrics") or {}).get(split) or {}
        rows.append({
            **_identity(m),
            "accuracy": s.get("accuracy"), "acc CI low": _ci(s.get("accuracy_ci95"), 0),
            "acc CI high": _ci(s.get("accuracy_ci95"), 1), "macro F1": s.get("macro_f1"),
            "macro AUC": s.get("macro_auc"), "ECE": s.get("ece"), "n": s.get("n"),
            "val accuracy (training)": m.get("val_accuracy"), **_footprint(m, "image"),
        })
    return pd.DataFrame(rows)


def segmentation_table(summary: dict) -> pd.DataFrame:
    """One row per 2D segmenter on the held-out patient fold: Dice (CI), IoU, HD95 mm, size, speed."""
    rows = []
    for m in models_of(summary, "segmentation"):
        s = (m.get("metrics") or {}).get(SEG_SPLIT) or {}
        rows.append({
            **_identity(m),
            "mean Dice": s.get("mean_dice"), "Dice CI low": _ci(s.get("mean_dice_ci95"), 0),
            "Dice CI high": _ci(s.get("mean_dice_ci95"), 1), "global Dice": s.get("global_dice"),
            "mean IoU": s.get("mean_iou"), "HD95 mm": s.get("mean_hd95_mm"), "n": s.get("n"),
            "patients": s.get("n_patients"), "val Dice (training)": m.get("val_dice"), **_footprint(m, "image"),
        })
    return pd.DataFrame(rows)


def segmentation_class_table(summary: dict) -> pd.DataFrame:
    """Per tumour class metrics of every evaluated segmenter."""
    rows = []
    for m in models_of(summary, "segmentation"):
        per_class = ((m.get("metrics") or {}).get(SEG_SPLIT) or {}).get("per_class") or {}
        for cls, s in per_class.items():
            rows.append({"model": m["name"], "tumour class": cls, "mean Dice": s.get("mean_dice"),
                         "Dice CI low": _ci(s.get("mean_dice_ci95"), 0), "Dice CI high": _ci(s.get("mean_dice_ci95"), 1),
                         "global Dice": s.get("global_dice"), "mean IoU": s.get("mean_iou"),
                         "HD95 mm": s.get("mean_hd95_mm"), "n": s.get("n")})
    return pd.DataFrame(rows)


def brats_table(summary: dict) -> pd.DataFrame:
    """BraTS models: mean Dice and HD95 per region on the unseen cases."""
    rows = []
    for m in models_of(summary, "brats"):
        s = (m.get("metrics") or {}).get("test") or {}
        row = {**_identity(m), "cases": s.get("n")}
        for region in ("WT", "TC", "ET", "NCR", "ED"):
            if region in s:
                row[f"{region} Dice"] = s[region].get("dice")
                row[f"{region} HD95 mm"] = s[region].get("hd95_mm")
        row.update({"network input": m.get("latency_input"), **_footprint(m, "pass")})
        rows.append(row)
    return pd.DataFrame(rows)


def brats_case_table(detail: dict) -> pd.DataFrame:
    """One row per unseen BraTS case of a model's detail artifact: Dice and HD95 per region."""
    rows = []
    for case, regions in sorted(((detail.get("result") or {}).get("cases") or {}).items()):
        row: dict[str, Any] = {"case": case}
        for region, scores in regions.items():
            row[f"{region} Dice"] = scores.get("dice")
            row[f"{region} HD95 mm"] = scores.get("hd95_mm")
        rows.append(row)
    return pd.DataFrame(rows)


def pending_runs(summary: dict) -> list[dict]:
    """Models without artifacts: name, what they wait for, and the command that produces them."""
    out = []
    for m in summary["models"].values():
        if m["status"] == "evaluated" and not m.get("stale"):
            continue
        commands = [m["training_command"]] if m["status"] in ("awaiting_gpu", "awaiting_training", "weights_missing") else []
        evaluate = ARTIFACTS_COMMAND + (f" --weights {GPU_RUNS}" if f"--out {GPU_RUNS}" in m["training_command"] else "")
        out.append({"name": m["name"], "label": m["label"], "task": m["task"], "status": status_text(m),
                    "commands": commands + [evaluate]})
    return out


def headline(entry: dict, split: str) -> float | None:
    """The number a model is ranked by: accuracy on ``split``, mean Dice, or mean ET Dice."""
    metrics = entry.get("metrics") or {}
    if entry["task"] == "classification":
        return (metrics.get(split) or {}).get("accuracy")
    if entry["task"] == "segmentation":
        return (metrics.get(SEG_SPLIT) or {}).get("mean_dice")
    return ((metrics.get("test") or {}).get("ET") or {}).get("dice")


# --------------------------------------------------------------------------- error browser

def confusion_cell(predictions: pd.DataFrame, true_class: str, predicted_class: str, split: str) -> pd.DataFrame:
    """Test images whose truth is ``true_class`` and prediction ``predicted_class`` on ``split``."""
    rows = predictions[(predictions["label"] == true_class) & (predictions["pred"] == predicted_class)]
    if split == "dedup":
        rows = rows[rows["clean"] == 1]
    prob = f"p_{predicted_class}"
    return rows.sort_values(prob, ascending=False).reset_index(drop=True)


def cell_counts(predictions: pd.DataFrame, classes: list[str], split: str) -> np.ndarray:
    """Confusion matrix rebuilt from per-image predictions (rows truth, columns prediction)."""
    rows = predictions[predictions["clean"] == 1] if split == "dedup" else predictions
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(rows["label"], rows["pred"]):
        cm[index[t], index[p]] += 1
    return cm


def dice_band(cases: pd.DataFrame, tumour_class: str | None, band: str) -> pd.DataFrame:
    """Segmentation cases of one tumour class (``None``: all) whose Dice falls in ``band``."""
    lo, hi = DICE_BANDS[band]
    rows = cases[(cases["dice"] >= lo) & (cases["dice"] < hi)]
    if tumour_class:
        rows = rows[rows["label"] == tumour_class]
    return rows.sort_values("dice").reset_index(drop=True)


def polygon_mask(polygon: Any, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask from a stored outline ``"x y x y ..."`` per component, components joined by ``|``.

    An empty or missing outline gives an empty mask.
    """
    import cv2

    mask = np.zeros(shape, np.uint8)
    if isinstance(polygon, str) and polygon.strip():
        parts = [np.array(part.split(), dtype=np.int32).reshape(-1, 2) for part in polygon.split("|") if part.strip()]
        cv2.fillPoly(mask, parts, 1)
    return mask.astype(bool)


def data_file(dataset: str, relative: str) -> Path | None:
    """A test image under the public data folder, or ``None`` without data (or outside it)."""
    root = config.data_dir()
    if root is None:
        return None
    base = (root / dataset).resolve()
    path = (base / relative).resolve()
    if base not in path.parents or not path.is_file():
        return None
    return path
