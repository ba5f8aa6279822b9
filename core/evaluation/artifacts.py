"""Write the model-comparison artifacts: ``python -m core.evaluate artifacts --out weights/eval``.

For every model of :func:`core.evaluation.comparison.all_model_names` whose weights are here:

* classifiers: the official Testing split (``brain_mri_4class/Testing``) and its de-duplicated
  subset (``weights/eval/dedup_testing.json``): accuracy, per-class precision/recall/F1, confusion
  matrix, one-vs-rest ROC (subsampled) and AUC, reliability curve, ECE, bootstrap 95 % CIs of
  accuracy, macro F1 and ECE; stacking ensembles also ECE before/after temperature scaling;
  per-image predictions (``predictions/<name>.csv`` beside a shared ``testing_index.csv``);
* 2D segmenters: the held-out patient fold 4 of ``figshare_3064`` at 0.98 mm/pixel: mean and
  global Dice, IoU, HD95 (mm), overall and per tumour class, with patient-clustered bootstrap
  CIs; per-image scores and the predicted outline (``predictions/<name>.csv``);
* BraTS models: :func:`core.evaluation.scoring.evaluate_brats` on the unseen cases;
* every model: CPU latency (:func:`core.evaluation.bench.write_latencies` into ``latency.json``).

Then ``comparison.json`` is rebuilt from all of that plus the model cards, listing the models
still waiting for a training run with their commands. Idempotent: a model whose artifact was
made from the same weights (sha256), data listing, split and settings is not evaluated again
(``--force`` re-evaluates); models whose weights are not in this checkout keep their
artifacts. Paths inside artifacts are relative to the dataset folder or to ``weights/``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import f1_score

from core import config
from core.data.datasets import list_classification, list_segmentation, load_classification
from core.errors import ModelUnavailable
from core.evaluation import comparison, scoring
from core.evaluation.bench import write_latencies
from core.evaluation.jsonsafe import json_ready, json_text
from core.imaging.metrics import (bootstrap_ci, classification_report, dice, expected_calibration_error, hausdorff95,
                                  iou, reliability_curve, roc_curves, segmentation_summary, subsample_curve)
from core.serving import registry
from core.slices.classify import load_member, predict_members
from core.slices.ensemble import StackingEnsemble
from core.slices.segment import Segmenter, rules_from_card

ARTIFACT_VERSION = 1
CLS_DATASET = "brain_mri_4class/Testing"
SEG_DATASET = "figshare_3064"
BRATS_DATASET = "brats"
SEG_FOLDS = (4,)
SEG_SPACING_MM = 0.98
ROC_POINTS = 60
PROB_DIGITS = 3
CLS_INDEX = "predictions/testing_index.csv"
SEG_INDEX = "predictions/figshare_fold4_index.csv"


@dataclass
class Options:
    out: Path
    data: Path | None = None
    models: list[str] | None = None
    force: bool = False
    latency: bool = True
    n_boot: int = 1000
    repeats: int = 10
    weights_dir: Path | None = None
    clean_list: Path | None = None


def _write_json(path: Path, data: dict) -> None:
    """``data`` as strict, rounded JSON at ``path`` (:func:`_write_text`)."""
    _write_text(path, json_text(data))


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless the file already holds it (unchanged artifacts keep their time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def _digest(items: list[str]) -> str:
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:16]


def _up_to_date(path: Path, inputs: dict, force: bool) -> bool:
    if force or not path.is_file():
        return False
    return json.loads(path.read_text()).get("inputs") == json_ready(inputs)


@dataclass
class Cards:
    """Model cards by name and the weights folder holding each model (``None``: card kept in ``cards/`` only).

    Cards come from ``<out>/cards/*.json`` (models trained elsewhere whose weights do not ship),
    then the shipped ``weights/manifest.json``, then the manifest of ``--weights DIR``; later
    sources win.
    """

    cards: dict[str, dict]
    source: dict[str, Path | None]

    def get(self, name: str) -> dict | None:
        return self.cards.get(name)

    def weights_here(self, name: str) -> bool:
        """Whether ``name``'s weights file is present and matches its card's sha256."""
        if self.source.get(name) is None:
            return False
        try:
            registry.verified_path(name, self.source[name])
            return True
        except ModelUnavailable:
            return False


def _runtime_inputs(names: list[str] | tuple[str, ...], cards: Cards) -> dict:
    """The LiteRT exports that serve ``names`` (an input of their evaluation: a re-export, say from
    float32 to int8 weights, is evaluated again); empty when none has one."""
    exported = registry.runtime_sha256s(list(names), cards.cards)
    return {"runtime_sha256": exported} if exported else {}


def _should_evaluate(name: str, path: Path, inputs: dict, opts: Options, cards: Cards,
                     members: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether ``name`` needs (and can get) a fresh artifact at ``path``; says why not when not."""
    if _up_to_date(path, inputs, opts.force):
        print(f"{name}: up to date", flush=True)
        return False
    if not all(cards.weights_here(m) for m in (name, *members)):
        print(f"{name}: weights not here, keeping its existing artifacts", flush=True)
        return False
    return True


def load_cards(out: Path, weights_dir: Path | None = None) -> Cards:
    cards: dict[str, dict] = {}
    source: dict[str, Path | None] = {}
    for path in sorted((out / "cards").glob("*.json")):
        cards[path.stem], source[path.stem] = json.loads(path.read_text()), None
    for folder in dict.fromkeys([config.WEIGHTS_DIR, weights_dir or config.WEIGHTS_DIR]):
        for name, card in registry.load_manifest(folder)["models"].items():
            cards[name], source[name] = card, folder
    return Cards(cards, source)


def keep_card_and_log(name: str, cards: Cards, out: Path, fresh: bool) -> None:
    """Copy a model's training log to ``<out>/logs/`` (and, when its weights are not the shipped ones,
    its card to ``<out>/cards/``), so the artifacts describe the weights they were computed from.

    ``fresh``: the model was just evaluated. Otherwise a log is copied only when no copy exists.
    A log is copied only when its row count equals the card's ``epochs`` (a run still writing it is skipped).
    """
    card, folder = cards.get(name), cards.source.get(name)
    if card is None or folder is None:
        return
    if fresh and folder.resolve() != config.WEIGHTS_DIR.resolve():
        _write_text(out / "cards" / f"{name}.json", json_text(card, digits=None))
    log, target = folder / card.get("log", f"logs/{name}.csv"), out / "logs" / f"{name}.csv"
    if not log.is_file() or (target.is_file() and not fresh):
        return
    text = log.read_text()
    rows = max(0, len(text.strip().splitlines()) - 1)
    if rows and rows == card.get("epochs", rows):
        _write_text(target, text)


# --------------------------------------------------------------------------- classification

@dataclass
class TestSet:
    """The official Testing split: relative paths, labels, de-duplicated flags."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    clean: np.ndarray
    clean_sha: str | None

    @property
    def digest(self) -> str:
        return _digest([f"{p},{c}" for p, c in zip(self.paths, self.labels)])


def load_test_set(root: Path, clean_list: Path | None) -> TestSet:
    """The listing of ``root`` and which images a de-duplicated split keeps (none without ``clean_list``)."""
    listing = list_classification(root)
    rel = [p.relative_to(root).as_posix() for p in listing.paths]
    clean_sha = None
    clean = np.zeros(len(rel), dtype=bool)
    if clean_list is not None and clean_list.is_file():
        keep = set(json.loads(clean_list.read_text())["clean"])
        clean = np.array([r in keep for r in rel])
        clean_sha = registry.file_sha256(clean_list)[:16]
    return TestSet(root, rel, listing.labels, clean, clean_sha)


def split_metrics(y: np.ndarray, probs: np.ndarray, n_boot: int) -> dict:
    """Report, bootstrap CIs, subsampled ROC and reliability curve of one split."""
    names = list(config.CLASS_NAMES)
    report = classification_report(y, probs, names)
    pred = probs.argmax(1)
    correct = pred == y
    present = sorted(set(int(v) for v in y))
    report["accuracy_ci95"] = list(bootstrap_ci(lambda i: float(correct[i].mean()), len(y), n_boot))
    report["macro_f1_ci95"] = list(bootstrap_ci(
        lambda i: float(f1_score(y[i], pred[i], labels=present, average="macro", zero_division=0)), len(y), n_boot))
    report["ece_ci95"] = list(bootstrap_ci(lambda i: expected_calibration_error(y[i], probs[i]), len(y), n_boot))
    roc = roc_curves(y, probs, names)
    for curve in roc.values():
        curve["fpr"], curve["tpr"] = subsample_curve(curve["fpr"], curve["tpr"], ROC_POINTS)
    report["roc"] = roc
    report["reliability"] = reliability_curve(y, probs)
    return report


def _prediction_csv(probs: np.ndarray) -> str:
    names = list(config.CLASS_NAMES)
    lines = ["pred," + ",".join(f"p_{c}" for c in names)]
    for row in probs:
        values = ",".join(f"{v:.{PROB_DIGITS}f}".rstrip("0").rstrip(".") or "0" for v in row)
        lines.append(f"{names[int(np.argmax(row))]},{values}")
    return "\n".join(lines) + "\n"


def _index_csv(test: TestSet) -> str:
    names = list(config.CLASS_NAMES)
    rows = ["path,label,clean"] + [f"{p},{names[int(l)]},{int(c)}" for p, l, c in zip(test.paths, test.labels, test.clean)]
    return "\n".join(rows) + "\n"


class ProbabilityCache:
    """Each Keras classifier's probabilities on the test set (per test-time augmentation), computed once per run."""

    def __init__(self, test: TestSet, cards: Cards):
        self.test, self.cards, self._probs = test, cards, {}

    def __call__(self, name: str, tta: str) -> np.ndarray:
        if (name, tta) not in self._probs:
            member = load_member(name, self.cards.source[name])
            x, labels, _ = load_classification(self.test.root, member.input_size)
            if not np.array_equal(labels, self.test.labels):
                raise RuntimeError("test listing changed while evaluating")
            print(f"  predicting {name} on {len(x)} images (test-time augmentation: {tta}) ...", flush=True)
            x = x.astype(np.float32) / 255.0
            self._probs[name, tta] = predict_members([member], {member.input_size: x}, tta)[name]
        return self._probs[name, tta]


def evaluate_classifier(name: str, cards: Cards, test: TestSet, probs_of: ProbabilityCache, opts: Options) -> dict | None:
    """Write ``models/<name>.json`` and ``predictions/<name>.csv`` for one classifier (or ensemble)."""
    card = cards.get(name)
    members = card.get("members") or []
    tta = card.get("member_tta", "none") if members else comparison.protocol_tta(cards.cards)
    inputs = {"version": ARTIFACT_VERSION, "sha256": card["sha256"],
              "members": {m: (cards.get(m) or {}).get("sha256") for m in members}, "tta": tta,
              "data": CLS_DATASET, "listing": test.digest, "clean_list": test.clean_sha, "n_boot": opts.n_boot,
              **_runtime_inputs(members or [name], cards)}
    path = opts.out / "models" / f"{name}.json"
    if not _should_evaluate(name, path, inputs, opts, cards, members):
        return None
    print(f"{name}: evaluating", flush=True)
    calibration = None
    if members:
        ensemble = StackingEnsemble.load(registry.verified_path(name, cards.source[name]))
        if ensemble.member_tta != tta:
            raise ModelUnavailable(f"{name}: card says member_tta={tta}, its file {ensemble.member_tta}")
        member_probs = [probs_of(m, tta) for m in ensemble.members]
        probs = ensemble.predict_proba(member_probs)
        raw = ensemble.predict_proba(member_probs, calibrated=False)
        calibration = {"temperature": ensemble.temperature}
    else:
        probs = probs_of(name, tta)
    y = test.labels
    splits = {"official": split_metrics(y, probs, opts.n_boot)}
    if test.clean_sha:
        splits["dedup"] = split_metrics(y[test.clean], probs[test.clean], opts.n_boot)
    if calibration is not None:
        for split, keep in (("official", np.ones(len(y), bool)), ("dedup", test.clean)):
            if split in splits:
                calibration[split] = {
                    "before": {"ece": expected_calibration_error(y[keep], raw[keep]),
                               "reliability": reliability_curve(y[keep], raw[keep])},
                    "after": {"ece": expected_calibration_error(y[keep], probs[keep]),
                              "reliability": reliability_curve(y[keep], probs[keep])}}
    detail = {"name": name, "task": "classification", "inputs": inputs, "data": CLS_DATASET,
              "tta": {"none": "none", "hflip": "mean over the image and its left-right mirror"}.get(tta, tta),
              "classes": list(config.CLASS_NAMES), "splits": splits,
              "predictions": {"file": f"predictions/{name}.csv", "index": CLS_INDEX},
              "command": comparison.ARTIFACTS_COMMAND}
    if calibration is not None:
        detail["calibration"] = calibration
    _write_text(opts.out / "predictions" / f"{name}.csv", _prediction_csv(probs))
    _write_json(path, detail)
    return detail


# --------------------------------------------------------------------------- segmentation

def outline(mask: np.ndarray, epsilon: float = 0.75) -> str:
    """Compact outline of a binary mask: ``"x y x y ..."`` per component, components joined by ``|``."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for contour in sorted(contours, key=cv2.contourArea, reverse=True):
        poly = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2)
        parts.append(" ".join(f"{x} {y}" for x, y in poly))
    return "|".join(parts)


def _seg_summary(preds, truths, patients: list[str], spacing, n_boot: int) -> dict:
    """:func:`~core.imaging.metrics.segmentation_summary` plus patient-clustered bootstrap CIs, HD95 named in mm."""
    summary = segmentation_summary(preds, truths, spacing)
    dices = np.array([dice(p, t) for p, t in zip(preds, truths)])
    inter = np.array([int(np.logical_and(p, t).sum()) for p, t in zip(preds, truths)], dtype=float)
    size = np.array([int(p.sum()) + int(t.sum()) for p, t in zip(preds, truths)], dtype=float)
    n = len(dices)
    summary["mean_dice_ci95"] = list(bootstrap_ci(lambda i: float(dices[i].mean()), n, n_boot, groups=patients))
    summary["global_dice_ci95"] = list(bootstrap_ci(
        lambda i: float(2 * inter[i].sum() / size[i].sum()) if size[i].sum() else 1.0, n, n_boot, groups=patients))
    summary["n_patients"] = len(set(patients))
    summary["mean_hd95_mm"] = summary.pop("mean_hd95")
    return summary


def _prediction_row(mask: np.ndarray, truth: np.ndarray, spacing: tuple[float, float]) -> str:
    """One image's line of ``predictions/<name>.csv``: Dice, IoU, HD95 (empty when undefined), outline."""
    hd = hausdorff95(mask, truth, spacing)
    hd_text = f"{hd:.2f}" if math.isfinite(hd) else ""
    return f"{dice(mask, truth):.4f},{iou(mask, truth):.4f},{hd_text},{outline(mask)}"


def evaluate_segmenter(name: str, cards: Cards, root: Path, opts: Options) -> dict | None:
    """Write ``models/<name>.json`` and ``predictions/<name>.csv`` for one 2D segmenter."""
    card = cards.get(name)
    listing = list_segmentation(root)
    take = [i for i in range(len(listing)) if listing.folds and listing.folds[i] in SEG_FOLDS]
    rel = [listing.images[i].relative_to(root).as_posix() for i in take]
    inputs = {"version": ARTIFACT_VERSION, "sha256": card["sha256"], "data": SEG_DATASET, "folds": list(SEG_FOLDS),
              "spacing_mm": SEG_SPACING_MM, "listing": _digest(rel), "n_boot": opts.n_boot,
              "postprocessing": rules_from_card(card).__dict__,  # re-tuned rules: a new evaluation
              **({"tta": card["tta"]} if card.get("tta", "none") != "none" else {}),  # as the app predicts
              **_runtime_inputs([name], cards)}
    path = opts.out / "models" / f"{name}.json"
    if not _should_evaluate(name, path, inputs, opts, cards):
        return None
    print(f"{name}: segmenting {len(take)} held-out slices ...", flush=True)
    segmenter = Segmenter.load(name, cards.source[name])
    spacing = (SEG_SPACING_MM, SEG_SPACING_MM)
    preds, truths = scoring.segment_listed(segmenter, listing, take, spacing)
    rows = ["dice,iou,hd95_mm,outline"] + [_prediction_row(mask, truth, spacing) for mask, truth in zip(preds, truths)]
    patients = [listing.patients[i] if listing.patients else str(i) for i in take]
    labels = [listing.labels[i] if listing.labels else "" for i in take]
    overall = _seg_summary(preds, truths, patients, spacing, opts.n_boot)
    overall["per_class"] = {}
    for cls in sorted(set(c for c in labels if c)):
        idx = [k for k, c in enumerate(labels) if c == cls]
        overall["per_class"][cls] = _seg_summary([preds[k] for k in idx], [truths[k] for k in idx],
                                                 [patients[k] for k in idx], spacing, opts.n_boot)
    index = ["image,mask,label,patient"] + [
        f"{listing.images[i].relative_to(root).as_posix()},{listing.masks[i].relative_to(root).as_posix()},{c},{p}"
        for i, c, p in zip(take, labels, patients)]
    _write_text(opts.out / SEG_INDEX, "\n".join(index) + "\n")
    _write_text(opts.out / "predictions" / f"{name}.csv", "\n".join(rows) + "\n")
    detail = {"name": name, "task": "segmentation", "inputs": inputs, "data": SEG_DATASET, "folds": list(SEG_FOLDS),
              "spacing_mm": SEG_SPACING_MM, "hd95_unit": "mm", "postprocessing": card.get("postprocessing"),
              "ci_method": "bootstrap over patients (1000 resamples, 95 % percentile)",
              "splits": {comparison.SEG_SPLIT: overall},
              "predictions": {"file": f"predictions/{name}.csv", "index": SEG_INDEX},
              "command": comparison.ARTIFACTS_COMMAND}
    _write_json(path, detail)
    return detail


# --------------------------------------------------------------------------- BraTS

def evaluate_brats_model(name: str, cards: Cards, root: Path, opts: Options) -> dict | None:
    """Write ``models/<name>.json`` from :func:`core.evaluation.scoring.evaluate_brats`."""
    card = cards.get(name)
    inputs = {"version": ARTIFACT_VERSION, "sha256": card["sha256"], "data": BRATS_DATASET,
              "listing": _digest(sorted(p.name for p in root.iterdir() if p.is_dir())),
              **_runtime_inputs([name], cards)}
    path = opts.out / "models" / f"{name}.json"
    if not _should_evaluate(name, path, inputs, opts, cards):
        return None
    print(f"{name}: evaluating BraTS cases ...", flush=True)
    result = scoring.evaluate_brats(root, weights_dir=cards.source[name], name=name)
    detail = {"name": name, "task": "brats", "inputs": inputs, "data": BRATS_DATASET, "result": result,
              "command": comparison.ARTIFACTS_COMMAND}
    _write_json(path, detail)
    return detail


# --------------------------------------------------------------------------- summary

def _summary_metrics(detail: dict) -> dict:
    """The numbers ``comparison.json`` keeps of a detail artifact (already rounded there)."""
    if detail["task"] == "classification":
        keys = ("n", "accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "macro_auc", "ece", "ece_ci95")
        out = {split: {k: s.get(k) for k in keys} for split, s in detail["splits"].items()}
        return out
    if detail["task"] == "segmentation":
        keys = ("n", "n_patients", "mean_dice", "mean_dice_ci95", "global_dice", "global_dice_ci95", "mean_iou",
                "mean_hd95_mm", "n_hd95")
        out = {}
        for split, s in detail["splits"].items():
            out[split] = {k: s.get(k) for k in keys}
            out[split]["per_class"] = {c: {k: v.get(k) for k in keys} for c, v in s.get("per_class", {}).items()}
        return out
    result = detail["result"]
    test = {"n": result.get("n")}
    for region, values in result.get("mean", {}).items():
        test[region] = {"dice": values.get("dice"), "hd95_mm": values.get("hd95_mm")}
    return {"test": test}


def _status(name: str, cards: Cards, detail: dict | None, spec) -> str:
    if detail is not None:
        return "evaluated"
    if cards.get(name) is not None:
        return "not_evaluated" if cards.weights_here(name) else "weights_missing"
    return "awaiting_gpu" if spec is not None and spec.needs == "gpu" else "awaiting_training"


def _add_members_size(entry: dict, models: dict[str, dict]) -> None:
    """An ensemble's parameters and file size include its members' (the meta-learner alone is tiny)."""
    members = [models.get(m) for m in entry.get("members") or []]
    if not members or any(m is None for m in members):
        return
    for key in ("params", "size_bytes"):
        parts = [m.get(key) for m in members]
        if all(isinstance(v, (int, float)) for v in parts):
            own = entry.get(key) if isinstance(entry.get(key), (int, float)) else 0
            entry[f"{key}_own"] = entry.get(key)
            entry[key] = int(sum(parts) + own)
    if entry.get("params_own") is not None or entry.get("params") is not None:
        entry["params_source"] = "members + meta-learner"


def build_summary(out: Path, weights_dir: Path | None = None) -> dict:
    """``comparison.json`` from the model cards, the detail artifacts and ``latency.json``."""
    cards = load_cards(out, weights_dir)
    latency = json.loads((out / "latency.json").read_text())["models"] if (out / "latency.json").is_file() else {}
    models = {}
    names = comparison.all_model_names(cards.cards)
    for name in names:
        card, spec = cards.get(name), comparison.planned(name)
        detail_path = out / "models" / f"{name}.json"
        detail = json.loads(detail_path.read_text()) if detail_path.is_file() else None
        lat = latency.get(name, {})
        val = (card or {}).get("metrics", {}).get("val", {})
        entry = {
            "name": name,
            "label": spec.label if spec else (card or {}).get("architecture", name),
            "task": spec.task if spec else card["task"],
            "group": spec.group if spec else (card or {}).get("role", "comparison"),
            "architecture": (card or {}).get("architecture") or (spec.architecture if spec else name),
            "status": _status(name, cards, detail, spec),
            "training_command": (card or {}).get("training_command") or (spec.command if spec else ""),
            "trained_from_scratch": True,
            "params": (card or {}).get("params") if card else lat.get("params"),
            "params_source": "model card" if card else ("untrained architecture" if lat.get("params") else None),
            "size_bytes": (card or {}).get("size_bytes"),
            "latency_ms": lat.get("latency_ms"),
            "latency_litert_ms": lat.get("litert_ms"),
            "latency_source": lat.get("source"),
            "latency_input": lat.get("input"),
            "val_accuracy": val.get("accuracy", val.get("stacking_oof_val_accuracy")),
            "val_dice": val.get("mean_dice"),
            "epochs": (card or {}).get("epochs"),
            "stopped_by_time_budget": (card or {}).get("stopped_by_time_budget"),
            "log": f"logs/{name}.csv" if (out / "logs" / f"{name}.csv").is_file() else None,
            "detail": f"models/{name}.json" if detail else None,
            "predictions": (detail or {}).get("predictions"),
            "metrics": _summary_metrics(detail) if detail else None,
        }
        if detail is not None:
            entry["evaluated_sha256"] = detail["inputs"]["sha256"]
            if "tta" in detail["inputs"]:
                entry["tta"] = detail["inputs"]["tta"]
            fitted_on = detail["inputs"].get("members", {})
            other_runs = sorted(m for m, sha in fitted_on.items() if (cards.get(m) or {}).get("sha256") != sha)
            # members retrained here: re-evaluate; members trained elsewhere (a GPU run whose weights
            # stay there): the ensemble stands as fitted, and its row names the runs it was fitted on
            rerun = bool(other_runs) and all(cards.weights_here(m) for m in other_runs)
            entry["stale"] = bool(card) and (card.get("sha256") != detail["inputs"]["sha256"] or rerun)
            if other_runs and not rerun:
                fitted_val = (card or {}).get("metrics", {}).get("val", {}).get("members_val_accuracy", {})
                entry["member_runs_differ"] = {m: fitted_val.get(m) for m in other_runs}
            if "calibration" in detail:
                cal = detail["calibration"]
                entry["calibration"] = {"temperature": cal["temperature"], **{
                    split: {"ece_before": cal[split]["before"]["ece"], "ece_after": cal[split]["after"]["ece"]}
                    for split in comparison.SPLITS if split in cal}}
        if card and card.get("members"):
            entry["members"] = card["members"]
        elif spec and spec.members:
            entry["members"] = list(spec.members)
        models[name] = entry
    for entry in models.values():
        _add_members_size(entry, models)
    dedup = out / "dedup_testing.json"
    dedup_facts = None
    if dedup.is_file():
        d = json.loads(dedup.read_text())
        dedup_facts = {"file": "dedup_testing.json", "n_test": d.get("n_test"), "n_clean": d.get("n_clean"),
                       "n_dup_of_train": d.get("n_dup_of_train"), "n_dup_within_test": d.get("n_dup_within_test"),
                       "command": "python -m core.dedup split --out weights/eval/dedup_testing.json"}
    machine = next((v.get("machine") for v in latency.values() if v.get("machine")), None)
    return json_ready({
        "schema": 1, "artifact_version": ARTIFACT_VERSION, "command": comparison.ARTIFACTS_COMMAND,
        "datasets": {"classification": CLS_DATASET, "segmentation": f"{SEG_DATASET} (patient-wise fold 4 held out)",
                     "brats": BRATS_DATASET},
        "segmentation_spacing_mm": SEG_SPACING_MM, "dedup": dedup_facts,
        "latency_machine": machine,
        "note": "every model was trained from scratch (weights=None for keras.applications backbones) by this "
                "project's training CLIs; no pretrained weights",
        "models": models,
    })


# --------------------------------------------------------------------------- entry point

def _needs_latency(name: str, entry: dict | None, cards: Cards, opts: Options) -> bool:
    """Time a model again when forced, never timed, retrained (weights here), re-exported to LiteRT
    (its own export or its members') or its test-time augmentation changed."""
    if opts.force or entry is None:
        return True
    card, spec = cards.get(name), comparison.planned(name)
    exported = registry.runtime_sha256s((card or {}).get("members") or [name], cards.cards)
    if exported and entry.get("runtime_sha256") != exported and cards.weights_here(name):
        return True
    task = (card or {}).get("task") or (spec.task if spec else "")
    if task == "classification" and entry.get("latency_ms") is not None:
        members = (card or {}).get("members") or (spec.members if spec else ())
        tta = (card or {}).get("member_tta", comparison.protocol_tta(cards.cards)) if members \
            else comparison.protocol_tta(cards.cards)
        if entry.get("tta", "none") != tta:
            return True
    return bool(card) and entry.get("sha256") != card.get("sha256") and cards.weights_here(name)


def write_artifacts(opts: Options) -> dict:
    """Evaluate what needs evaluating, time what needs timing, rebuild ``comparison.json``; returns it."""
    opts.out.mkdir(parents=True, exist_ok=True)
    cards = load_cards(opts.out, opts.weights_dir)
    manifest = cards.cards
    names = opts.models or comparison.all_model_names(manifest)
    unknown = [n for n in names if n not in manifest and comparison.planned(n) is None]
    if unknown:
        raise ModelUnavailable(f"unknown models {unknown}; known: {comparison.all_model_names(manifest)}")
    data = opts.data
    if data is None:
        print("no data folder (set BTD_DATA_DIR or pass --data): artifacts are not re-evaluated, "
              "only comparison.json is rebuilt", flush=True)
    else:
        cls_names = [n for n in names if manifest.get(n, {}).get("task") == "classification"]
        testing = data / CLS_DATASET
        if cls_names and testing.is_dir():
            clean = opts.clean_list or opts.out / "dedup_testing.json"
            test = load_test_set(testing, clean)
            _write_text(opts.out / CLS_INDEX, _index_csv(test))
            cache = ProbabilityCache(test, cards)
            for name in sorted(cls_names, key=lambda n: bool(manifest[n].get("members"))):  # members first
                keep_card_and_log(name, cards, opts.out, evaluate_classifier(name, cards, test, cache, opts) is not None)
        for name in names:
            task = manifest.get(name, {}).get("task")
            if task == "segmentation" and (data / SEG_DATASET).is_dir():
                keep_card_and_log(name, cards, opts.out, evaluate_segmenter(name, cards, data / SEG_DATASET, opts) is not None)
            elif task == "brats" and (data / BRATS_DATASET).is_dir():
                keep_card_and_log(name, cards, opts.out,
                                  evaluate_brats_model(name, cards, data / BRATS_DATASET, opts) is not None)
    if opts.latency:
        path = opts.out / "latency.json"
        known = json.loads(path.read_text())["models"] if path.is_file() else {}
        todo = [n for n in names if _needs_latency(n, known.get(n), cards, opts)]
        if todo:
            print(f"CPU latency of {len(todo)} models ...", flush=True)
            by_folder: dict[Path | None, list[str]] = {}
            for n in todo:
                by_folder.setdefault(cards.source.get(n) or config.WEIGHTS_DIR, []).append(n)
            for folder, group in by_folder.items():
                write_latencies(group, path, opts.repeats, folder)
    summary = build_summary(opts.out, opts.weights_dir)
    _write_json(opts.out / "comparison.json", summary)
    return summary


def artifact_files(out: Path) -> list[Path]:
    """Every file the comparison artifacts consist of (for the RESULT line and tests)."""
    files = [out / "comparison.json", out / "latency.json"]
    for folder, pattern in (("models", "*.json"), ("predictions", "*.csv"), ("logs", "*.csv"), ("cards", "*.json")):
        files += sorted((out / folder).glob(pattern))
    return [f for f in files if f.is_file()]
