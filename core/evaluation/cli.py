"""Evaluate the shipped models on a dataset folder (CPU, offline).

    python -m core.evaluate classification --data DIR [--json OUT] [--clean-list SPLIT.json]
    python -m core.evaluate segmentation   --data DIR [--json OUT] [--folds 4]
    python -m core.evaluate brats          --data DIR [--json OUT] [--include-training] [--model NAME]
    python -m core.evaluate external       [--split test|val] [--json OUT] [--n-boot 1000]
    python -m core.evaluate external-segmentation [--split test|val] [--json OUT]
    python -m core.evaluate artifacts      [--data ROOT] [--out weights/eval] [--weights DIR] [--models NAME ...] [--force]

``classification``: DIR has one sub-folder per class (any subset of glioma, meningioma,
notumor/no_tumor, pituitary, or the ``*_tumor`` spellings). ``segmentation``: DIR has
``images/`` + ``masks/`` with matching stems, or an ``index.csv`` with ``image``/``mask``
columns. ``brats``: DIR holds BraTS case folders (2020/2021 or 2023 names); cases listed
in the model card's train/val split are skipped unless ``--include-training``. ``external``: tumour vs no tumour
on slices of patients no classifier trained on, from other sources (``$BTD_DATA_DIR``'s tcga_lgg,
brats and figshare_3064), per source x sequence; see :mod:`core.evaluation.external`. ``artifacts``:
ROOT is the public data folder (default ``$BTD_DATA_DIR``); writes the model-comparison
artifacts of every model (see :mod:`core.evaluation.artifacts`). The last line printed is always
``RESULT key=value ...``; unusable input exits with status 2 and a message.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import config
from core.errors import InputError, ModelUnavailable

EXIT_BAD_INPUT = 2


def _round(obj: Any, digits: int = 4) -> Any:
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v, digits) for v in obj]
    return obj


def accuracy_ci(labels: np.ndarray, probs: np.ndarray, n_boot: int = 1000) -> tuple[float, float]:
    """Bootstrap 95 % confidence interval of the accuracy."""
    from core.imaging.metrics import bootstrap_ci

    correct = probs.argmax(1) == labels
    return bootstrap_ci(lambda idx: float(correct[idx].mean()), len(labels), n_boot=n_boot)


def _clean_mask(paths: list[Path], root: Path, clean_list: Path | None) -> np.ndarray:
    """Which of ``paths`` are in a de-duplicated split (all of them without a list)."""
    if clean_list is None:
        return np.ones(len(paths), dtype=bool)
    keep = set(json.loads(clean_list.read_text())["clean"])
    return np.array([p.relative_to(root).as_posix() in keep for p in paths])


def classification_probabilities(root: Path, weights_dir: Path | None = None):
    """Members' and ensemble probabilities for every image of a class-folder dataset."""
    from core.slices.classify import Classifier
    from core.data.datasets import load_classification

    classifier = Classifier.load(weights_dir)
    x_by_size: dict[int, np.ndarray] = {}
    labels = paths = None
    for size in sorted(classifier.sizes()):
        x, labels, paths = load_classification(root, size)
        x_by_size[size] = x.astype(np.float32) / 255.0
    # Same member inference as the app (fused call, the ensemble's test-time flips).
    member_probs = classifier.probabilities_from_inputs(x_by_size)
    ensemble = classifier.ensemble_probabilities(member_probs)
    return classifier, member_probs, ensemble, labels, paths


def evaluate_classification(root: Path, clean_list: Path | None = None, weights_dir: Path | None = None) -> dict:
    """Metrics of the shipped ensemble and of each member (optionally on a clean subset)."""
    from core.imaging.metrics import classification_report, reliability_curve, roc_curves

    classifier, member_probs, ensemble, labels, paths = classification_probabilities(root, weights_dir)
    keep = _clean_mask(paths, root, clean_list)
    names = list(config.CLASS_NAMES)
    y = labels[keep]

    def report(probs: np.ndarray) -> dict:
        out = classification_report(y, probs[keep], names)
        out["accuracy_ci95"] = list(accuracy_ci(y, probs[keep]))
        return out

    result = {
        "task": "classification",
        "data": Path(root).name,
        "subset": "de-duplicated" if clean_list else "all",
        "n": int(keep.sum()),
        "ensemble": {**report(ensemble), "roc": roc_curves(y, ensemble[keep], names),
                     "reliability": reliability_curve(y, ensemble[keep])},
        "members": {name: report(p) for name, p in member_probs.items()},
        "model_versions": classifier.versions(),
    }
    return result


