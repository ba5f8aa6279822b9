"""Train the BraTS sub-region segmenter: a 2D multi-class U-Net over axial slices (CPU fallback).

    python -m core.train.brats --epochs 30

The original design is a 3D U-Net on 128³ crops; on a 2-core CPU this repository trains its
stated fallback instead: four modalities of one axial slice in, background/NCR/ED/ET out, Dice +
focal loss. Cases are split by case (``--test-cases`` held out entirely, ``--val-cases`` pick the
best epoch and the post-processing); the split is written to the model card so that
``python -m core.evaluate brats`` scores only cases the model never saw.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np

from core import config
from core.augment import AugmentConfig, random_affine, warp
from core.brats_model import (CLASS_TO_LABEL, MODALITIES, VolumePostProcessing, labels_to_classes,
                              normalise_case, postprocess_labels, predict_classes)
from core.metrics import dice
from core.models.losses import dice_focal_loss
from core.models.segmenters import build_segmenter
from core.registry import record_model
from core.train.common import (BestWeights, CosineWithinBudget, relative_to_repo, run_facts,
                               save_inference_model, set_batchnorm_momentum, set_seed, training_command)
from core.volume import read_case_folder

REGIONS = config.BRATS_REGIONS
GEOMETRY = AugmentConfig(rotation_deg=10.0, shift=0.05, zoom=0.1, brightness=(1.0, 1.0), hflip=True)


def list_cases(root: Path) -> list[Path]:
    """Case folders under ``root`` (each holding one BraTS case)."""
    cases = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not cases:
        raise SystemExit(f"no case folders in {root}")
    return cases


def split_cases(cases: list[Path], n_test: int, n_val: int, seed: int) -> tuple[list[Path], list[Path], list[Path]]:
    """``(train, val, test)`` case folders from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(cases))
    picked = [cases[i] for i in order]
    return picked[n_test + n_val:], picked[n_test:n_test + n_val], picked[:n_test]


def load_volumes(folders: list[Path]) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """``(case_id, normalised (X, Y, Z, 4), labels (X, Y, Z), spacing)`` per case."""
    out = []
    for folder in folders:
        case = read_case_folder(folder)
        if case.labels is None:
            raise SystemExit(f"{folder.name} has no label map")
        out.append((case.case_id, normalise_case(case.images), case.labels, tuple(case.spacing_mm)))
    return out


class SliceBatches(keras.utils.PyDataset):
    """Augmented axial slices ``(B, S, S, 4)`` with one-hot targets ``(B, S, S, 4)``."""

    def __init__(self, volumes, batch: int, size: int, seed: int, tumour_repeat: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.batch, self.size, self.seed, self.epoch = batch, size, seed, 0
        self.slices: list[tuple[np.ndarray, np.ndarray]] = []
        for _, volume, labels, _ in volumes:
            classes = labels_to_classes(labels)
            for z in range(volume.shape[2]):
                if not np.any(volume[:, :, z]):
                    continue
                item = (volume[:, :, z], classes[:, :, z])
                self.slices.extend([item] * (tumour_repeat if np.any(item[1]) else 1))
        self.order = np.random.default_rng(seed).permutation(len(self.slices))

    def __len__(self) -> int:
        return int(np.ceil(len(self.slices) / self.batch))

    def _crop(self, image: np.ndarray, classes: np.ndarray, rng: np.random.Generator):
        h, w = classes.shape
        s = self.size
        if h < s or w < s:
            pad = ((0, max(0, s - h)), (0, max(0, s - w)))
            image, classes = np.pad(image, (*pad, (0, 0))), np.pad(classes, pad)
            h, w = classes.shape
        r0, c0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        return image[r0:r0 + s, c0:c0 + s], classes[r0:r0 + s, c0:c0 + s]

    def __getitem__(self, idx: int):
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        xs, ys = [], []
        for i in self.order[idx * self.batch:(idx + 1) * self.batch]:
            image, classes = self._crop(*self.slices[i], rng)
            matrix, flip = random_affine(rng, classes.shape, GEOMETRY)
            image = warp(np.ascontiguousarray(image), matrix, flip)
            classes = warp(np.ascontiguousarray(classes), matrix, flip, is_mask=True)
            image = image * rng.uniform(0.9, 1.1, size=4) + rng.uniform(-0.1, 0.1, size=4)
            xs.append(image.astype(np.float32))
            ys.append(np.eye(4, dtype=np.float32)[classes])
        return np.stack(xs), np.stack(ys)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.slices))


