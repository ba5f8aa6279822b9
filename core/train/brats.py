"""Train the BraTS sub-region segmenter: a 2D multi-class U-Net over axial slices, or a 3D U-Net.

    python -m core.train.brats --epochs 30                          # 2D (the CPU fallback)
    python -m core.train.brats --model unet3d --crop 96 --epochs 40  # 3D (the original design; a GPU)

Both see the four modalities and predict background/NCR/ED/ET with Dice + focal loss, or with
``--outputs regions`` the nested regions WT, TC and ET as three sigmoids with Dice + binary
cross-entropy (the region-based training of the BraTS winners; the app turns them back into
NCR/ED/ET, :func:`core.volumes.brats_model.regions_to_classes`). The 2D model takes one axial slice at a time; the 3D U-Net (the original design) random ``--crop``³
crops, two in three centred on a tumour voxel, ``--samples-per-epoch`` of them per epoch, and
runs whole cases by the sliding window of :func:`core.volumes.brats_model.predict_classes_3d`. Cases are
split by case (``--test-cases`` held out entirely, ``--val-cases`` pick the best epoch and the
post-processing, predicted whole as the app does); the split is written to the model card so
that ``python -m core.evaluate brats`` scores only cases the model never saw.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
from scipy import ndimage

from core import config
from core.train.augment import AugmentConfig, random_affine, warp
from core.volumes.brats_model import (CLASS_TO_LABEL, MODALITIES, REGION_OUTPUTS, REGION_THRESHOLD, WINDOW_OVERLAP,
                                      VolumePostProcessing, labels_to_classes, normalise_case, output_channels,
                                      postprocess_labels, predict_classes, predict_classes_3d, to_targets)
from core.models.losses import dice_focal_loss, region_dice_bce_loss
from core.models.segmenters import build_segmenter
from core.serving.registry import record_model
from core.train.common import (BestWeights, CosineWithinBudget, ShuffledBatches, relative_to_repo, run_facts,
                               save_inference_model, set_batchnorm_momentum, set_seed, training_command, warm_start)
from core.volumes.case import read_case_folder
from core.volumes.regions import region_dice

REGIONS = config.BRATS_REGIONS
GEOMETRY = AugmentConfig(rotation_deg=10.0, shift=0.05, zoom=0.1, brightness=(1.0, 1.0), hflip=True)
#: Defaults that differ between the two models (``None`` on the command line means these).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet2d": {"name": "unet2d_brats", "base": 16, "depth": 4, "batch": 16, "lr": 2e-3},
    "unet3d": {"name": "unet3d_brats", "base": 16, "depth": 4, "batch": 2, "lr": 1e-3},
}
#: Options of one model only: left out of the other model's card.
MODEL_OPTIONS = {"unet2d": {"size"}, "unet3d": {"crop", "window", "overlap", "samples_per_epoch", "val_every", "scale_p"}}
#: Range of the 3D crops' random scaling (``--scale-p`` of them are scaled).
SCALE_RANGE = (0.85, 1.15)
#: How the card names a network of each ``--outputs``.
OUTPUT_WORDS = {"classes": "multi-class", "regions": "region-based"}
#: Loss, and the card's words for it, per ``--outputs``.
LOSSES = {"classes": (dice_focal_loss, "soft Dice over NCR/ED/ET + categorical focal (gamma 2)"),
          "regions": (region_dice_bce_loss, "soft Dice + binary cross-entropy over the WT, TC and ET sigmoids")}
Predict = Callable[[keras.Model, np.ndarray], np.ndarray]
NORMALISATION = "per-modality z-score over brain voxels, clipped to ±5, 0 outside the brain"
#: Training batches come from worker threads.
LOADER = {"use_multiprocessing": False, "max_queue_size": 8}


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


def case_split(root: Path, args: argparse.Namespace) -> tuple[list[Path], list[Path], list[str], str]:
    """``(train folders, val folders, test case names, split description)``: :func:`split_cases` of
    the folders under ``root``, or with ``--split-like NAME`` the split recorded in that model's
    card (so a machine holding only the training and validation cases trains on the same split)."""
    if not args.split_like:
        train, val, test = split_cases(list_cases(root), args.test_cases, args.val_cases, args.seed)
        return train, val, [p.name for p in test], (f"by case, seed {args.seed}: test {len(test)} cases held out, "
                                                    f"val {len(val)}, train {len(train)}")
    from core.serving.registry import model_card

    card = model_card(args.split_like)
    names = card.get("split_cases") or {}
    if not names.get("train") or not names.get("val"):
        raise SystemExit(f"the card of {args.split_like} records no train/val split")
    missing = [n for part in ("train", "val") for n in names[part] if not (root / n).is_dir()]
    if missing:
        raise SystemExit(f"{len(missing)} cases of the {args.split_like} split are not in {root}: {', '.join(missing)}")
    train, val = ([root / n for n in names[part]] for part in ("train", "val"))
    return train, val, list(names.get("test", [])), f"{card.get('split', 'by case')} (the split of {args.split_like})"


def load_volumes(folders: list[Path]) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """``(case_id, normalised (X, Y, Z, 4), labels (X, Y, Z), spacing)`` per case."""
    out = []
    for folder in folders:
        case = read_case_folder(folder)
        if case.labels is None:
            raise SystemExit(f"{folder.name} has no label map")
        out.append((case.case_id, normalise_case(case.images), case.labels, tuple(case.spacing_mm)))
    return out


class SliceBatches(ShuffledBatches):
    """Augmented axial slices ``(B, S, S, 4)`` with float32 targets ``(B, S, S, K)`` (:func:`~core.volumes.brats_model.to_targets`)."""

    def __init__(self, volumes, batch: int, size: int, seed: int, tumour_repeat: int = 2, outputs: str = "classes",
                 **kwargs):
        self.size, self.outputs = size, outputs
        self.slices: list[tuple[np.ndarray, np.ndarray]] = []
        for _, volume, labels, _ in volumes:
            classes = labels_to_classes(labels)
            for z in range(volume.shape[2]):
                if not np.any(volume[:, :, z]):
                    continue
                item = (volume[:, :, z], classes[:, :, z])
                self.slices.extend([item] * (tumour_repeat if np.any(item[1]) else 1))
        super().__init__(len(self.slices), batch, seed, **kwargs)

    def _crop(self, image: np.ndarray, classes: np.ndarray, rng: np.random.Generator):
        h, w = classes.shape
        s = self.size
        if h < s or w < s:
            pad = ((0, max(0, s - h)), (0, max(0, s - w)))
            image, classes = np.pad(image, (*pad, (0, 0))), np.pad(classes, pad)
            h, w = classes.shape
        r0, c0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        return image[r0:r0 + s, c0:c0 + s], classes[r0:r0 + s, c0:c0 + s]

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        xs, ys = [], []
        for i in take:
            image, classes = self._crop(*self.slices[i], rng)
            matrix, flip = random_affine(rng, classes.shape, GEOMETRY)
            image = warp(np.ascontiguousarray(image), matrix, flip)
            classes = warp(np.ascontiguousarray(classes), matrix, flip, is_mask=True)
            image = image * rng.uniform(0.9, 1.1, size=4) + rng.uniform(-0.1, 0.1, size=4)
            xs.append(image.astype(np.float32))
            ys.append(to_targets(classes, self.outputs).astype(np.float32))
        return np.stack(xs), np.stack(ys)


class CropBatches(keras.utils.PyDataset):
    """Random augmented 3D crops ``(B, C, C, C, 4)`` float32 with uint8 targets ``(B, C, C, C, K)``
    (:func:`~core.volumes.brats_model.to_targets`).

    Each crop comes from a random training case; with probability ``tumour_fraction`` it is
    centred on a random tumour voxel (else anywhere); with probability ``scale_p`` it is cut
    larger or smaller by a factor in :data:`SCALE_RANGE` and resampled to the crop side (linear
    for the image, nearest for the labels); then it is flipped at random along each of the three
    axes, and each modality's brain voxels get a random intensity scale and shift. An epoch is
    ``samples`` crops; cases smaller than the largest cut are zero-padded once up front.
    """

    def __init__(self, volumes, batch: int, crop: int, samples: int, seed: int, tumour_fraction: float = 2 / 3,
                 outputs: str = "classes", scale_p: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.batch, self.crop, self.samples, self.seed, self.epoch = batch, crop, samples, seed, 0
        self.tumour_fraction, self.outputs, self.scale_p = tumour_fraction, outputs, scale_p
        largest = self.cut_side(SCALE_RANGE[0]) if scale_p > 0 else crop
        self.cases: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for _, volume, labels, _ in volumes:   # (image, classes, brain mask, flat indices of tumour voxels)
            pad = [(0, max(0, largest - n)) for n in labels.shape]
            classes = np.pad(labels_to_classes(labels), pad)
            volume = np.pad(volume, (*pad, (0, 0)))
            self.cases.append((volume, classes, np.any(volume != 0, axis=-1), np.flatnonzero(classes)))

    def __len__(self) -> int:
        return int(np.ceil(self.samples / self.batch))

    def cut_side(self, scale: float) -> int:
        """Side of the cube cut from a case so that, resampled to the crop side, it is scaled by ``scale``."""
        return int(round(self.crop / scale))

    def corner(self, classes: np.ndarray, tumour: np.ndarray, rng: np.random.Generator,
               side: int | None = None) -> tuple[int, ...]:
        """Start of a cut of ``side`` (default the crop): centred on a random tumour voxel (jittered by up
        to a quarter of it) or anywhere."""
        side = side or self.crop
        limits = [n - side for n in classes.shape]
        if len(tumour) and rng.random() < self.tumour_fraction:
            centre = np.unravel_index(int(tumour[rng.integers(len(tumour))]), classes.shape)
            jitter = rng.integers(-(side // 4), side // 4 + 1, size=3)
            return tuple(int(np.clip(c + j - side // 2, 0, hi)) for c, j, hi in zip(centre, jitter, limits))
        return tuple(int(rng.integers(0, hi + 1)) for hi in limits)

    def cut(self, volume: np.ndarray, classes: np.ndarray, brain: np.ndarray, tumour: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One crop's image, classes and brain mask, scaled with probability ``scale_p``."""
        side = self.crop
        if self.scale_p > 0 and rng.random() < self.scale_p:
            side = self.cut_side(float(rng.uniform(*SCALE_RANGE)))
        box = tuple(slice(c, c + side) for c in self.corner(classes, tumour, rng, side))
        image, labels, inside = volume[box], classes[box], brain[box]
        if side != self.crop:
            factor = self.crop / side
            image = ndimage.zoom(image, (factor, factor, factor, 1), order=1, grid_mode=True, mode="grid-constant")
            labels = ndimage.zoom(labels, factor, order=0, grid_mode=True, mode="grid-constant")
            inside = ndimage.zoom(inside.astype(np.uint8), factor, order=0, grid_mode=True, mode="grid-constant") > 0
        return image, labels, inside

    def __getitem__(self, idx: int):
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        n = min(self.batch, self.samples - idx * self.batch)
        xs = np.empty((n, *(self.crop,) * 3, len(MODALITIES)), dtype=np.float32)
        ys = np.empty((n, *(self.crop,) * 3, output_channels(self.outputs)), dtype=np.uint8)
        for i in range(n):
            image, labels, inside = self.cut(*self.cases[int(rng.integers(len(self.cases)))], rng)
            flips = tuple(axis for axis in range(3) if rng.random() < 0.5)
            scale = rng.uniform(0.9, 1.1, size=4).astype(np.float32)
            shift = rng.uniform(-0.1, 0.1, size=4).astype(np.float32)
            np.multiply(np.flip(image, flips), scale, out=xs[i])
            xs[i] += np.flip(inside, flips)[..., None] * shift          # the shift inside the brain only
            ys[i] = to_targets(np.flip(labels, flips), self.outputs)
        return xs, ys

    def on_epoch_end(self) -> None:
        self.epoch += 1


