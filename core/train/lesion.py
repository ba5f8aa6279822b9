"""Train the multi-source lesion detector (a U-Net on the classifier's crop).

    python -m core.train.lesion --base 16 --epochs 20 --max-minutes 40

Data: every catalogued slice with a known mask (:mod:`core.data.sources`): figshare folds 1-2
(validation fold 3), tcga_lgg folds 1-2 (fold 3), BraTS training cases in four sequences and
three planes (validation cases), and the 4-class "no tumour" training images as tumour-free
slices (its validation images). Each epoch draws ``--samples-per-epoch`` slices, half with
tumour and half without, every source equally within each half, augmented against
acquisition shortcuts (intensities on the image, the same geometry on the mask). Loss: BCE +
soft Dice. The best epoch has the best *worst* detection AUC over the validation cells
(source x sequence), the detection score being the strongest region's mean probability times
the square root of its area share.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import keras
import numpy as np

from core import config
from core.train.augment import AcquisitionConfig, augment_acquisition_pair
from core.slices.classify import normalise_batch
from core.evaluation.external import safe_auc, cells_of, json_table
from core.slices.lesion import MODEL_NAME, evidence_of
from core.imaging.metrics import dice
from core.models.losses import bce_dice_loss
from core.models.segmenters import build_segmenter
from core.serving.registry import record_model
from core.data.sources import SliceSet, load_sources
from core.train.common import (BestWeights, CosineWithinBudget, add_sampled_training_args, run_facts,
                               save_inference_model, set_batchnorm_momentum, set_seed, training_command, warm_start)
from core.train.multisource import WeightedDraws

SOURCES = ["figshare", "tcga_lgg", "brats", "fourclass"]


def with_masks(slices: SliceSet) -> SliceSet:
    return slices.take(np.array([r.has_mask for r in slices.refs], dtype=bool))


def sampling_weights(slices: SliceSet) -> np.ndarray:
    """Tumour and tumour-free halves; sources equal within a half; slices equal within a cell."""
    keys = [(r.tumour, r.source) for r in slices.refs]
    cells = Counter(keys)
    per_status = Counter(t for t, _ in cells)
    w = np.array([1.0 / (len(per_status) * per_status[t] * cells[(t, s)]) for t, s in keys])
    return w / w.sum()


class MaskBatches(WeightedDraws):
    """Slices and their masks drawn by :func:`sampling_weights`, augmented together."""

    def __init__(self, slices: SliceSet, batch: int, samples: int, seed: int, augment: AcquisitionConfig, **kwargs):
        self.slices, self.augment = slices, augment
        super().__init__(sampling_weights(slices), batch, samples, seed, **kwargs)

    def draw_key(self) -> tuple[int, ...]:
        return (self.seed, self.epoch)

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        masks = self.slices.masks(take)
        pairs = [augment_acquisition_pair(self.slices.x[i], m, rng, self.augment) for i, m in zip(take, masks)]
        x = normalise_batch(np.stack([p[0] for p in pairs]), "head")[..., None]
        return x, np.stack([p[1] for p in pairs])[..., None].astype(np.float32)


def predict(model: keras.Model, slices: SliceSet, batch: int = 64) -> np.ndarray:
    x = normalise_batch(slices.x.astype(np.float32) / 255.0, "head")[..., None]
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False))[..., 0] for i in range(0, len(x), batch)])


def detection_score(prob: np.ndarray) -> float:
    e = evidence_of(prob)
    return e.confidence * float(np.sqrt(e.area_fraction))


def scores(model: keras.Model, slices: SliceSet) -> dict[str, dict[str, float]]:
    """Per source x sequence: detection AUC (tumour vs tumour-free) and mean Dice on tumour slices."""
    probs = predict(model, slices)
    score = np.array([detection_score(p) for p in probs])
    tumour = np.array([r.tumour for r in slices.refs])
    masks = slices.masks()
    out = {}
    for cell in cells_of(slices.column("source"), slices.column("sequence")):
        keep = (slices.column("source") == cell.source) & (slices.column("sequence") == cell.sequence)
        tum = keep & tumour
        out[cell.key] = {
            "n": int(keep.sum()), "n_tumour": int(tum.sum()), "auc": safe_auc(tumour[keep], score[keep]),
            "mean_dice": float(np.mean([dice(p >= 0.5, m) for p, m in zip(probs[tum], masks[tum])])) if tum.any()
            else float("nan")}
    return out


def worst_auc(table: dict[str, dict[str, float]]) -> float:
    values = [row["auc"] for row in table.values() if np.isfinite(row["auc"])]
    return float(min(values)) if values else float("nan")


class Validation(keras.callbacks.Callback):
    def __init__(self, val: SliceSet):
        super().__init__()
        self.val = val

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        table = scores(self.model, self.val)
        worst = worst_auc(table)
        if logs is not None:
            logs["val_worst_auc"] = worst
            for key, row in table.items():
                logs[f"val_{key.replace('/', '_')}_auc"] = row["auc"]
                logs[f"val_{key.replace('/', '_')}_dice"] = row["mean_dice"]
        print(f"epoch {epoch + 1}: val_worst_auc {worst:.4f} | "
              + "  ".join(f"{k} auc {v['auc']:.3f} dice {v['mean_dice']:.2f}" for k, v in table.items()), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="unet", choices=["unet", "resunet"])
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    add_sampled_training_args(p, sources=SOURCES, epochs=20, samples=4000, batch=16, lr=2e-3, name=MODEL_NAME)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    set_seed(args.seed)
    slices = with_masks(load_sources(args.sources, args.size))
    train, val, test = (slices.where(split=s) for s in ("train", "val", "test"))
    print(f"train {len(train)}  val {len(val)}  held out {len(test)}", flush=True)

    def build() -> keras.Model:
        return build_segmenter(args.model, input_size=args.size, base=args.base, depth=args.depth)

    model = build()
    origin = warm_start(model, args.init_from) if args.init_from else None
    set_batchnorm_momentum(model, 0.9)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=1e-4, clipnorm=2.0), loss=bce_dice_loss)
    log_path = args.out / "logs" / f"{args.name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = BestWeights("val_worst_auc", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes, warmup_epochs=0 if origin else 1)
    batches = MaskBatches(train, args.batch, args.samples_per_epoch, args.seed, AcquisitionConfig(),
                          workers=args.workers, use_multiprocessing=False, max_queue_size=8)
    history = model.fit(batches, epochs=args.epochs, verbose=2,
                        callbacks=[budget, Validation(val), best, keras.callbacks.CSVLogger(str(log_path))])
    val_table, test_table = scores(model, val), scores(model, test)
    path = args.out / f"{args.name}.keras"
    save_inference_model(model, build, path)
    card = {
        "task": "lesion",
        "role": "shipped",
        "description": "Multi-source lesion detector: a U-Net on the classifier's crop mapping tumour probability, "
                       "trained from scratch on the expert masks of figshare, tcga_lgg and BraTS and on tumour-free "
                       "slices; the evidence of the lesion cross-check.",
        "architecture": args.model,
        "file": path.name,
        "params": int(model.count_params()),
        "input": {"size": args.size, "channels": 1, "range": "[0, 1]", "normalisation": "head",
                  "preprocess": "the classifier's crop: brain crop, pad to square, resize; head percentiles to [0, 1]"},
        "output": "tumour probability per pixel of the crop (sigmoid)",
        "classes": ["tumour"],
        "sources": args.sources,
        "data": "$BTD_DATA_DIR (" + ", ".join(args.sources) + "; see core/data/sources.py)",
        "split": "figshare folds 1-2 train, 3 val, 4 held out; tcga_lgg folds 1-2 / 3 / 4; BraTS: the shipped BraTS "
                 "model's case split; 4-class 'no tumour' images: its stratified 85/15 split",
        "training_counts": {f"{s}/{'tumour' if t else 'no tumour'}": int(n) for (s, t), n in
                            sorted(Counter((r.source, r.tumour) for r in train.refs).items())},
        "epochs": len(history.epoch),
        "best_epoch": best.best_epoch + 1,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in {"out", "workers"}},
        "augmentation": "tumour/tumour-free halves, sources equal within each; window/level, gamma, bias field, noise, "
                        "blur/sharpen, JPEG, low resolution, simulated skull stripping, rotation ±15°, scale, shift, flip",
        "stopped_by_time_budget": budget.stopped_early,
        "metrics": {"val": {"worst_auc": round(worst_auc(val_table), 4), "cells": json_table(val_table)},
                    "test": {"worst_auc": round(worst_auc(test_table), 4), "cells": json_table(test_table)}},
        "log": f"logs/{log_path.name}",
        "training_command": training_command("core.train.lesion"),
        **({"initialised_from": origin} if origin else {}),
        **run_facts(started),
    }
    record_model(args.name, card, args.out)
    print(f"RESULT model={args.name} val_worst_auc={worst_auc(val_table):.4f} "
          f"heldout_worst_auc={worst_auc(test_table):.4f} epochs={card['epochs']}")


if __name__ == "__main__":
    main()
