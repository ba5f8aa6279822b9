"""Train one classifier from scratch on the 4-class Training split.

    python -m core.train.classifier --model resnet_compact --size 128 --epochs 30

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

import keras
import numpy as np

from core import config
from core.augment import augment_image
from core.datasets import load_classification, stratified_split
from core.models.classifiers import CLASSIFIER_BUILDERS, MEMBER_BUILDERS, build_classifier
from core.registry import record_model
from core.train.common import (BestWeights, CosineWithinBudget, recalibrate_batchnorm, relative_to_repo,
                               run_facts, save_inference_model, set_batchnorm_momentum, set_seed, training_command)

FAMILIES = {"resnet_compact": "residual", "mobilenet_compact": "depthwise-separable",
            "densenet_compact": "densely connected", "efficientnet_compact": "compound-scaled"}


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented batches of uint8 images ``(N, S, S)`` with one-hot labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch, self.seed = images, labels, batch, seed
        self.epoch = 0
        self.order = np.random.default_rng(seed).permutation(len(images))

    def __len__(self) -> int:
        return int(np.ceil(len(self.images) / self.batch))

    def __getitem__(self, idx: int):
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        take = self.order[idx * self.batch:(idx + 1) * self.batch]
        x = np.stack([augment_image(self.images[i], rng) for i in take])[..., None]
        y = keras.utils.to_categorical(self.labels[take], len(config.CLASS_NAMES))
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))


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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    name = args.name or args.model
    set_seed(args.seed)
    root = args.data or default_training_dir()
    print(f"loading {root} at {args.size}px ...", flush=True)
    x, y, _ = load_classification(root, args.size)
    train_idx, val_idx = stratified_split(y, args.val_fraction, args.seed)
    x_val = (x[val_idx].astype(np.float32) / 255.0)[..., None]
    y_val = keras.utils.to_categorical(y[val_idx], len(config.CLASS_NAMES))
    print(f"train {len(train_idx)}  val {len(val_idx)}", flush=True)

    batches = AugmentedBatches(x[train_idx], y[train_idx], args.batch, args.seed,
                               workers=args.workers, use_multiprocessing=False, max_queue_size=8)
    model = build_classifier(args.model, args.size)
    set_batchnorm_momentum(model, 0.9)
    model.compile(
        optimizer=keras.optimizers.AdamW(args.lr,
                                         weight_decay=args.weight_decay, clipnorm=2.0),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
        metrics=["accuracy"])
    log_path = args.out / "logs" / f"{name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = BestWeights("val_accuracy", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes)
    history = model.fit(batches, validation_data=(x_val, y_val), epochs=args.epochs, verbose=2,
              callbacks=[budget, keras.callbacks.CSVLogger(str(log_path)), best])

    recalibrate_batchnorm(model, (x[train_idx].astype(np.float32) / 255.0)[..., None], seed=args.seed)
    probs = model.predict(x_val, batch_size=64, verbose=0)
    val_acc = float(np.mean(probs.argmax(1) == y[val_idx]))
    path = args.out / f"{name}.keras"
    save_inference_model(model, lambda: build_classifier(args.model, args.size), path)
    card = {
        "task": "classification",
        "role": "ensemble_member" if args.model in MEMBER_BUILDERS else "comparison",
        "description": f"{FAMILIES.get(args.model, 'original backbone')} CNN trained from scratch "
                       "(no pretrained weights are available offline).",
        "architecture": args.model,
        "family": FAMILIES.get(args.model, "keras.applications backbone"),
        "file": path.name,
        "params": int(model.count_params()),
        "input": {"size": args.size, "channels": 1, "range": "[0, 1]",
                  "preprocess": "brain crop (largest bright region), pad to square, resize, /255"},
        "classes": list(config.CLASS_NAMES),
        "data": relative_to_repo(root),
        "split": f"stratified {1 - args.val_fraction:.0%}/{args.val_fraction:.0%} train/val of Training, seed {args.seed}; "
                 "official Testing untouched",
        "epochs": len(history.epoch),
        "best_epoch": best.best_epoch + 1,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k not in {"data", "out", "workers"}},
        "augmentation": "rotation ±10°, shift 0.1, zoom 0.1, brightness 0.8-1.2, horizontal flip",
        "stopped_by_time_budget": budget.stopped_early,
        "metrics": {"val": {"accuracy": round(val_acc, 4), "n": int(len(val_idx))}},
        "log": f"logs/{log_path.name}",
        "training_command": training_command("core.train.classifier"),
        **run_facts(started),
    }
    record_model(name, card, args.out)
    print(f"RESULT model={name} val_accuracy={val_acc:.4f} epochs={card['epochs']} seconds={card['train_seconds']}")


if __name__ == "__main__":
    main()
