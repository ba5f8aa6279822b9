"""Train one classifier on the 4-class Training split, or on several sources.

    python -m core.train.classifier --model resnet_compact --size 128 --epochs 30
    python -m core.train.classifier --model resnet_compact --sources fourclass tcga_lgg brats \
        --init-from weights/resnet_compact.keras --epochs 12 --max-minutes 25

With ``--sources`` (see :mod:`core.data.sources` and :mod:`core.train.multisource`) the training set
is the train split of every named source, drawn balanced over source x class and augmented
against acquisition shortcuts; inputs are normalised inside the head; the best epoch is the one
whose *worst* validation cell (source x sequence) is best: the lowest of the 4-class accuracy and
every other cell's tumour AUC.

A stratified validation split is carved out of Training with a fixed seed, so every member
sees the same held-out images and the stacking meta-learner (``core.train.ensemble``) can be
fitted on them. The official Testing split is never touched here.
Writes ``weights/<model>.keras`` (no optimizer state), ``weights/logs/<model>.csv`` (per epoch)
and the model card in ``weights/manifest.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core import config
from core.train.augment import AcquisitionConfig, augment_image
from core.slices.classify import normalise_batch
from core.data.datasets import load_classification, stratified_split
from core.models.classifiers import CLASSIFIER_BUILDERS, MEMBER_BUILDERS, build_classifier
from core.imaging.preprocess import NORMALISATIONS
from core.serving.registry import record_model
from core.train.common import (BestWeights, CosineWithinBudget, ShuffledBatches, recalibrate_batchnorm,
                               relative_to_repo, run_facts, save_inference_model, set_batchnorm_momentum, set_seed,
                               training_command, warm_start)

FAMILIES = {"resnet_compact": "residual", "mobilenet_compact": "depthwise-separable",
            "densenet_compact": "densely connected", "efficientnet_compact": "compound-scaled"}


class AugmentedBatches(ShuffledBatches):
    """Shuffled, augmented batches of uint8 images ``(N, S, S)`` with one-hot labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch: int, seed: int, normalisation: str = "unit",
                 **kwargs):
        super().__init__(len(images), batch, seed, **kwargs)
        self.images, self.labels, self.normalisation = images, labels, normalisation

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        x = normalise_batch(np.stack([augment_image(self.images[i], rng) for i in take]), self.normalisation)[..., None]
        y = keras.utils.to_categorical(self.labels[take], len(config.CLASS_NAMES))
        return x, y