def evaluate_segmentation(root: Path, folds: list[int] | None = None, spacing_mm: float | None = None,
                          weights_dir: Path | None = None, name: str = "resunet") -> dict:
    """Mean per-image Dice/IoU, global Dice and HD95 of a 2D segmenter (per tumour class too)."""
    from core.data.datasets import DatasetError, list_segmentation, read_grey, read_mask
    from core.imaging.metrics import segmentation_summary
    from core.slices.segment import Segmenter

    listing = list_segmentation(root)
    take = [i for i in range(len(listing)) if not folds or (listing.folds and listing.folds[i] in folds)]
    if not take:
        raise DatasetError(f"no image/mask pairs in {root} for folds {folds}")
    segmenter = Segmenter.load(name, weights_dir)
    spacing = (spacing_mm, spacing_mm) if spacing_mm else None
    preds, truths, classes = [], [], []
    for i in take:
        image = read_grey(listing.images[i])
        truth = read_mask(listing.masks[i])
        if truth.shape != image.shape:
            raise DatasetError(f"{listing.masks[i].name} is {truth.shape}, its image {image.shape}")
        mask, _ = segmenter.segment(image, spacing)
        preds.append(mask)
        truths.append(truth)
        classes.append(listing.labels[i] if listing.labels else "")
    result = {"task": "segmentation", "data": Path(root).name, "folds": folds,
              "hd95_unit": "mm" if spacing else "px",
              "overall": segmentation_summary(preds, truths, spacing),
              "per_class": {}, "model_versions": {segmenter.name: segmenter.card["sha256"]}}
    for name in sorted(set(c for c in classes if c)):
        idx = [k for k, c in enumerate(classes) if c == name]
        result["per_class"][name] = segmentation_summary([preds[k] for k in idx], [truths[k] for k in idx], spacing)
    if spacing is None:
        px = segmentation_summary(preds, truths, None)
        result["overall"]["mean_hd95_px"] = px["mean_hd95"]
    return result


def brats_case_scores(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> dict[str, dict]:
    """Dice and HD95 (mm) per region WT/TC/ET; a region empty in both counts as Dice 1.0, HD95 0.

    Computed by :func:`core.volumes.case.compare_to_truth` (the page's numbers), plus which side is empty.
    """
    from core.volumes.case import compare_to_truth

    scores = {}
    for region, s in compare_to_truth(pred, truth, tuple(spacing)).items():
        scores[region] = {"dice": s["dice"], "hd95_mm": s["hd95_mm"],
                          "empty_truth": s["volume_truth_cm3"] == 0, "empty_pred": s["volume_pred_cm3"] == 0}
    return scores


def evaluate_brats(root: Path, include_training: bool = False, weights_dir: Path | None = None,
                   name: str | None = None) -> dict:
    """Region Dice/HD95 of the BraTS model ``name`` (default: the shipped one) on every (unseen)
    case folder under ``root``."""
    from core.volumes.brats_model import VolumeSegmenter
    from core.volumes.case import read_case_folder

    segmenter = VolumeSegmenter.load(name, weights_dir=weights_dir)
    seen = set() if include_training else {
        c for part in ("train", "val") for c in segmenter.card.get("split_cases", {}).get(part, [])}
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    cases, skipped = {}, []
    for folder in folders:
        if folder.name in seen:
            skipped.append(folder.name)
            continue
        case = read_case_folder(folder)
        if case.labels is None:
            raise InputError(f"{folder.name} has no label map to compare with")
        pred = segmenter.segment(case.images, tuple(case.spacing_mm))
        cases[case.case_id] = brats_case_scores(pred, case.labels, tuple(case.spacing_mm))
        print(f"{case.case_id:24s} " + "  ".join(f"{r} {s['dice']:.3f}" for r, s in cases[case.case_id].items()),
              flush=True)
    if not cases:
        raise InputError(f"no unseen BraTS case folders in {root}" + (f" ({len(skipped)} used in training)" if skipped else ""))
    mean = {}
    for region in config.BRATS_REGIONS:
        hd = [c[region]["hd95_mm"] for c in cases.values() if np.isfinite(c[region]["hd95_mm"])]
        mean[region] = {"dice": float(np.mean([c[region]["dice"] for c in cases.values()])),
                        "hd95_mm": float(np.mean(hd)) if hd else None}
    return {"task": "brats", "data": Path(root).name, "n": len(cases), "skipped_training_cases": skipped,
            "empty_rule": "a region empty in both truth and prediction counts as Dice 1.0 and HD95 0 mm; "
                          "empty in exactly one: Dice 0 and HD95 undefined (left out of the HD95 mean)",
            "mean": mean, "cases": cases, "model_versions": {segmenter.name: segmenter.sha256}}


def _result_line(pairs: dict[str, Any]) -> str:
    return "RESULT " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in pairs.items())


def _write(result: dict, out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_round(result), indent=1) + "\n")
        print(f"wrote {out}")


