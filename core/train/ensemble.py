"""Fit the stacking meta-learner on the members' held-out (validation) predictions.

    python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact

The validation split is rebuilt from the members' cards (same seed and fraction as their
training), so the meta-learner only ever sees images no member trained on; the Testing split
is never used. A temperature for calibration is fitted on out-of-fold meta-learner logits.
Members trained on several sources are validated on every source's validation patients, and
``--combiner auto`` chooses the meta-learner there by its worst cell (out-of-fold): a fitted
logistic regression, or the equal-weight pool of the members (nothing fitted but the
temperature), which generalises better across patients when one source has few of them.
Writes ``weights/<name>.json`` and its card.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.slices.classify import TTA_MODES, fuse_members, load_member, predict_members
from core.data.datasets import load_classification, stratified_split
from core.slices.ensemble import StackingEnsemble, fit_temperature, out_of_fold_proba, soft_vote, softmax
from core.imaging.metrics import expected_calibration_error
from core.serving.registry import model_card, record_model
from core.train.classifier import default_training_dir
from core.train.common import relative_to_repo, run_facts, training_command


DESCRIPTIONS = {
    "stacking": "Stacking ensemble: multinomial logistic regression on the members' log-probabilities, fitted on "
                "held-out validation predictions (never on a test split), temperature-calibrated; members see each "
                "image and its left-right mirror when member_tta is hflip.",
    "equal": "Stacking ensemble whose meta-learner, chosen on every source's validation patients over a fitted logistic "
             "regression, is the members' equal-weight log-linear pool (the mean of their log-probabilities), "
             "temperature-calibrated there; members see each image and its left-right mirror when member_tta is hflip.",
}
ARCHITECTURES = {"stacking": "stacking (logistic regression meta-learner)",
                 "equal": "stacking (equal-weight log-linear pool, chosen on validation)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", nargs="+", default=None, help="member model names (required unless --refresh-coverage)")
    p.add_argument("--name", default="stacking_ensemble")
    p.add_argument("--role", default="ensemble", help="manifest role (ensemble for the shipped one)")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--tta", choices=TTA_MODES, default="hflip",
                   help="members' test-time augmentation (the app applies the same)")
    p.add_argument("--combiner", choices=("stacking", "equal", "auto"), default="stacking",
                   help="stacking: fitted logistic regression; equal: the members' equal-weight log-linear pool; "
                        "auto: the better worst validation cell, out-of-fold (multi-source members)")
    p.add_argument("--refresh-coverage", action="store_true",
                   help="only recount the card's training coverage with the shipped sequence/plane model")
    return p.parse_args(argv)


@dataclass
class HeldOut:
    """Members' probabilities on the shared validation images, with what the fit needs."""

    probs: list[np.ndarray]
    labels: np.ndarray
    split: dict
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    slices: Any = None


def held_out_predictions(members: list, root: Path, tta: str) -> HeldOut:
    """Each member's probabilities on the shared validation split (with ``tta``), and its labels.

    Members trained on several sources (``sources`` in their cards) are validated on every
    source's validation patients; otherwise on the 4-class Training split's validation images.
    """
    sources = {tuple(m.card.get("sources") or ()) for m in members}
    if len(sources) != 1:
        raise SystemExit(f"members were trained on different sources: {sources}")
    chosen = sources.pop()
    if chosen:
        return _multisource_held_out(members, list(chosen), tta)
    splits = {(m.card["config"]["seed"], m.card["config"]["val_fraction"]) for m in members}
    if len(splits) != 1:
        raise SystemExit(f"members were trained on different validation splits: {splits}")
    seed, fraction = splits.pop()
    x_by_size, labels = {}, None
    for size in sorted({m.input_size for m in members}):
        x, y, _ = load_classification(root, size)
        _, val_idx = stratified_split(y, fraction, seed)
        labels = y[val_idx]
        x_by_size[size] = x[val_idx].astype(np.float32) / 255.0
    probs = _report(members, predict_members(members, x_by_size, tta, fuse_members(members)), labels)
    return HeldOut(probs, labels, {"seed": seed, "val_fraction": fraction})