def default_training_dir() -> Path:
    base = config.data_dir()
    if base is None:
        raise SystemExit("no data: set BTD_DATA_DIR or pass --data (a folder of class sub-folders)")
    return base / "brain_mri_4class" / "Training"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(CLASSIFIER_BUILDERS))
    p.add_argument("--data", type=Path, default=None, help="Training folder (default: $BTD_DATA_DIR/brain_mri_4class/Training)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.02)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=42, help="split and initialisation seed (keep equal across members)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time (keeps best epoch)")
    p.add_argument("--name", default=None, help="name in the manifest (default: the model name)")
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sources", nargs="+", default=None,
                   help="train on these catalogued sources (fourclass tcga_lgg brats) instead of --data")
    p.add_argument("--mirror-healthy", action="store_true",
                   help="with --sources brats: add tumour-free slices made by reflecting the healthy hemisphere of "
                        "the BraTS training cases' tumour slices (core.data.mirrored)")
    p.add_argument("--balance-sequence", type=float, nargs="?", const=0.5, default=None, metavar="SHARE",
                   help="with --sources: also make tumours SHARE of the draws within each sequence (default 0.5; 0.75 "
                        "keeps the class shares), the 4-class images' sequence recognised by the shipped "
                        "sequence/plane model")
    p.add_argument("--hard-examples", type=float, default=None, metavar="SHARE",
                   help="with --sources: move SHARE of each source x class cell's draws to the slices the shipped "
                        "ensemble still gets wrong, in proportion to 1 - its probability of the true class")
    p.add_argument("--samples-per-epoch", type=int, default=6000, help="with --sources: slices drawn per epoch")
    p.add_argument("--normalisation", choices=NORMALISATIONS, default=None,
                   help="input intensity normalisation (default: head with --sources, unit otherwise)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from this saved model's weights (same architecture and size)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.sources:
        train_multisource(args)
        return
    started = time.monotonic()
    name = args.name or args.model
    set_seed(args.seed)
    root = args.data or default_training_dir()
    print(f"loading {root} at {args.size}px ...", flush=True)
    x, y, _ = load_classification(root, args.size)
    train_idx, val_idx = stratified_split(y, args.val_fraction, args.seed)
    args.normalisation = args.normalisation or "unit"
    x_val = normalise_batch(x[val_idx].astype(np.float32) / 255.0, args.normalisation)[..., None]
    y_val = keras.utils.to_categorical(y[val_idx], len(config.CLASS_NAMES))
    print(f"train {len(train_idx)}  val {len(val_idx)}", flush=True)

    batches = AugmentedBatches(x[train_idx], y[train_idx], args.batch, args.seed, args.normalisation,
                               workers=args.workers, use_multiprocessing=False, max_queue_size=8)
    model, origin = _compiled(args)
    log_path = args.out / "logs" / f"{name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = BestWeights("val_accuracy", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes)
    history = model.fit(batches, validation_data=(x_val, y_val), epochs=args.epochs, verbose=2,
              callbacks=[budget, keras.callbacks.CSVLogger(str(log_path)), best])

    recalibrate_batchnorm(model, normalise_batch(x[train_idx].astype(np.float32) / 255.0, args.normalisation)[..., None],
                          seed=args.seed)
    probs = model.predict(x_val, batch_size=64, verbose=0)
    val_acc = float(np.mean(probs.argmax(1) == y[val_idx]))
    path = args.out / f"{name}.keras"
    save_inference_model(model, lambda: build_classifier(args.model, args.size), path)
    card = _card(args, model, path, history, best, budget, origin, started, on="", fields={
        "data": relative_to_repo(root),
        "split": f"stratified {1 - args.val_fraction:.0%}/{args.val_fraction:.0%} train/val of Training, seed {args.seed}; "
                 "official Testing untouched",
        "augmentation": "rotation ±10°, shift 0.1, zoom 0.1, brightness 0.8-1.2, horizontal flip",
        "metrics": {"val": {"accuracy": round(val_acc, 4), "n": int(len(val_idx))}},
    })
    record_model(name, card, args.out)
    print(f"RESULT model={name} val_accuracy={val_acc:.4f} epochs={card['epochs']} seconds={card['train_seconds']}")


def _card(args: argparse.Namespace, model: keras.Model, path: Path, history: Any, best: BestWeights,
          budget: CosineWithinBudget, origin: dict | None, started: float, on: str, fields: dict[str, Any]) -> dict:
    """A classifier's model card: what every run records, with ``fields`` (data, split, augmentation,
    metrics...) after the input; ``on`` ends the description ("" or " on several sources...")."""
    head = args.normalisation == "head"
    return {
        "task": "classification",
        "role": "ensemble_member" if args.model in MEMBER_BUILDERS else "comparison",
        "description": f"{FAMILIES.get(args.model, 'original backbone')} CNN trained from scratch (no pretrained "
                       f"weights are available offline){on}.",
        "architecture": args.model,
        "family": FAMILIES.get(args.model, "keras.applications backbone"),
        "file": path.name,
        "params": int(model.count_params()),
        "input": {"size": args.size, "channels": 1, "range": "[0, 1]", "normalisation": args.normalisation or "unit",
                  "preprocess": "brain crop (largest bright region), pad to square, resize; then 1st-99th "
                                "percentile of the head's pixels to [0, 1]" if head else
                                "brain crop (largest bright region), pad to square, resize, /255"},
        "classes": list(config.CLASS_NAMES),
        **fields,
        "epochs": len(history.epoch),
        "best_epoch": best.best_epoch + 1,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k not in {"data", "out", "workers"}},
        "stopped_by_time_budget": budget.stopped_early,
        "log": f"logs/{path.stem}.csv",
        "training_command": training_command("core.train.classifier"),
        **({"initialised_from": origin} if origin else {}),
        **run_facts(started),
    }


