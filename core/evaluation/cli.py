"""Evaluate the shipped models on a dataset folder (CPU, offline).

    python -m core.evaluate classification --data DIR [--json OUT] [--clean-list SPLIT.json]
    python -m core.evaluate segmentation   --data DIR [--json OUT] [--folds 4]
    python -m core.evaluate brats          --data DIR [--json OUT] [--include-training] [--model NAME] [--weights DIR]
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

This module only parses arguments, prints and writes JSON; the scoring is
:mod:`core.evaluation.scoring` (and the modules named above).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from core import config
from core.errors import InputError, ModelUnavailable
from core.evaluation.artifacts import Options, artifact_files, write_artifacts
from core.evaluation.comparison import STATUS_TEXT, headline
from core.evaluation.external import evaluate_external
from core.evaluation.external_segmentation import evaluate_external_segmentation
from core.evaluation.jsonsafe import json_text
from core.evaluation.scoring import evaluate_brats, evaluate_classification, evaluate_segmentation

EXIT_BAD_INPUT = 2


def _fixed6(value: Any) -> str:
    """A number as a 6-wide ``" 0.123"``, ``"     -"`` when missing (aligned table columns)."""
    return f"{value:6.3f}" if isinstance(value, (int, float)) else f"{'-':>6s}"


def _three_decimals(value: Any) -> str:
    """A number as ``"0.123"``, ``"-"`` when missing (the caller pads it)."""
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _format_result_line(pairs: dict[str, Any]) -> str:
    """``RESULT k=v ...``: floats with 4 decimals, anything else as it is."""
    return "RESULT " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in pairs.items())


def _save_result(result: dict, out: Path | None) -> None:
    """Write ``result`` as strict JSON to ``out`` (when given) and say so."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json_text(result))
        print(f"wrote {out}")


def run_classification(args: argparse.Namespace) -> str:
    result = evaluate_classification(args.data, args.clean_list)
    ens = result["ensemble"]
    print(f"{'model':24s} accuracy  macro_f1  (n={result['n']}, {result['subset']})")
    for name, rep in result["members"].items():
        print(f"{name:24s} {rep['accuracy']:.4f}    {rep['macro_f1']:.4f}")
    print(f"{'stacking_ensemble':24s} {ens['accuracy']:.4f}    {ens['macro_f1']:.4f}   "
          f"95% CI [{ens['accuracy_ci95'][0]:.4f}, {ens['accuracy_ci95'][1]:.4f}]")
    _save_result(result, args.json)
    return _format_result_line({"accuracy": ens["accuracy"], "macro_f1": ens["macro_f1"],
                                "macro_auc": ens["macro_auc"] if ens["macro_auc"] is not None else "nan",
                                "ece": ens["ece"], "n": result["n"]})


def run_segmentation(args: argparse.Namespace) -> str:
    result = evaluate_segmentation(args.data, args.folds, args.spacing_mm, name=args.model)
    overall = result["overall"]
    for name, summary in result["per_class"].items():
        print(f"{name:12s} dice {summary['mean_dice']:.4f}  n={summary['n']}")
    _save_result(result, args.json)
    hd95 = overall["mean_hd95"] if overall["mean_hd95"] is not None else float("nan")
    return _format_result_line({"dice": overall["mean_dice"], "iou": overall["mean_iou"],
                                "global_dice": overall["global_dice"], f"hd95_{result['hd95_unit']}": hd95,
                                "n": overall["n"]})


def run_brats(args: argparse.Namespace) -> str:
    result = evaluate_brats(args.data, args.include_training, weights_dir=args.weights, name=args.model)
    if result["skipped_training_cases"]:
        print(f"skipped {len(result['skipped_training_cases'])} cases the model was trained or validated on")
    no_et = [c for c, s in result["cases"].items() if s["ET"]["empty_truth"] and s["ET"]["empty_pred"]]
    if no_et:
        print(f"ET absent in truth and prediction (counted as Dice 1.0): {', '.join(no_et)}")
    _save_result(result, args.json)
    mean = result["mean"]
    return _format_result_line({"wt": mean["WT"]["dice"], "tc": mean["TC"]["dice"], "et": mean["ET"]["dice"],
                                "n": result["n"]})


