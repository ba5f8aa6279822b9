"""Train a 2D tumour segmenter (ResUNet, U-Net or Attention U-Net) with a patient-wise split.

    python -m core.train.segmenter --model resunet --size 256 --crop 160 --base 12 --epochs 40

Data: figshare_3064 (``index.csv`` with ``patient_id`` and ``fold``). Fold ``--test-fold`` is
held out entirely (never trained on, never used for selection); ``--val-patients`` of the
remaining patients form the validation set used to pick the best epoch and to tune the
post-processing (probability threshold and which components to keep). No patient appears on
two sides. ``--init-from`` continues a saved model on the same split (its card's epochs and
log carry into the new card). The network is fully convolutional:
it trains on tumour-biased crops of ``--crop`` pixels taken from the ``--size`` slices (four
times cheaper than whole slices on a CPU) and predicts whole ``--size`` slices.

``--extra-sources tcga_lgg brats`` also draws whole slices of those sources with the mask of the
region each sequence shows, tumour-free slices among them (:mod:`core.train.segmenter_mix`); the
best epoch is then the one whose worst validation cell (figshare's validation patients, tcga_lgg
fold 3 and the BraTS validation cases by sequence) is best.

The full-resolution recipe (issue 19, run 3; a GPU's) adds nnU-Net's training choices, each an
option: ``--deep-supervision 2`` (two coarser decoder levels predict the mask too,
:mod:`core.models.deep_supervision`), ``--optimizer sgd --schedule poly`` (SGD with Nesterov
momentum, polynomial decay), ``--augment acquisition`` (the classifier's stronger spatial and
intensity augmentation: window/level, gamma, bias field, noise, blur, JPEG, low resolution,
simulated skull stripping). After training, the left-right mirror's average is measured on the
validation patients and kept as the model's test-time augmentation (the card's ``tta``, applied
by the app) only when it scores higher.
"""
from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from pathlib import Path

import keras
import numpy as np

from core import config
from core.data.whole_slices import MASKED_SOURCES, load_whole_slices, masked_refs
from core.evaluation.external import json_table
from core.models.deep_supervision import output_weights, with_deep_supervision
from core.train.augment import AcquisitionConfig, augment_acquisition_pair, augment_pair
from core.train.segmenter_mix import (FIGSHARE_CELL, cell_of, cell_scores, mixed_weights, selection_score,
                                      worst_score)
from core.data.datasets import list_segmentation, load_segmentation, patient_split
from core.imaging.metrics import dice
from core.models.losses import bce_dice_loss, binary_dice_metric
from core.models.segmenters import SEGMENTER_BUILDERS, build_segmenter
from core.serving.registry import record_model
from core.slices.classify import with_mirrors
from core.slices.segment import KEEP_RULES, PostProcessing, mean_over_mirrored_maps, postprocess, rules_for_card
from core.train.common import (SCHEDULES, BestWeights, ShuffledBatches, relative_to_repo, run_facts,
                               concatenate_logs, draw_by_weights, freeze_batchnorm, save_inference_model,
                               set_batchnorm_momentum, set_seed, training_command, warm_start)

#: Arguments that define the patient-wise split; a continued run must keep them.
SPLIT_KEYS = ("test_fold", "val_patients", "seed")

#: Pixel spacing of the figshare slices at 256 px (0.49 mm at 512 px, per the dataset notes).
FIGSHARE_SPACING_MM = (0.98, 0.98)

#: ``--augment``: the card's words and the function that augments an (image, mask) pair.
AUGMENTS = {
    "standard": ("rotation ±10°, shift 0.1, zoom 0.1, brightness 0.8-1.2, horizontal flip", augment_pair),
    "acquisition": ("rotation ±15°, shift 0.08, scale 0.85-1.15, horizontal flip; window/level, gamma 0.6-1.6, "
                    "bias field, noise, blur/sharpen, JPEG, low resolution, simulated skull stripping",
                    lambda image, mask, rng: augment_acquisition_pair(image, mask, rng, AcquisitionConfig())),
}
#: Gain in validation Dice the mirrored average must bring to become the model's test-time augmentation.
TTA_MARGIN = 0.002