def score_cases(predict: Callable[[np.ndarray], np.ndarray], volumes,
                rules: VolumePostProcessing | None = None) -> dict[str, float]:
    """Mean region Dice over cases, classes from ``predict(volume)``, post-processed with ``rules`` when given."""
    scores = []
    for _, volume, labels, spacing in volumes:
        pred = CLASS_TO_LABEL[predict(volume)]
        if rules is not None:
            pred = postprocess_labels(pred, spacing, rules)
        scores.append(region_dice(pred, labels))
    return {region: float(np.mean([s[region] for s in scores])) for region in REGIONS}


def tune_postprocessing(predict: Callable[[np.ndarray], np.ndarray],
                        volumes) -> tuple[VolumePostProcessing, dict[str, float]]:
    """Post-processing sizes that maximise the mean of WT/TC/ET Dice on the validation cases."""
    raw = [(case, CLASS_TO_LABEL[predict(volume)], labels, spacing) for case, volume, labels, spacing in volumes]
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


class CaseValidation(keras.callbacks.Callback):
    """Whole-case region Dice on the validation cases, predicted by ``predict(twin, volume)`` (the
    app's inference) with the training weights copied into ``twin``; logged as ``val_wt``,
    ``val_tc``, ``val_et`` and ``val_mean_dice``. Runs after the first epoch, every ``every``
    epochs and after the last (also one the time budget ends: place it after that callback)."""

    def __init__(self, twin: keras.Model, predict: Predict, volumes, epochs: int, every: int = 1):
        super().__init__()
        self.twin, self.predict, self.volumes, self.epochs, self.every = twin, predict, volumes, epochs, max(1, every)

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= self.epochs or self.model.stop_training
        if epoch and (epoch + 1) % self.every and not last:
            return
        self.twin.set_weights(self.model.get_weights())
        scores = score_cases(lambda volume: self.predict(self.twin, volume), self.volumes)
        logs.update({f"val_{k.lower()}": v for k, v in scores.items()})
        logs["val_mean_dice"] = float(np.mean(list(scores.values())))
        print("  val " + " ".join(f"{k}={v:.3f}" for k, v in scores.items()), flush=True)


