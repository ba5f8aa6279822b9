"""BraTS sub-region segmentation of a whole 3D case with a 2D multi-class U-Net, slice by slice.

The CPU fallback of the original 3D U-Net design: the network sees the four modalities of one
axial slice (``(H, W, 4)``, z-scored per modality over brain voxels) and predicts four classes
(background, NCR, ED, ET). It is fully convolutional, so a case of any in-plane size runs whole
(padded to a multiple of 16): each batch of axial slices is one window of the sweep through the
volume, which keeps memory bounded and lets the caller show progress. Only slices holding brain
are run, each cropped in-plane to the brain's bounding box plus a margin (:data:`CROP_MARGIN`),
so a 240x240x155 case costs what its brain costs, not its field of view.
Arrays are canonical RAS ``(X, Y, Z)``; axial slices are ``volume[:, :, z]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage

from core import config, registry
from core.errors import ModelUnavailable

MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
#: Network class index -> BraTS label (0 background, 1 NCR, 2 ED, 4 ET).
CLASS_TO_LABEL = np.array([0, 1, 2, 4], dtype=np.uint8)
DEFAULT_MODEL = "unet2d_brats"
_MULTIPLE = 16
#: In-plane margin (voxels) kept around the brain's bounding box when cropping for inference.
CROP_MARGIN = 16
Progress = Callable[[float], None]


def labels_to_classes(labels: np.ndarray) -> np.ndarray:
    """BraTS labels {0, 1, 2, 4} -> class indices {0, 1, 2, 3} (uint8)."""
    classes = labels.astype(np.uint8, copy=True)
    classes[labels == 4] = 3
    return classes


def brain_mask(images: Mapping[str, np.ndarray]) -> np.ndarray:
    """Voxels where any modality is non-zero (skull-stripped BraTS volumes are 0 outside the brain)."""
    mask = np.zeros(next(iter(images.values())).shape, dtype=bool)
    for volume in images.values():
        mask |= volume != 0
    return mask


def normalise_case(images: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(X, Y, Z, 4)`` float32: each modality z-scored over brain voxels, clipped to ±5, 0 outside.

    Works for uint8, int16 or float inputs alike, so the 8-bit crops used for training and real
    int16 BraTS files land on the same scale. One modality is converted at a time.
    """
    missing = [m for m in MODALITIES if m not in images]
    if missing:
        raise ValueError(f"missing modalities: {', '.join(missing)}")
    brain = brain_mask(images)
    out = np.zeros((*brain.shape, len(MODALITIES)), dtype=np.float32)
    for channel, name in enumerate(MODALITIES):
        volume = images[name]
        values = volume[brain].astype(np.float32)
        if values.size == 0:
            continue
        mean, std = float(values.mean()), float(values.std()) or 1.0
        out[..., channel] = np.where(brain, np.clip((volume.astype(np.float32) - mean) / std, -5, 5), 0.0)
    return out