class CropBatches(ShuffledBatches):
    """Augmented image/mask batches; crops centre on tumour with probability ``p_tumour``.

    Every slice once per epoch, or, with ``weights``, ``samples`` slices drawn by them anew each epoch.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, batch: int, crop: int, seed: int,
                 p_tumour: float = 0.8, weights: np.ndarray | None = None, samples: int | None = None,
                 augment: str = "standard", outputs: int = 1, **kwargs):
        self.weights, self.samples = weights, samples or len(images)
        self.augment, self.outputs = AUGMENTS[augment][1], outputs
        super().__init__(len(images), batch, seed, **kwargs)
        self.images, self.masks, self.crop, self.p_tumour = images, masks, crop, p_tumour

    def first_order(self) -> np.ndarray:
        return super().first_order() if self.weights is None else draw_by_weights(self.weights, self.samples,
                                                                                   (self.seed, 0, 7))

    def next_order(self) -> np.ndarray:
        return super().next_order() if self.weights is None else draw_by_weights(self.weights, self.samples,
                                                                                  (self.seed, self.epoch, 7))

    def __len__(self) -> int:
        return int(np.ceil(self.samples / self.batch))

    def _crop_origin(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        size, c = mask.shape[0], self.crop
        fg = np.argwhere(mask)
        if len(fg) and rng.random() < self.p_tumour:
            r, col = fg[rng.integers(len(fg))]
            r0 = int(r) - c // 2 + int(rng.integers(-c // 4, c // 4 + 1))
            c0 = int(col) - c // 2 + int(rng.integers(-c // 4, c // 4 + 1))
        else:
            r0, c0 = (int(v) for v in rng.integers(0, size - c + 1, size=2))
        return int(np.clip(r0, 0, size - c)), int(np.clip(c0, 0, size - c))

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        xs, ys = [], []
        for i in take:
            image, mask = self.augment(self.images[i], self.masks[i], rng)
            r0, c0 = self._crop_origin(mask, rng)
            xs.append(image[r0:r0 + self.crop, c0:c0 + self.crop])
            ys.append(mask[r0:r0 + self.crop, c0:c0 + self.crop])
        y = np.stack(ys)[..., None].astype(np.float32)
        return np.stack(xs)[..., None], (y if self.outputs == 1 else (y,) * self.outputs)


def tune_postprocessing(probs: np.ndarray, masks: np.ndarray,
                        spacing: tuple[float, float]) -> tuple[PostProcessing, float]:
    """Threshold and component rule that maximise mean per-image Dice on ``probs`` (validation)."""
    best: tuple[PostProcessing, float] = (PostProcessing(), -1.0)
    for keep in KEEP_RULES:
        for threshold in np.round(np.arange(0.3, 0.75, 0.05), 2):
            rules = PostProcessing(threshold=float(threshold), keep=keep)
            score = float(np.mean([dice(postprocess(p, spacing, rules), m) for p, m in zip(probs, masks)]))
            if score > best[1]:
                best = (rules, score)
    return best


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resunet", choices=sorted(set(SEGMENTER_BUILDERS) - {"unet3d"}))
    p.add_argument("--data", type=Path, default=None, help="figshare folder (default: $BTD_DATA_DIR/figshare_3064)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--crop", type=int, default=160, help="training crop side (0: whole slices)")
    p.add_argument("--base", type=int, default=12, help="filters at the first level")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--test-fold", type=int, default=4)
    p.add_argument("--val-patients", type=float, default=0.15, help="fraction of training patients kept for validation")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--extra-sources", nargs="*", default=[], choices=list(MASKED_SOURCES),
                   help="also train on these sources' whole slices and masks (core/data/whole_slices.py); "
                        "the best epoch is then the one with the best worst validation cell")
    p.add_argument("--extra-share", type=float, default=0.5, help="share of each epoch's draws from --extra-sources")
    p.add_argument("--figshare-floor", type=float, default=None,
                   help="with --extra-sources: an epoch whose figshare validation Dice is below this ranks after "
                        "every epoch at or above it (keeps what the segmenter does on figshare)")
    p.add_argument("--freeze-batchnorm", action="store_true",
                   help="keep the batch-normalisation statistics of --init-from (fine-tuning on other sources "
                        "otherwise re-estimates them on the mix, which moves figshare's own predictions)")
    p.add_argument("--samples-per-epoch", type=int, default=None,
                   help="slices per epoch: drawn by weight with --extra-sources (default: twice the figshare training "
                        "slices); without, the first of each epoch's shuffle (default: all)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="continue from this saved model (same architecture and split): its card's "
                        "epochs and log are carried into the new card")
    p.add_argument("--deep-supervision", type=int, default=0, metavar="LEVELS",
                   help="also supervise this many coarser decoder levels (loss weights 1, 1/2, 1/4, ...)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw",
                   help="sgd: Nesterov momentum --momentum (nnU-Net: --lr 1e-2 --schedule poly)")
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="cosine",
                   help="learning-rate decay within the epochs and the time budget")
    p.add_argument("--augment", choices=sorted(AUGMENTS), default="standard",
                   help="standard: geometry and brightness; acquisition: also contrast, bias, noise, blur, JPEG, "
                        "resolution and skull stripping")
    return p.parse_args(argv)


def make_optimizer(args: argparse.Namespace) -> keras.optimizers.Optimizer:
    """AdamW, or SGD with Nesterov momentum (nnU-Net's), both with weight decay and clipped gradients."""
    if args.optimizer == "sgd":
        return keras.optimizers.SGD(args.lr, momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay,
                                    clipnorm=12.0)
    return keras.optimizers.AdamW(args.lr, weight_decay=args.weight_decay, clipnorm=1.0)


def mirrored_probabilities(model: keras.Model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Probabilities ``(N, H, W)`` of ``x`` ``(N, H, W, 1)`` averaged with those of its left-right mirror
    (as the app's :meth:`core.slices.segment.Segmenter.predict_inputs` does)."""
    return mean_over_mirrored_maps(model.predict(with_mirrors(x), batch_size=batch, verbose=0)[..., 0])


def split_indices(listing, test_fold: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)`` indices: test = one fold, val = a random subset of the other patients."""
    rest, test = patient_split(listing.patients, listing.folds, (test_fold,))
    patients = sorted({listing.patients[i] for i in rest})
    rng = np.random.default_rng(seed)
    val_patients = set(rng.choice(patients, size=max(1, int(round(val_fraction * len(patients)))), replace=False))
    val = np.array([i for i in rest if listing.patients[i] in val_patients])
    train = np.array([i for i in rest if listing.patients[i] not in val_patients])
    return train, val, test


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    name = args.name or args.model
    set_seed(args.seed)
    base = config.data_dir()
    root = args.data or (base / "figshare_3064" if base else None)
    if root is None:
        raise SystemExit("no data: set BTD_DATA_DIR or pass --data")
    listing = list_segmentation(root)
    images, masks = load_segmentation(listing, args.size)
    train, val, test = split_indices(listing, args.test_fold, args.val_patients, args.seed)
    n_pat = lambda idx: len({listing.patients[i] for i in idx})  # noqa: E731
    print(f"train {len(train)} slices/{n_pat(train)} patients, val {len(val)}/{n_pat(val)}, "
          f"test fold {args.test_fold}: {len(test)}/{n_pat(test)} (not used here)", flush=True)

    crop = args.crop or args.size
    extra = {split: load_whole_slices(masked_refs(args.extra_sources, split, axial_only=split == "val"), args.size)
             for split in ("train", "val")} if args.extra_sources else {}  # validated axially, as benchmarked
    train_x, train_y, weights = images[train], masks[train], None
    if extra:
        print("extra sources: " + ", ".join(f"{split} {len(part)}" for split, part in extra.items()), flush=True)
        train_x = np.concatenate([train_x, extra["train"].x])
        train_y = np.concatenate([train_y, extra["train"].y])
        weights = mixed_weights(len(train), extra["train"].refs, args.extra_share)
    batches = CropBatches(train_x, train_y, args.batch, crop, args.seed, weights=weights,
                          samples=(args.samples_per_epoch or 2 * len(train)) if extra else args.samples_per_epoch,
                          augment=args.augment, outputs=1 + args.deep_supervision,
                          workers=args.workers, use_multiprocessing=False, max_queue_size=8)
    x_val = (images[val].astype(np.float32) / 255.0)[..., None]
    val_cells = [FIGSHARE_CELL] * len(val) + ([cell_of(r) for r in extra["val"].refs] if extra else [])
    val_truth = np.concatenate([masks[val], extra["val"].y]) if extra else masks[val]
    x_all_val = np.concatenate([x_val, (extra["val"].x.astype(np.float32) / 255.0)[..., None]]) if extra else x_val
    build = lambda: build_segmenter(args.model, input_size=args.size, channels=1, num_classes=1,  # noqa: E731
                                    base=args.base, depth=args.depth)
    # Train a twin at crop size (fully convolutional: identical weights) and save at full size.
    model = build_segmenter(args.model, input_size=crop, channels=1, num_classes=1, base=args.base, depth=args.depth)
    full = build()
    origin = warm_start(model, args.init_from) if args.init_from else None
    prior = (origin or {}).pop("config", None) or {}
    moved = [k for k in SPLIT_KEYS if k in prior and prior[k] != getattr(args, k)]
    if moved:  # another split would put the earlier run's training patients in this run's val/test
        raise SystemExit(f"--init-from {args.init_from} was trained with another split ({', '.join(moved)} differ)")
    set_batchnorm_momentum(model, 0.9)
    if args.freeze_batchnorm:
        print(f"batch normalisation frozen in {freeze_batchnorm(model)} layers", flush=True)
    # the network that trains: ``model``, or with deep supervision a wrapper sharing its layers
    trainer = with_deep_supervision(model, args.deep_supervision)
    if args.deep_supervision:
        trainer.compile(optimizer=make_optimizer(args), loss=[bce_dice_loss] * (1 + args.deep_supervision),
                        loss_weights=output_weights(args.deep_supervision), metrics={"mask": [binary_dice_metric]})
    else:
        trainer.compile(optimizer=make_optimizer(args), loss=bce_dice_loss, metrics=[binary_dice_metric])

    class FullSizeValidation(keras.callbacks.Callback):
        """Validate on whole slices with the full-size twin (crop-size graphs cannot take them)."""

        def on_epoch_end(self, epoch, logs=None):
            full.set_weights(model.get_weights())
            hard = full.predict(x_all_val, batch_size=16, verbose=0)[..., 0] > 0.5
            logs["val_dice"] = float(np.mean([dice(h, t) for h, t in zip(hard[:len(val)], masks[val])]))
            print(f"  val_dice {logs['val_dice']:.4f}", flush=True)
            if extra:
                table = cell_scores(hard, val_truth, val_cells)
                logs["val_worst"] = worst_score(table)
                logs["val_selection"] = selection_score(logs["val_worst"], logs["val_dice"], args.figshare_floor)
                print(f"  val_worst {logs['val_worst']:.4f} | " + "  ".join(
                    f"{k} {v['score']:.3f} (dice {v['tumour_dice']:.3f}, clean {v['clean']:.2f})"
                    for k, v in table.items()), flush=True)

    log_path = args.out / "logs" / f"{name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prior_log = args.init_from.parent / origin["log"] if origin and origin.get("log") else None
    if prior_log is not None and prior_log.is_file():  # keep the earlier epochs: this run overwrites the log
        prior_log = Path(shutil.copy(prior_log, log_path.with_suffix(".prior.csv")))
    best = BestWeights("val_selection" if extra else "val_dice", mode="max")
    budget = SCHEDULES[args.schedule](args.lr, args.epochs, args.max_minutes)
    history = trainer.fit(batches, epochs=args.epochs, verbose=2,
                        callbacks=[FullSizeValidation(), budget, keras.callbacks.CSVLogger(str(log_path)), best])

    if prior_log is not None and prior_log.is_file():
        concatenate_logs(prior_log, log_path, log_path)
        prior_log.unlink()
    full.set_weights(model.get_weights())
    probs = full.predict(x_all_val, batch_size=16, verbose=0)[..., 0]
    rules, val_dice = tune_postprocessing(probs[:len(val)], masks[val], FIGSHARE_SPACING_MM)
    mirrored = mirrored_probabilities(full, x_val)
    tta_rules, tta_dice = tune_postprocessing(mirrored, masks[val], FIGSHARE_SPACING_MM)
    tta = "hflip" if tta_dice > val_dice + TTA_MARGIN else "none"
    print(f"  validation Dice {val_dice:.4f}, with the mirrored average {tta_dice:.4f}: tta {tta}", flush=True)
    plain_dice = val_dice
    if tta == "hflip":
        rules, val_dice = tta_rules, tta_dice
    val_cells_table = cell_scores(probs > 0.5, val_truth, val_cells) if extra else None
    path = args.out / f"{name}.keras"
    save_inference_model(full, build, path)
    card = {
        "task": "segmentation",
        "role": "shipped" if name == "resunet" else "comparison",
        "description": (f"{args.model} for binary tumour masks, trained from scratch on figshare T1-CE slices and "
                        f"on whole slices of {', '.join(args.extra_sources)} (the region each sequence shows)."
                        if extra else f"{args.model} for binary tumour masks on T1-CE slices, trained from scratch."),
        "architecture": args.model,
        "file": path.name,
        "params": int(full.count_params()),
        "input": {"size": args.size, "channels": 1, "range": "[0, 1]",
                  "preprocess": "whole slice padded to square, resized, /255"},
        "classes": ["tumour"],
        "data": relative_to_repo(root) + "".join(f", $BTD_DATA_DIR/{s}" for s in args.extra_sources),
        "split": f"patient-wise: fold {args.test_fold} held out ({len(test)} slices, {n_pat(test)} patients); "
                 f"val {len(val)} slices of {n_pat(val)} patients; train {len(train)} slices of {n_pat(train)} patients"
                 + ("; tcga_lgg folds 1-2 train, 3 val, 4 held out; BraTS: the shipped BraTS model's case split"
                    if extra else ""),
        **({"training_counts": {f"{c}/{'tumour' if t else 'no tumour'}": int(n) for (c, t), n in sorted(
            Counter((cell_of(r), r.tumour) for r in extra["train"].refs).items())},
            "selected_on": "worst validation cell: mean per-slice Dice, 1 for a tumour-free slice left clean "
                           "(core/train/segmenter_mix.py)" + (f"; epochs with figshare validation Dice below "
                                                               f"{args.figshare_floor} rank last"
                                                               if args.figshare_floor is not None else "")}
           if extra else {}),
        "epochs": len(history.epoch) + int((origin or {}).get("epochs") or 0),
        "best_epoch": best.best_epoch + 1 + int((origin or {}).get("epochs") or 0),
        **({"initialised_from": origin, "epochs_this_run": len(history.epoch)} if origin else {}),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k not in {"data", "out", "workers"}},
        "loss": "BCE + soft Dice" + (f", deep supervision of {args.deep_supervision} coarser decoder levels "
                                     f"(output weights {[round(w, 3) for w in output_weights(args.deep_supervision)]})"
                                     if args.deep_supervision else ""),
        "optimizer": (f"SGD, Nesterov momentum {args.momentum}" if args.optimizer == "sgd" else "AdamW")
                     + f", weight decay {args.weight_decay}, {args.schedule} decay from {args.lr}",
        "postprocessing": rules_for_card(rules),
        "tta": tta,
        "augmentation": f"{AUGMENTS[args.augment][0]}; {crop}px tumour-biased crops",
        "stopped_by_time_budget": budget.stopped_early,
        "metrics": {"val": {"mean_dice": round(val_dice, 4), "threshold": rules.threshold, "n": int(len(val)),
                            "mean_dice_without_tta": round(plain_dice, 4), "mean_dice_hflip_tta": round(tta_dice, 4),
                            **({"worst_cell": round(worst_score(val_cells_table), 4),
                                "cells": json_table(val_cells_table)} if extra else {})}},
        "log": f"logs/{log_path.name}",
        "training_command": training_command("core.train.segmenter"),
        **run_facts(started),
    }
    record_model(name, card, args.out)
    print(f"RESULT model={name} val_dice={val_dice:.4f} threshold={rules.threshold} keep={rules.keep} "
          f"epochs={card['epochs']}")


if __name__ == "__main__":
    main()