def region_dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per BraTS region (both empty = 1.0)."""
    return {region: float(dice(np.isin(pred, labels), np.isin(truth, labels))) for region, labels in REGIONS.items()}


def score_cases(model, volumes, rules: VolumePostProcessing | None = None) -> dict[str, float]:
    """Mean region Dice over cases, predictions post-processed with ``rules`` when given."""
    scores = []
    for _, volume, labels, spacing in volumes:
        pred = CLASS_TO_LABEL[predict_classes(model, volume)]
        if rules is not None:
            pred = postprocess_labels(pred, spacing, rules)
        scores.append(region_dice(pred, labels))
    return {region: float(np.mean([s[region] for s in scores])) for region in REGIONS}


def tune_postprocessing(model, volumes) -> tuple[VolumePostProcessing, dict[str, float]]:
    """Post-processing sizes that maximise the mean of WT/TC/ET Dice on the validation cases."""
    raw = [(case, CLASS_TO_LABEL[predict_classes(model, volume)], labels, spacing)
           for case, volume, labels, spacing in volumes]
    best: tuple[VolumePostProcessing, dict[str, float]] | None = None
    for min_component in (0.0, 100.0, 500.0, 2000.0):
        for min_et in (0.0, 100.0, 300.0, 1000.0):
            rules = VolumePostProcessing(min_component, min_et)
            per_case = [region_dice(postprocess_labels(pred, spacing, rules), labels) for _, pred, labels, spacing in raw]
            mean = {r: float(np.mean([s[r] for s in per_case])) for r in REGIONS}
            if best is None or np.mean(list(mean.values())) > np.mean(list(best[1].values())) + 1e-6:
                best = (rules, mean)
    assert best is not None
    return best


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="BraTS case folders (default: $BTD_DATA_DIR/brats)")
    p.add_argument("--size", type=int, default=128, help="training crop side (in-plane)")
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--test-cases", type=int, default=5)
    p.add_argument("--val-cases", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--name", default="unet2d_brats")
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--workers", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    set_seed(args.seed)
    base = config.data_dir()
    root = args.data or (base / "brats" if base else None)
    if root is None:
        raise SystemExit("no data: set BTD_DATA_DIR or pass --data")
    train_dirs, val_dirs, test_dirs = split_cases(list_cases(root), args.test_cases, args.val_cases, args.seed)
    print(f"train {len(train_dirs)} cases, val {len(val_dirs)}, test {len(test_dirs)} (not used here)", flush=True)
    train, val = load_volumes(train_dirs), load_volumes(val_dirs)
    batches = SliceBatches(train, args.batch, args.size, args.seed, workers=args.workers,
                           use_multiprocessing=False, max_queue_size=8)
    print(f"{len(batches.slices)} training slices per epoch", flush=True)

    build = lambda size: build_segmenter("unet", input_size=size, channels=len(MODALITIES),  # noqa: E731
                                         num_classes=4, base=args.base, depth=args.depth)
    model = build(args.size)
    set_batchnorm_momentum(model, 0.9)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr,
                                                   weight_decay=args.weight_decay, clipnorm=1.0),
                  loss=dice_focal_loss)
    any_size = build(None)

    class CaseValidation(keras.callbacks.Callback):
        """Whole-volume region Dice on the validation cases after each epoch."""

        def on_epoch_end(self, epoch, logs=None):
            any_size.set_weights(self.model.get_weights())
            scores = score_cases(any_size, val)
            logs.update({f"val_{k.lower()}": v for k, v in scores.items()})
            logs["val_mean_dice"] = float(np.mean(list(scores.values())))
            print("  val " + " ".join(f"{k}={v:.3f}" for k, v in scores.items()), flush=True)

    log_path = args.out / "logs" / f"{args.name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = BestWeights("val_mean_dice", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes)
    history = model.fit(batches, epochs=args.epochs, verbose=2,
                        callbacks=[CaseValidation(), budget, keras.callbacks.CSVLogger(str(log_path)), best])

    any_size.set_weights(model.get_weights())
    rules, val_scores = tune_postprocessing(any_size, val)
    path = args.out / f"{args.name}.keras"
    save_inference_model(any_size, lambda: build(None), path)
    card = {
        "task": "brats",
        "role": "shipped",
        "description": "2D multi-class U-Net applied slice by slice to 3D BraTS cases: the stated CPU "
                       "fallback of the original 3D U-Net (128³ crops), which needs a GPU to train. "
                       "Trained from scratch.",
        "architecture": "unet (2D, multi-class)",
        "file": path.name,
        "params": int(any_size.count_params()),
        "input": {"size": "any in-plane size (padded to a multiple of 16); trained on "
                          f"{args.size}px axial slices", "channels": list(MODALITIES),
                  "range": "per-modality z-score over brain voxels, clipped to ±5, 0 outside the brain",
                  "preprocess": "canonical RAS, axial slices volume[:, :, z]"},
        "classes": ["background", "NCR", "ED", "ET"],
        "labels_out": {"NCR": 1, "ED": 2, "ET": 4},
        "data": relative_to_repo(root),
        "split": f"by case, seed {args.seed}: test {len(test_dirs)} cases held out, val {len(val_dirs)}, "
                 f"train {len(train_dirs)}",
        "split_cases": {"train": [p.name for p in train_dirs], "val": [p.name for p in val_dirs],
                        "test": [p.name for p in test_dirs]},
        "epochs": len(history.epoch),
        "best_epoch": best.best_epoch + 1,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k not in {"data", "out", "workers"}},
        "loss": "soft Dice over NCR/ED/ET + categorical focal (gamma 2)",
        "postprocessing_rules": rules.__dict__,
        "postprocessing": "drop 3D tumour components below min_component_mm3; relabel ET as NCR when "
                          "the total ET is below min_et_mm3 (both tuned on the validation cases)",
        "augmentation": "rotation ±10°, shift 0.05, zoom 0.1, left-right flip, per-modality intensity "
                        "scale 0.9-1.1 and shift ±0.1 SD; tumour slices twice per epoch",
        "stopped_by_time_budget": budget.stopped_early,
        "metrics": {"val": {**{f"dice_{k.lower()}": round(v, 4) for k, v in val_scores.items()},
                            "n": len(val_dirs)}},
        "log": f"logs/{log_path.name}",
        "training_command": training_command("core.train.brats"),
        **run_facts(started),
    }
    record_model(args.name, card, args.out)
    print("RESULT model={} ".format(args.name) + " ".join(f"val_{k.lower()}={v:.4f}" for k, v in val_scores.items()))


if __name__ == "__main__":
    main()