@dataclass
class Recipe:
    """What differs between the 2D and the 3D model: training data, network, inference and card text."""

    batches: keras.utils.PyDataset
    build: Callable[[int | None], keras.Model]   # input size (None: any) -> fresh network
    train_size: int                              # input size of the network that trains
    predict: Predict                             # (network, normalised volume) -> classes (X, Y, Z)
    head: dict[str, Any]                         # description, architecture (and dims)
    input: dict[str, Any]
    augmentation: str


def builder(kind: str, args: argparse.Namespace) -> Callable[[int | None], keras.Model]:
    """Fresh ``kind`` segmenters of the run's ``base``, ``depth`` and ``outputs`` at a given input size (None: any)."""
    activation = "sigmoid" if args.outputs == "regions" else None
    return lambda size: build_segmenter(kind, input_size=size, channels=len(MODALITIES),
                                        num_classes=output_channels(args.outputs), base=args.base, depth=args.depth,
                                        activation=activation)


def slice_recipe(args: argparse.Namespace, train) -> Recipe:
    """The 2D U-Net over axial slices."""
    batches = SliceBatches(train, args.batch, args.size, args.seed, outputs=args.outputs, workers=args.workers, **LOADER)
    print(f"{len(batches.slices)} training slices per epoch", flush=True)
    return Recipe(
        batches=batches,
        build=builder("unet", args),
        train_size=args.size,
        predict=lambda model, volume: predict_classes(model, volume, output=args.outputs),
        head={"description": f"2D {OUTPUT_WORDS[args.outputs]} U-Net applied slice by slice to 3D BraTS cases: the "
                             "stated CPU fallback of the original 3D U-Net (128³ crops), which needs a GPU to train. "
                             "Trained from scratch.",
              "architecture": f"unet (2D, {OUTPUT_WORDS[args.outputs]})"},
        input={"size": "any in-plane size (padded to a multiple of 16); trained on "
                       f"{args.size}px axial slices", "channels": list(MODALITIES),
               "range": NORMALISATION, "preprocess": "canonical RAS, axial slices volume[:, :, z]"},
        augmentation="rotation ±10°, shift 0.05, zoom 0.1, left-right flip, per-modality intensity "
                     "scale 0.9-1.1 and shift ±0.1 SD; tumour slices twice per epoch")