def run_classification(args: argparse.Namespace) -> str:
    result = evaluate_classification(args.data, args.clean_list)
    ens = result["ensemble"]
    print(f"{'model':24s} accuracy  macro_f1  (n={result['n']}, {result['subset']})")
    for name, rep in result["members"].items():
        print(f"{name:24s} {rep['accuracy']:.4f}    {rep['macro_f1']:.4f}")
    print(f"{'stacking_ensemble':24s} {ens['accuracy']:.4f}    {ens['macro_f1']:.4f}   "
          f"95% CI [{ens['accuracy_ci95'][0]:.4f}, {ens['accuracy_ci95'][1]:.4f}]")
    _write(result, args.json)
    return _result_line({"accuracy": ens["accuracy"], "macro_f1": ens["macro_f1"],
                         "macro_auc": ens["macro_auc"] if ens["macro_auc"] is not None else "nan",
                         "ece": ens["ece"], "n": result["n"]})


def run_segmentation(args: argparse.Namespace) -> str:
    result = evaluate_segmentation(args.data, args.folds, args.spacing_mm, name=args.model)
    overall = result["overall"]
    for name, summary in result["per_class"].items():
        print(f"{name:12s} dice {summary['mean_dice']:.4f}  n={summary['n']}")
    _write(result, args.json)
    hd95 = overall["mean_hd95"] if overall["mean_hd95"] is not None else float("nan")
    return _result_line({"dice": overall["mean_dice"], "iou": overall["mean_iou"],
                         "global_dice": overall["global_dice"], f"hd95_{result['hd95_unit']}": hd95,
                         "n": overall["n"]})


def run_brats(args: argparse.Namespace) -> str:
    result = evaluate_brats(args.data, args.include_training, name=args.model)
    if result["skipped_training_cases"]:
        print(f"skipped {len(result['skipped_training_cases'])} cases the model was trained or validated on")
    no_et = [c for c, s in result["cases"].items() if s["ET"]["empty_truth"] and s["ET"]["empty_pred"]]
    if no_et:
        print(f"ET absent in truth and prediction (counted as Dice 1.0): {', '.join(no_et)}")
    _write(result, args.json)
    mean = result["mean"]
    return _result_line({"wt": mean["WT"]["dice"], "tc": mean["TC"]["dice"], "et": mean["ET"]["dice"],
                         "n": result["n"]})


def run_external(args: argparse.Namespace) -> str:
    from core.evaluation.external import evaluate_external

    result = evaluate_external(args.split, n_boot=args.n_boot, data_dir=args.data)
    print(f"{'cell':22s} {'n':>5s} {'tum':>5s} {'acc':>6s} {'sens':>6s} {'spec':>6s} {'glioma':>6s} {'auc':>6s} "
          f"{'ece':>6s}  ({result['split_description']})")
    fmt = lambda v: f"{v:6.3f}" if isinstance(v, (int, float)) else f"{'-':>6s}"  # noqa: E731
    for key, row in result["cells"].items():
        print(f"{key:22s} {row['n']:5d} {row['n_tumour']:5d} {fmt(row['accuracy'])} {fmt(row['sensitivity'])} "
              f"{fmt(row['specificity'])} {fmt(row['glioma_accuracy'])} {fmt(row['auc'])} {fmt(row['ece'])}")
    for name, m in result["members"].items():
        print(f"member {name:24s} worst {fmt(m['worst'])} ({m['worst_cell']})")
    _write(result, args.json)
    cells = result["cells"].values()
    finite = lambda k: [r[k] for r in cells if r[k] is not None]  # noqa: E731
    return _result_line({"worst": result["worst"] if result["worst"] is not None else "nan",
                         "worst_cell": result["worst_cell"],
                         "min_sensitivity": min(finite("sensitivity")), "min_specificity": min(finite("specificity")),
                         "min_glioma_accuracy": min(finite("glioma_accuracy")), "max_ece": max(finite("ece")),
                         "n": result["n"]})


def run_external_segmentation(args: argparse.Namespace) -> str:
    from core.evaluation.external_segmentation import evaluate_external_segmentation

    result = evaluate_external_segmentation(args.split, data_dir=args.data, n_boot=args.n_boot)
    print(f"{'cell':22s} {'n':>5s} {'target':>12s} {'ResUNet Dice':>13s} {'found':>6s} {'detector Dice':>14s} {'found':>6s}")
    for key, row in result["cells"].items():
        det = row.get("lesion_detector") or {}
        fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        print(f"{key:22s} {row['resunet']['n']:5d} {row['target']:>12s} {fmt(row['resunet']['mean_dice']):>13s} "
              f"{fmt(row['resunet']['found']):>6s} {fmt(det.get('mean_dice')):>14s} {fmt(det.get('found')):>6s}")
    _write(result, args.json)
    cells = result["cells"].values()
    return _result_line({"min_resunet_dice": min(r["resunet"]["mean_dice"] for r in cells),
                         "min_detector_dice": min((r.get("lesion_detector") or {"mean_dice": float("nan")})["mean_dice"]
                                                  for r in cells),
                         "n": result["n"]})