def _compiled(args: argparse.Namespace):
    model = build_classifier(args.model, args.size)
    origin = warm_start(model, args.init_from) if args.init_from else None
    set_batchnorm_momentum(model, 0.9)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=args.weight_decay, clipnorm=2.0),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
                  metrics=["accuracy"])
    return model, origin


def _shipped_for_share(option: str, share: float | None, noun: str, what: str, load: Any) -> Any | None:
    """The shipped model (``what``, from ``load()``) that ``option`` needs when given a share in (0, 1);
    None when the option is off. Checked before any data is loaded."""
    if share is None:
        return None
    if not 0.0 < share < 1.0:
        raise SystemExit(f"{option} takes a {noun} between 0 and 1, got {share}")
    from core.errors import ModelUnavailable

    try:
        return load()
    except ModelUnavailable as exc:
        raise SystemExit(f"{option} needs the shipped {what}: {exc}") from exc


def _sequence_recogniser(args: argparse.Namespace) -> Any | None:
    """The shipped sequence/plane model when ``--balance-sequence`` needs it; checks the sampling
    options before any data is loaded."""
    if args.mirror_healthy and "brats" not in args.sources:
        raise SystemExit("--mirror-healthy needs brats among --sources")
    from core.slices.acquisition import AcquisitionModel

    return _shipped_for_share("--balance-sequence", args.balance_sequence, "tumour share", "sequence/plane model",
                              AcquisitionModel.load_shipped)


def _hard_example_scorer(args: argparse.Namespace) -> Any | None:
    """The shipped ensemble when ``--hard-examples`` needs it; checks the share before any data is loaded."""
    from core.slices.classify import Classifier

    return _shipped_for_share("--hard-examples", args.hard_examples, "share", "ensemble", Classifier.load)