def crop_recipe(args: argparse.Namespace, train) -> Recipe:
    """The 3D U-Net on random crops, run on whole cases by the sliding window."""
    multiple = 2**args.depth
    if args.crop % multiple or args.window % multiple:
        raise SystemExit(f"--crop ({args.crop}) and --window ({args.window}) must be multiples of "
                         f"2**depth = {multiple}")
    batches = CropBatches(train, args.batch, args.crop, args.samples_per_epoch, args.seed, outputs=args.outputs,
                          scale_p=args.scale_p, workers=args.workers, **LOADER)
    print(f"{args.samples_per_epoch} random {args.crop}³ crops per epoch", flush=True)
    overlap = f"{args.overlap:.0%} overlap"
    return Recipe(
        batches=batches,
        build=builder("unet3d", args),
        train_size=args.crop,
        predict=lambda model, volume: predict_classes_3d(model, volume, args.window, multiple, args.overlap,
                                                         output=args.outputs),
        head={"description": f"3D U-Net on {args.crop}³ crops of the four modalities (the original design), "
                             f"applied to whole cases by a sliding window ({args.window}³ windows, {overlap}, "
                             "Gaussian blending). Trained from scratch.",
              "architecture": "unet3d", "dims": 3},
        input={"window": args.window, "multiple": multiple, "overlap": args.overlap, "channels": list(MODALITIES),
               "range": NORMALISATION,
               "preprocess": f"canonical RAS volume (X, Y, Z); the brain's bounding box, zero-padded to at least "
                             f"one window, covered by {args.window}³ windows ({overlap}) blended with Gaussian "
                             f"weights; trained on {args.crop}³ crops"},
        augmentation=f"random {args.crop}³ crops, two in three centred on a tumour voxel; "
                     + (f"{args.scale_p:.0%} of them scaled by {SCALE_RANGE[0]}-{SCALE_RANGE[1]}; " if args.scale_p else "")
                     + "flips along all three axes; per-modality intensity scale 0.9-1.1 and shift ±0.1 SD inside the brain; "
                     f"{args.samples_per_epoch} crops per epoch")