def _report(members: list, by_name: dict[str, np.ndarray], labels: np.ndarray) -> list[np.ndarray]:
    probs = [by_name[m.name] for m in members]
    for member, p in zip(members, probs):
        print(f"{member.name}: val accuracy {np.mean(p.argmax(1) == labels):.4f}", flush=True)
    return probs


def _multisource_held_out(members: list, sources: list[str], tta: str) -> HeldOut:
    from core.data.sources import load_sources
    from core.train.multisource import balanced_weights

    x_by_size, val = {}, None
    for size in sorted({m.input_size for m in members}):
        val = load_sources(sources, size).where(split="val")
        x_by_size[size] = val.x.astype(np.float32) / 255.0
    labels = val.labels()
    probs = _report(members, predict_members(members, x_by_size, tta, fuse_members(members)), labels)
    weights = balanced_weights(val) * len(val)
    groups = np.array([r.patient or f"{r.source}:{r.ref}" for r in val.refs])
    return HeldOut(probs, labels, {"sources": sources}, weights, groups, val)


def _fit(held: HeldOut, args: argparse.Namespace, combiner: str) -> tuple[StackingEnsemble, np.ndarray, float, float]:
    """Meta-learner, its out-of-fold probabilities (the pool's own, having nothing fitted), its
    temperature, and the worst validation cell of the calibrated out-of-fold probabilities (NaN
    without multi-source slices)."""
    classes = list(config.CLASS_NAMES)
    if combiner == "equal":
        ensemble = StackingEnsemble.equal_weights(args.members, classes)
        oof = ensemble.predict_proba(held.probs, calibrated=False)
    else:
        oof = out_of_fold_proba(held.probs, held.labels, args.members, classes, sample_weight=held.weights,
                                groups=held.groups)
        ensemble = StackingEnsemble.fit(held.probs, held.labels, args.members, classes, sample_weight=held.weights,
                                        groups=held.groups)
    oof_logits = np.log(np.clip(oof, 1e-12, 1.0))
    ensemble.temperature = fit_temperature(oof_logits, held.labels, held.weights)
    ensemble.member_tta = args.tta
    worst = float("nan")
    if held.slices is not None:
        from core.train.multisource import selection_score, validation_table

        worst = selection_score(validation_table(softmax(oof_logits, ensemble.temperature), held.slices))
    return ensemble, oof, ensemble.temperature, worst


def _coverage(sources: list[str], size: int, weights_dir: Path) -> dict:
    """Training counts per class x sequence x plane, the unlabelled ones estimated by the shipped
    sequence/plane model when there is one (:func:`core.slices.coverage.build_coverage`)."""
    from core.slices.acquisition import MODEL_NAME, AcquisitionModel
    from core.slices.coverage import build_coverage
    from core.errors import ModelUnavailable
    from core.data.sources import load_sources

    try:
        recogniser = AcquisitionModel.load(MODEL_NAME, weights_dir)
    except ModelUnavailable:
        recogniser = None
    return build_coverage(load_sources(sources, size).where(split="train"), recogniser)


#: Recomputes only the coverage block of the shipped ensemble card (after the sequence/plane model changed).
REFRESH_COVERAGE_COMMAND = "python -m core.train.ensemble --refresh-coverage"