def run_artifacts(args: argparse.Namespace) -> str:
    from core.evaluation.comparison import STATUS_TEXT, headline
    from core.evaluation.artifacts import Options, artifact_files, write_artifacts

    opts = Options(out=args.out, data=args.data, models=args.models or None, force=args.force,
                   latency=not args.skip_latency, n_boot=args.n_boot, repeats=args.repeats, weights_dir=args.weights)
    summary = write_artifacts(opts)
    models = summary["models"].values()
    print(f"{'model':22s} {'task':14s} {'status':30s} headline")
    for m in models:
        value = headline(m, "official")
        print(f"{m['name']:22s} {m['task']:14s} {STATUS_TEXT.get(m['status'], m['status']):30s} "
              f"{value if value is not None else '-'}")
    files = artifact_files(args.out)
    print(f"wrote {len(files)} artifact files under {args.out}")
    return _result_line({"models": len(summary["models"]),
                         "evaluated": sum(m["status"] == "evaluated" for m in models),
                         "pending": sum(m["status"] != "evaluated" for m in models),
                         "files": len(files), "size_kb": round(sum(f.stat().st_size for f in files) / 1024)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="task", required=True)
    c = sub.add_parser("classification", help="class-folder dataset")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--json", type=Path, default=None)
    c.add_argument("--clean-list", type=Path, default=None,
                   help="JSON from `python -m core.dedup split` to evaluate the de-duplicated subset")
    s = sub.add_parser("segmentation", help="images/ + masks/ or index.csv")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--folds", type=int, nargs="*", default=None, help="only these folds of index.csv")
    s.add_argument("--spacing-mm", type=float, default=None, help="pixel spacing for HD95 in mm")
    s.add_argument("--model", default="resunet", help="segmenter name in the manifest (default: resunet)")
    b = sub.add_parser("brats", help="folder of BraTS case folders")
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--json", type=Path, default=None)
    b.add_argument("--include-training", action="store_true",
                   help="also score cases the model was trained or validated on")
    b.add_argument("--model", default=None, help="BraTS model name in the manifest (default: the shipped one)")
    e = sub.add_parser("external", help="tumour vs no tumour on other sources, per source x sequence")
    e.add_argument("--split", choices=("test", "val"), default="test",
                   help="held-out patients (test) or the classifier's validation patients (val)")
    e.add_argument("--data", type=Path, default=None, help="public data folder (default: $BTD_DATA_DIR)")
    e.add_argument("--json", type=Path, default=None)
    e.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (by patient) for the 95 %% CIs")
    g = sub.add_parser("external-segmentation", help="ResUNet and lesion detector Dice on other sources/sequences")
    g.add_argument("--split", choices=("test", "val"), default="test")
    g.add_argument("--data", type=Path, default=None, help="public data folder (default: $BTD_DATA_DIR)")
    g.add_argument("--json", type=Path, default=None)
    g.add_argument("--n-boot", type=int, default=1000)
    a = sub.add_parser("artifacts", help="model-comparison artifacts of every model (weights/eval)")
    a.add_argument("--data", type=Path, default=None,
                   help="public data folder with brain_mri_4class/, figshare_3064/, brats/ (default: $BTD_DATA_DIR)")
    a.add_argument("--out", type=Path, default=config.WEIGHTS_DIR / "eval")
    a.add_argument("--weights", type=Path, default=None,
                   help="also evaluate the models of this weights folder (e.g. GPU runs that do not ship); "
                        "their cards and logs are copied into OUT")
    a.add_argument("--models", nargs="*", default=None, help="only these models (default: all of the comparison)")
    a.add_argument("--force", action="store_true", help="re-evaluate and re-time even up-to-date models")
    a.add_argument("--skip-latency", action="store_true", help="do not time models (keep latency.json as it is)")
    a.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    a.add_argument("--repeats", type=int, default=10, help="timed runs per model for the CPU latency")
    args = p.parse_args(argv)
    if args.task == "artifacts" and args.data is None:
        args.data = config.data_dir()
    return args


RUNNERS: dict[str, Callable[[argparse.Namespace], str]] = {
    "classification": run_classification,
    "segmentation": run_segmentation,
    "brats": run_brats,
    "external": run_external,
    "external-segmentation": run_external_segmentation,
    "artifacts": run_artifacts,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data is not None and not Path(args.data).exists():
        print(f"error: {args.data} does not exist", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        line = RUNNERS[args.task](args)
    except (InputError, ModelUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