RECIPES: dict[str, Callable[[argparse.Namespace, Any], Recipe]] = {"unet2d": slice_recipe, "unet3d": crop_recipe}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODEL_DEFAULTS), default="unet2d",
                   help="unet2d: axial slices (default); unet3d: 3D crops and a sliding window")
    p.add_argument("--data", type=Path, default=None, help="BraTS case folders (default: $BTD_DATA_DIR/brats)")
    p.add_argument("--size", type=int, default=128, help="2D: training crop side (in-plane)")
    p.add_argument("--crop", type=int, default=96, help="3D: side of the random training crops (voxels)")
    p.add_argument("--window", type=int, default=None, help="3D: side of the inference windows (default: --crop)")
    p.add_argument("--overlap", type=float, default=WINDOW_OVERLAP, help="3D: overlap of neighbouring windows")
    p.add_argument("--samples-per-epoch", type=int, default=64, help="3D: random crops per epoch")
    p.add_argument("--val-every", type=int, default=1, help="3D: validate every N epochs (and the first and last)")
    p.add_argument("--scale-p", type=float, default=0.0,
                   help=f"3D: share of crops scaled by a random factor in {SCALE_RANGE[0]}-{SCALE_RANGE[1]}")
    p.add_argument("--outputs", choices=("classes", "regions"), default="classes",
                   help="classes: softmax over background/NCR/ED/ET, Dice + focal; regions: sigmoids for WT, TC and "
                        "ET, Dice + binary cross-entropy")
    p.add_argument("--base", type=int, default=None, help="first level's filters (default 16)")
    p.add_argument("--depth", type=int, default=None, help="down-sampling steps (default 4)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=None, help="default 16 (2D) or 2 (3D)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3 for 2D, 1e-3 for 3D)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--test-cases", type=int, default=5)
    p.add_argument("--val-cases", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--split-like", default=None, metavar="NAME",
                   help="take the train/val/test cases from this model's card in weights/manifest.json (e.g. "
                        "unet2d_brats) instead of splitting the folders under --data; its test cases need not be there")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from this saved model's weights, layer by layer where names and shapes match (e.g. "
                        "a class model continued with --outputs regions: every layer but the output)")
    p.add_argument("--name", default=None, help="model name (default unet2d_brats or unet3d_brats)")
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    for key, value in MODEL_DEFAULTS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.window is None:
        args.window = args.crop
    return args


#: Options left out of the card at these values (unused, or the behaviour before they existed).
SILENT_DEFAULTS: dict[str, Any] = {"split_like": None, "outputs": "classes", "scale_p": 0.0, "init_from": None}