def _hard_examples(train: Any, weights: np.ndarray, share: float, scorer: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Balanced ``weights`` with ``share`` of each source x class cell moved to what ``scorer`` (the
    shipped ensemble) gets wrong (:func:`core.train.multisource.hard_example_weights`), and the card's record."""
    from core.train.multisource import difficulty_of, hard_example_weights

    print("scoring the training slices with the shipped ensemble ...", flush=True)
    difficulty = difficulty_of(train, scorer)
    cells = np.array([f"{r.source}/{r.label}" for r in train.refs])
    record = {"share": share, "scored_by": scorer.versions(),
              "mean_difficulty": {c: round(float(difficulty[cells == c].mean()), 4) for c in sorted(set(cells))}}
    return hard_example_weights(weights, cells, difficulty, share), record


def train_multisource(args: argparse.Namespace) -> None:
    """``--sources``: balanced multi-source training, selected on the worst validation cell."""
    from core.evaluation.external import json_table
    from core.data.sources import load_sources
    from core.train.multisource import (BalancedBatches, SourceValidation, balanced_weights, ranking_score,
                                        selection_score, training_counts, validation_table)

    started = time.monotonic()
    name = args.name or args.model
    args.normalisation = args.normalisation or "head"
    set_seed(args.seed)
    recogniser = _sequence_recogniser(args)
    scorer = _hard_example_scorer(args)
    print(f"loading sources {' '.join(args.sources)} at {args.size}px ...", flush=True)
    slices = load_sources(args.sources, args.size, progress=lambda what: print(f"  {what}", flush=True))
    train, val = slices.where(split="train"), slices.where(split="val")
    mirrored = 0
    if args.mirror_healthy:
        from core.data.mirrored import load_mirrored_brats
        from core.data.sources import SliceSet

        extra = load_mirrored_brats(args.size)
        train, mirrored = SliceSet.concat([train, extra]), len(extra)
    print(f"train {len(train)} ({mirrored} mirrored)  val {len(val)}", flush=True)
    augment = AcquisitionConfig()
    weights = balanced_weights(train)
    if recogniser is not None:
        from core.train.multisource import sequences_with_estimates, tumour_balanced_within_sequence

        tumour = np.array([r.tumour for r in train.refs])
        weights = tumour_balanced_within_sequence(weights, tumour, sequences_with_estimates(train, recogniser),
                                                  share=args.balance_sequence)
    hard = None
    if scorer is not None:
        weights, hard = _hard_examples(train, weights, args.hard_examples, scorer)
    batches = BalancedBatches(train.x, train.labels(), weights, args.batch, args.samples_per_epoch,
                              args.seed, args.normalisation, augment, workers=args.workers,
                              use_multiprocessing=False, max_queue_size=8)
    model, origin = _compiled(args)
    log_path = args.out / "logs" / f"{name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    validation = SourceValidation(val, args.normalisation)
    best = BestWeights("val_rank", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes, warmup_epochs=0 if origin else 2)
    history = model.fit(batches, epochs=args.epochs, verbose=2,
                        callbacks=[budget, validation, best, keras.callbacks.CSVLogger(str(log_path))])

    # No "precise BN" pass here: statistics of un-augmented slices differ from the augmented ones the
    # network was trained on, and re-estimating them moved the tumour/no-tumour balance (measured:
    # worst validation cell 0.56 -> 0.27 for the MobileNetV2 member).
    table = validation_table(validation.predict(), val)
    score, rank = selection_score(table), ranking_score(table)
    path = args.out / f"{name}.keras"
    save_inference_model(model, lambda: build_classifier(args.model, args.size), path)
    card = _card(args, model, path, history, best, budget, origin, started,
                 on=" on several sources, balanced over source x class", fields={
        "sources": list(args.sources),
        "data": "$BTD_DATA_DIR (" + ", ".join(args.sources) + "; see core/data/sources.py)",
        "split": "4-class Training: stratified 85/15 train/val, seed 42, minus copies of held-out figshare slices; "
                 "tcga_lgg: folds 1-2 train, 3 val, 4 held out; BraTS: the shipped BraTS model's case split; "
                 "official Testing untouched",
        "training_counts": training_counts(train),
        "augmentation": "balanced over source x class; acquisition shortcuts: window/level, gamma 0.6-1.6, bias "
                        "field ±30 %, noise, blur/sharpen, JPEG q30-95, low resolution, simulated skull "
                        "stripping, rotation ±15°, scale 0.85-1.15, shift 0.08, horizontal flip"
                        + (f"; {mirrored} tumour-free BraTS slices made by reflecting the healthy hemisphere "
                           "(core.data.mirrored)" if mirrored else "")
                        + (f"; tumours {args.balance_sequence:.2f} of the draws within each sequence"
                           if args.balance_sequence is not None else "")
                        + (f"; {args.hard_examples:.2f} of each source x class cell's draws moved to the slices "
                           "the shipped ensemble gets wrong" if hard else ""),
        **({"hard_examples": hard} if hard else {}),
        "metrics": {"val": {"worst_auc_or_accuracy": round(rank, 4), "worst": round(score, 4), "n": int(len(val)),
                            "cells": json_table(table)}},
    })
    record_model(name, card, args.out)
    print(f"RESULT model={name} val_rank={rank:.4f} val_worst={score:.4f} epochs={card['epochs']} "
          f"seconds={card['train_seconds']}")


if __name__ == "__main__":
    main()