def run_external(args: argparse.Namespace) -> str:
    result = evaluate_external(args.split, n_boot=args.n_boot, data_dir=args.data)
    print(f"{'cell':22s} {'n':>5s} {'tum':>5s} {'acc':>6s} {'sens':>6s} {'spec':>6s} {'glioma':>6s} {'auc':>6s} "
          f"{'ece':>6s}  ({result['split_description']})")
    for key, row in result["cells"].items():
        print(f"{key:22s} {row['n']:5d} {row['n_tumour']:5d} {_fixed6(row['accuracy'])} {_fixed6(row['sensitivity'])} "
              f"{_fixed6(row['specificity'])} {_fixed6(row['glioma_accuracy'])} {_fixed6(row['auc'])} "
              f"{_fixed6(row['ece'])}")
    for key, row in result["by_source"].items():
        print(f"{'source ' + key:22s} {row['n']:5d} {row['n_tumour']:5d} {_fixed6(row['accuracy'])} "
              f"{_fixed6(row['sensitivity'])} {_fixed6(row['specificity'])} {_fixed6(row['glioma_accuracy'])} "
              f"{_fixed6(row['auc'])} {_fixed6(row['ece'])}")
    for name, m in result["members"].items():
        print(f"member {name:24s} worst {_fixed6(m['worst'])} ({m['worst_cell']})")
    for row in result.get("false_alarms_by_distance", []):
        print(f"false alarms {row['source'] + '/' + row.get('sequence', ''):16s} {row['distance']:>5s} slices from the lesion: "
              f"{row['false_alarms']}/{row['n']} {_fixed6(row['rate'])}")
    hardest = result["by_patient"].get(result["worst_cell"], [])[:3]
    if hardest:
        print(f"hardest patients of {result['worst_cell']}: " + "; ".join(
            f"{r['patient']} found {r['found']}/{r['n_tumour']}, false alarms {r['false_alarms']}/{r['n_no_tumour']}"
            for r in hardest))
    _save_result(result, args.json)
    cells = result["cells"].values()
    finite = lambda k: [r[k] for r in cells if r[k] is not None]  # noqa: E731
    return _format_result_line({"worst": result["worst"] if result["worst"] is not None else "nan",
                                "worst_cell": result["worst_cell"],
                                "min_sensitivity": min(finite("sensitivity")), "min_specificity": min(finite("specificity")),
                                "min_glioma_accuracy": min(finite("glioma_accuracy")), "max_ece": max(finite("ece")),
                                "max_source_ece": max(r["ece"] for r in result["by_source"].values()),
                                "n": result["n"]})


def run_external_segmentation(args: argparse.Namespace) -> str:
    result = evaluate_external_segmentation(args.split, data_dir=args.data, n_boot=args.n_boot)
    print(f"{'cell':22s} {'n':>5s} {'target':>12s} {'ResUNet Dice':>13s} {'found':>6s} {'clean':>6s} "
          f"{'detector Dice':>14s} {'found':>6s}")
    for key, row in result["cells"].items():
        det = row.get("lesion_detector") or {}
        print(f"{key:22s} {row['resunet']['n']:5d} {row['target']:>12s} "
              f"{_three_decimals(row['resunet']['mean_dice']):>13s} {_three_decimals(row['resunet']['found']):>6s} "
              f"{_three_decimals(row['resunet'].get('clean')):>6s} "
              f"{_three_decimals(det.get('mean_dice')):>14s} {_three_decimals(det.get('found')):>6s}")
    _save_result(result, args.json)
    cells = result["cells"].values()
    no_detector = {"mean_dice": float("nan")}
    clean = [r["resunet"]["clean"] for r in cells if r["resunet"].get("clean") is not None]
    return _format_result_line({"min_resunet_dice": min(r["resunet"]["mean_dice"] for r in cells),
                                "min_clean": min(clean) if clean else "nan",
                                "min_detector_dice": min((r.get("lesion_detector") or no_detector)["mean_dice"]
                                                         for r in cells),
                                "n": result["n"]})


def run_artifacts(args: argparse.Namespace) -> str:
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
    return _format_result_line({"models": len(summary["models"]),
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
    b.add_argument("--weights", type=Path, default=None,
                   help="weights folder holding that model and its manifest (default: weights/; e.g. a run's --out)")
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