def card_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's options for the card: paths, workers, the other model's options and options at
    their :data:`SILENT_DEFAULTS` left out."""
    other = set().union(*(keys for model, keys in MODEL_OPTIONS.items() if model != args.model))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in {"data", "out", "workers", "model"} | other
            and not (k in SILENT_DEFAULTS and v == SILENT_DEFAULTS[k])}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    set_seed(args.seed)
    base = config.data_dir()
    root = args.data or (base / "brats" if base else None)
    if root is None:
        raise SystemExit("no data: set BTD_DATA_DIR or pass --data")
    train_dirs, val_dirs, test_names, split = case_split(root, args)
    print(f"train {len(train_dirs)} cases, val {len(val_dirs)}, test {len(test_names)} (not used here)", flush=True)
    train, val = load_volumes(train_dirs), load_volumes(val_dirs)
    recipe = RECIPES[args.model](args, train)

    model = recipe.build(recipe.train_size)
    origin = warm_start(model, args.init_from, partial=True) if args.init_from else None
    if origin:
        origin.pop("config", None)
        print(f"initialised from {args.init_from}; new layers: {', '.join(origin['new_layers']) or 'none'}", flush=True)
    set_batchnorm_momentum(model, 0.9)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr,
                                                   weight_decay=args.weight_decay, clipnorm=1.0),
                  loss=LOSSES[args.outputs][0])
    any_size = recipe.build(None)

    log_path = args.out / "logs" / f"{args.name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = BestWeights("val_mean_dice", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes)
    every = args.val_every if args.model == "unet3d" else 1
    validation = CaseValidation(any_size, recipe.predict, val, args.epochs, every)
    history = model.fit(recipe.batches, epochs=args.epochs, verbose=2,
                        callbacks=[budget, validation, keras.callbacks.CSVLogger(str(log_path)), best])

    any_size.set_weights(model.get_weights())
    rules, val_scores = tune_postprocessing(lambda volume: recipe.predict(any_size, volume), val)
    path = args.out / f"{args.name}.keras"
    save_inference_model(any_size, lambda: recipe.build(None), path)
    head = dict(recipe.head)
    if args.outputs == "regions":
        head["description"] += (" Region-based: three sigmoid outputs (WT, TC, ET) trained with Dice + binary "
                                "cross-entropy, turned into NCR/ED/ET with the nesting enforced.")
    card = {
        "task": "brats",
        "role": "shipped",
        **head,
        "file": path.name,
        "params": int(any_size.count_params()),
        "input": recipe.input,
        "classes": ["background", "NCR", "ED", "ET"],
        "labels_out": {"NCR": 1, "ED": 2, "ET": 4},
        **({"output": {"kind": "regions", "channels": list(REGION_OUTPUTS), "activation": "sigmoid",
                       "threshold": REGION_THRESHOLD,
                       "to_labels": "ED where WT only, NCR where TC too, ET where ET too (nesting enforced)"}}
           if args.outputs == "regions" else {}),
        "data": relative_to_repo(root),
        "split": split,
        "split_cases": {"train": [p.name for p in train_dirs], "val": [p.name for p in val_dirs], "test": test_names},
        "epochs": len(history.epoch),
        "best_epoch": best.best_epoch + 1,
        "config": card_config(args),
        "loss": LOSSES[args.outputs][1],
        "postprocessing_rules": rules.__dict__,
        "postprocessing": "drop 3D tumour components below min_component_mm3; relabel ET as NCR when "
                          "the total ET is below min_et_mm3 (both tuned on the validation cases)",
        "augmentation": recipe.augmentation,
        "stopped_by_time_budget": budget.stopped_early,
        "metrics": {"val": {**{f"dice_{k.lower()}": round(v, 4) for k, v in val_scores.items()},
                            "n": len(val_dirs)}},
        "log": f"logs/{log_path.name}",
        "training_command": training_command("core.train.brats"),
        **({"initialised_from": origin} if origin else {}),
        **run_facts(started),
    }
    record_model(args.name, card, args.out)
    print("RESULT model={} ".format(args.name) + " ".join(f"val_{k.lower()}={v:.4f}" for k, v in val_scores.items()))


if __name__ == "__main__":
    main()