def refresh_coverage(name: str, weights_dir: Path) -> dict:
    """Recount the card's training coverage with the shipped sequence/plane model; nothing else changes.

    The meta-learner does not depend on that model, only the estimated counts do, so this gives
    the card a full re-run would give. Returns the new coverage block.
    """
    card = model_card(name, weights_dir)
    size = int(model_card(card["members"][0], weights_dir)["input"]["size"])
    coverage = _coverage(card["sources"], size, weights_dir)
    record_model(name, {**card, "coverage": coverage, "coverage_command": REFRESH_COVERAGE_COMMAND}, weights_dir)
    return coverage


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.refresh_coverage:
        coverage = refresh_coverage(args.name, args.out)
        print(f"RESULT coverage_unlabelled={coverage['unlabelled']} estimated_by={str(coverage['estimated_by'])[:12]}")
        return
    if not args.members:
        raise SystemExit("error: --members is required (unless --refresh-coverage)")
    started = time.monotonic()
    root = args.data or default_training_dir()
    members = [load_member(n, args.out) for n in args.members]
    held = held_out_predictions(members, root, args.tta)
    probs, labels = held.probs, held.labels
    classes = list(config.CLASS_NAMES)
    options = ["stacking", "equal"] if args.combiner == "auto" else [args.combiner]
    fitted = {c: _fit(held, args, c) for c in options}
    scores = {c: f[3] for c, f in fitted.items()}
    combiner = max(options, key=lambda c: (np.nan_to_num(scores[c], nan=-1.0), c == "stacking"))
    ensemble, oof, temperature, _ = fitted[combiner]
    for c, score in scores.items():
        print(f"{c}: worst validation cell (out-of-fold) {score:.4f}", flush=True)

    oof_logits = np.log(np.clip(oof, 1e-12, 1.0))
    calibrated_oof = softmax(oof_logits, temperature)
    metrics = {
        "members_val_accuracy": {m: round(float(np.mean(p.argmax(1) == labels)), 4) for m, p in zip(args.members, probs)},
        "soft_vote_val_accuracy": round(float(np.mean(soft_vote(probs).argmax(1) == labels)), 4),
        "stacking_oof_val_accuracy": round(float(np.mean(oof.argmax(1) == labels)), 4),
        "ece_before_calibration": round(expected_calibration_error(labels, oof), 4),
        "ece_after_calibration": round(expected_calibration_error(labels, calibrated_oof), 4),
        "temperature": round(temperature, 4),
        "n": int(len(labels)),
    }
    extra: dict[str, Any] = {}
    if held.slices is not None:
        from core.evaluation.external import json_table
        from core.train.multisource import selection_score, validation_table

        table = validation_table(calibrated_oof, held.slices)
        metrics["worst"] = round(selection_score(table), 4)
        metrics["members_worst"] = {m: round(selection_score(validation_table(p, held.slices)), 4)
                                    for m, p in zip(args.members, probs)}
        metrics["cells"] = json_table(table)
        extra = {"sources": held.split["sources"], "training_counts": members[0].card.get("training_counts", []),
                 "coverage": _coverage(held.split["sources"], members[0].input_size, args.out)}
    metrics["combiner"] = combiner
    if len(scores) > 1:
        metrics["combiner_choice"] = {c: round(v, 4) for c, v in scores.items()}
    ensemble.info.update({"oof": {k: v for k, v in metrics.items() if k != "cells"}})
    path = args.out / f"{args.name}.json"
    ensemble.save(path)
    if held.slices is not None:
        split_text = ("meta-learner fitted on the members' validation patients of every source ("
                      + ", ".join(held.split["sources"]) + "), weighted to balance source x class; C by 5-fold "
                      "CV grouped by patient; accuracy and cells reported out-of-fold")
    else:
        split_text = (f"meta-learner fitted on the members' validation split (seed {held.split['seed']}, "
                      f"{held.split['val_fraction']:.0%} of Training); C by 5-fold CV; accuracy reported out-of-fold")
    card = {
        "task": "classification",
        "role": args.role,
        "description": DESCRIPTIONS[combiner],
        "architecture": ARCHITECTURES[combiner],
        "combiner": combiner,
        "file": path.name,
        "members": args.members,
        "member_sha256": {m.name: m.sha256 for m in members},
        "member_tta": args.tta,
        "params": int(np.size(ensemble.coef) + np.size(ensemble.intercept)),
        "classes": classes,
        "data": relative_to_repo(root) if held.slices is None else members[0].card.get("data"),
        "split": split_text,
        **extra,
        "metrics": {"val": metrics},
        "training_command": training_command("core.train.ensemble"),
        **run_facts(started),
    }
    record_model(args.name, card, args.out)
    worst = f" worst={metrics['worst']}" if "worst" in metrics else ""
    print(f"RESULT stacking_oof_val_accuracy={metrics['stacking_oof_val_accuracy']} "
          f"soft_vote_val_accuracy={metrics['soft_vote_val_accuracy']} temperature={temperature:.3f}{worst}")


if __name__ == "__main__":
    main()
