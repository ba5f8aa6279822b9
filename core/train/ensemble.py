"""Fit the stacking meta-learner on the members' held-out (validation) predictions.

    python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact

The validation split is rebuilt from the members' cards (same seed and fraction as their
training), so the meta-learner only ever sees images no member trained on; the Testing split
is never used. A temperature for calibration is fitted on out-of-fold meta-learner logits.
Writes ``weights/<name>.json`` and its card.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core import config
from core.classify import TTA_MODES, fuse_members, load_member, predict_members
from core.datasets import load_classification, stratified_split
from core.ensemble import StackingEnsemble, fit_temperature, out_of_fold_proba, soft_vote, softmax
from core.metrics import expected_calibration_error
from core.registry import record_model
from core.train.classifier import default_training_dir
from core.train.common import relative_to_repo, run_facts, training_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", nargs="+", required=True)
    p.add_argument("--name", default="stacking_ensemble")
    p.add_argument("--role", default="ensemble", help="manifest role (ensemble for the shipped one)")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--tta", choices=TTA_MODES, default="hflip",
                   help="members' test-time augmentation (the app applies the same)")
    return p.parse_args(argv)


def held_out_predictions(members: list, root: Path, tta: str) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Each member's probabilities on the shared validation split (with ``tta``), and its labels."""
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
    by_name = predict_members(members, x_by_size, tta, fuse_members(members))
    probs = [by_name[m.name] for m in members]
    for member, p in zip(members, probs):
        print(f"{member.name}: val accuracy {np.mean(p.argmax(1) == labels):.4f}", flush=True)
    return probs, labels, {"seed": seed, "val_fraction": fraction}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    root = args.data or default_training_dir()
    members = [load_member(n, args.out) for n in args.members]
    probs, labels, split = held_out_predictions(members, root, args.tta)
    classes = list(config.CLASS_NAMES)

    oof = out_of_fold_proba(probs, labels, args.members, classes)
    oof_logits = np.log(np.clip(oof, 1e-12, 1.0))
    temperature = fit_temperature(oof_logits, labels)
    ensemble = StackingEnsemble.fit(probs, labels, args.members, classes)
    ensemble.temperature = temperature
    ensemble.member_tta = args.tta

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
    ensemble.info.update({"oof": metrics})
    path = args.out / f"{args.name}.json"
    ensemble.save(path)
    card = {
        "task": "classification",
        "role": args.role,
        "description": "Stacking ensemble: multinomial logistic regression on the members' log-probabilities, "
                       "fitted on held-out validation predictions (never on a test split), temperature-calibrated; "
                       "members see each image and its left-right mirror when member_tta is hflip.",
        "architecture": "stacking (logistic regression meta-learner)",
        "file": path.name,
        "members": args.members,
        "member_sha256": {m.name: m.sha256 for m in members},
        "member_tta": args.tta,
        "params": int(np.size(ensemble.coef) + np.size(ensemble.intercept)),
        "classes": classes,
        "data": relative_to_repo(root),
        "split": f"meta-learner fitted on the members' validation split (seed {split['seed']}, "
                 f"{split['val_fraction']:.0%} of Training); C by 5-fold CV; accuracy reported out-of-fold",
        "metrics": {"val": metrics},
        "training_command": training_command("core.train.ensemble"),
        **run_facts(started),
    }
    record_model(args.name, card, args.out)
    print(f"RESULT stacking_oof_val_accuracy={metrics['stacking_oof_val_accuracy']} "
          f"soft_vote_val_accuracy={metrics['soft_vote_val_accuracy']} temperature={temperature:.3f}")


if __name__ == "__main__":
    main()