def _pad_to_multiple(batch: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad ``(N, H, W, C)`` so H and W are multiples of 16; returns the original (H, W)."""
    h, w = batch.shape[1:3]
    ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
    if ph or pw:
        batch = np.pad(batch, ((0, 0), (0, ph), (0, pw), (0, 0)))
    return batch, (h, w)


@dataclass(frozen=True)
class VolumePostProcessing:
    """Clean-up of a predicted label map (sizes in mm³ so they hold at any voxel spacing)."""

    min_component_mm3: float = 200.0   # tumour (WT) components smaller than this are dropped
    min_et_mm3: float = 0.0            # total ET below this is relabelled NCR (no enhancing tumour)


def postprocess_labels(labels: np.ndarray, spacing_mm: tuple[float, float, float],
                       rules: VolumePostProcessing) -> np.ndarray:
    """Drop small 3D tumour components; relabel a tiny ET total as NCR."""
    voxel = float(np.prod(spacing_mm))
    out = labels.copy()
    components, n = ndimage.label(out > 0)
    if n:
        sizes = np.bincount(components.ravel())[1:] * voxel
        small = np.flatnonzero(sizes < rules.min_component_mm3) + 1
        out[np.isin(components, small)] = 0
    if rules.min_et_mm3 > 0 and np.count_nonzero(out == 4) * voxel < rules.min_et_mm3:
        out[out == 4] = 1
    return out


def inplane_box(occupied: np.ndarray, margin: int = CROP_MARGIN) -> tuple[slice, slice]:
    """``(x, y)`` slices of the bounding box of a 2D ``occupied`` mask, grown by ``margin``.

    The box is grown further (inside the image) towards a multiple of 16 so little padding is
    needed; an empty mask gives the whole plane.
    """
    box = []
    for axis in (0, 1):
        n = occupied.shape[axis]
        hits = np.flatnonzero(occupied.any(axis=1 - axis))
        if not len(hits):
            return slice(0, occupied.shape[0]), slice(0, occupied.shape[1])
        lo, hi = max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, n)
        extra = (-(hi - lo)) % _MULTIPLE
        grow_hi = min(extra - extra // 2, n - hi)
        lo, hi = max(lo - (extra - grow_hi), 0), hi + grow_hi
        box.append(slice(lo, hi))
    return box[0], box[1]


def predict_classes(model, volume: np.ndarray, batch: int = 8, progress: Progress | None = None,
                    crop: bool = True) -> np.ndarray:
    """Arg-max classes ``(X, Y, Z)`` uint8 for a normalised ``(X, Y, Z, 4)`` volume, axial sweep.

    Only axial slices with brain (non-zero input) are run, in windows of ``batch`` slices;
    ``crop`` restricts them to the brain's in-plane bounding box (:func:`inplane_box`);
    everything outside is background. ``progress`` gets the fraction done after each window.
    """
    classes = np.zeros(volume.shape[:3], dtype=np.uint8)
    nonzero = np.any(volume != 0, axis=3)
    occupied = np.flatnonzero(nonzero.any(axis=(0, 1)))
    bx, by = inplane_box(nonzero.any(axis=2)) if crop else (slice(None), slice(None))
    del nonzero
    for start in range(0, len(occupied), batch):
        zs = occupied[start:start + batch]
        slices = np.moveaxis(volume[bx, by][:, :, zs, :], 2, 0)
        padded, (h, w) = _pad_to_multiple(slices)
        probs = np.asarray(model.predict_on_batch(padded))[:, :h, :w]
        classes[bx, by, zs] = np.moveaxis(probs.argmax(-1).astype(np.uint8), 0, 2)
        if progress is not None:
            progress(min(1.0, (start + len(zs)) / max(1, len(occupied))))
    if progress is not None and not len(occupied):
        progress(1.0)
    return classes


def model_problem(name: str = DEFAULT_MODEL, weights_dir: Path | None = None) -> str | None:
    """Why the shipped BraTS model cannot be used (not listed, file missing), or ``None``.

    Cheap (no checksum, no deep-learning import), for a page to say so before anyone clicks;
    :meth:`VolumeSegmenter.load` still verifies the checksum.
    """
    try:
        card = registry.model_card(name, weights_dir)
    except ModelUnavailable:
        return (f"The BraTS segmentation model ({name}) is not available yet: it is not listed in "
                "weights/manifest.json. Train it with `python -m core.train.brats`.")
    if card.get("task") not in (None, "brats"):
        return f"The model {name!r} in weights/manifest.json is a {card.get('task')} model, not a BraTS segmenter."
    path = Path(weights_dir or config.WEIGHTS_DIR) / card.get("file", "")
    if not path.is_file():
        return f"The BraTS model's file ({card.get('file')}) is missing from weights/."
    return None


class VolumeSegmenter:
    """The shipped BraTS model with its card and post-processing rules.

    ``runner`` does the inference: the model's LiteRT export when current, else ``model`` (Keras).
    """

    def __init__(self, model, card: dict, name: str, sha256: str, runner=None):
        self.model, self.card, self.name, self.sha256 = model, card, name, sha256
        self.runner = model if runner is None else runner

    @classmethod
    def load(cls, name: str = DEFAULT_MODEL, weights_dir: Path | None = None) -> "VolumeSegmenter":
        card = registry.model_card(name, weights_dir)
        model, runner = registry.load_model_and_runner(name, weights_dir)
        return cls(model, card, name, card["sha256"], runner)

    @property
    def rules(self) -> VolumePostProcessing:
        return VolumePostProcessing(**self.card.get("postprocessing_rules", {}))

    def segment(self, images: Mapping[str, np.ndarray], spacing_mm: tuple[float, float, float],
                progress: Progress | None = None, crop: bool = True) -> np.ndarray:
        """BraTS labels (0, 1, 2, 4) ``(X, Y, Z)`` uint8 for the four modalities of one case.

        Normalises, sweeps the axial slices (:func:`predict_classes`; ``progress`` gets the
        fraction done) and applies the card's post-processing rules.
        """
        classes = predict_classes(self.runner, normalise_case(images), progress=progress, crop=crop)
        return postprocess_labels(CLASS_TO_LABEL[classes], spacing_mm, self.rules)
