"""BraTS sub-region segmentation of a whole 3D case: a 2D U-Net slice by slice, or a 3D U-Net.

Both networks see the four modalities (z-scored per modality over brain voxels). A network either
predicts four classes (background, NCR, ED, ET; a softmax) or, region-based, the three nested
regions WT, TC and ET (three sigmoids; the card's ``output.kind`` is ``"regions"``), which
:func:`regions_to_classes` turns into the same classes. The model card's ``dims`` says which
kind a model is (a card without it is 2D).

* 2D (the CPU fallback of the original design): one axial slice ``(H, W, 4)`` at a time. It is
  fully convolutional, so a case of any in-plane size runs whole (padded to a multiple of 16):
  each batch of axial slices is one window of the sweep through the volume, which keeps memory
  bounded and lets the caller show progress. Only slices holding brain are run, each cropped
  in-plane to the brain's bounding box plus a margin (:data:`CROP_MARGIN`), so a 240x240x155
  case costs what its brain costs, not its field of view (:func:`predict_classes`).
* 3D (the original design): the brain's 3D bounding box (zero-padded where it is shorter than a
  window) is covered by overlapping cubic windows of the card's ``input.window`` side; their
  softmax outputs are blended with Gaussian weights (highest at a window's centre) and the
  arg-max is put back into the full grid (:func:`predict_classes_3d`). The caller's progress
  callback hears after each window. A 3D model runs on Keras, never on a LiteRT export.

Arrays are canonical RAS ``(X, Y, Z)``; axial slices are ``volume[:, :, z]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage

from core import config

from core.serving import registry
from core.serving.registry import card_dims
from core.errors import ModelUnavailable

MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
#: Network class index -> BraTS label (0 background, 1 NCR, 2 ED, 4 ET).
CLASS_TO_LABEL = np.array([0, 1, 2, 4], dtype=np.uint8)
DEFAULT_MODEL = "unet2d_brats"
_MULTIPLE = 16
#: In-plane margin (voxels) kept around the brain's bounding box when cropping for inference.
CROP_MARGIN = 16
#: Margin (voxels) kept around the brain's 3D bounding box by the 3D sliding window: none, since
#: a window's zero padding is what the network sees outside the brain anyway (inputs are 0 there).
BOX_MARGIN_3D = 0
#: Overlap of neighbouring 3D windows, as a fraction of the window side (when the card sets none).
WINDOW_OVERLAP = 0.25
#: Standard deviation of the Gaussian blending weights, as a fraction of the window side.
BLEND_SIGMA = 0.125
Progress = Callable[[float], None]


def labels_to_classes(labels: np.ndarray) -> np.ndarray:
    """BraTS labels {0, 1, 2, 4} -> class indices {0, 1, 2, 3} (uint8)."""
    classes = labels.astype(np.uint8, copy=True)
    classes[labels == 4] = 3
    return classes


#: Channels of a region-based network, in order (nested: ET inside TC inside WT).
REGION_OUTPUTS: tuple[str, ...] = ("WT", "TC", "ET")
#: What a network's last layer gives: softmax classes, or sigmoid regions.
OUTPUT_KINDS: tuple[str, ...] = ("classes", "regions")
#: A region is present where its sigmoid reaches this.
REGION_THRESHOLD = 0.5


def region_targets(classes: np.ndarray) -> np.ndarray:
    """Class indices (0 background, 1 NCR, 2 ED, 3 ET) -> ``(..., 3)`` uint8 WT, TC, ET masks."""
    return np.stack([classes > 0, (classes == 1) | (classes == 3), classes == 3], axis=-1).astype(np.uint8)


def regions_to_classes(probs: np.ndarray, threshold: float = REGION_THRESHOLD) -> np.ndarray:
    """Sigmoid WT, TC, ET probabilities ``(..., 3)`` -> class indices (uint8), nesting enforced:
    ED where only WT is present, NCR where TC is too, ET where ET is too (a TC or ET outside the
    predicted WT counts as nothing)."""
    wt = probs[..., 0] >= threshold
    tc = wt & (probs[..., 1] >= threshold)
    et = tc & (probs[..., 2] >= threshold)
    classes = np.where(wt, 2, 0).astype(np.uint8)
    classes[tc] = 1
    classes[et] = 3
    return classes


def output_channels(output: str = "classes") -> int:
    """Channels of a network's last layer: four classes, or three regions."""
    return len(REGION_OUTPUTS) if output == "regions" else len(CLASS_TO_LABEL)


def to_targets(classes: np.ndarray, output: str = "classes") -> np.ndarray:
    """Training targets ``(..., K)`` uint8 of class indices: one-hot classes, or the WT/TC/ET masks
    (the inverse of :func:`to_classes`)."""
    if output == "regions":
        return region_targets(classes)
    return np.equal(classes[..., None], np.arange(len(CLASS_TO_LABEL))).astype(np.uint8)


def to_classes(probs: np.ndarray, output: str = "classes") -> np.ndarray:
    """Class indices of a network's output ``(..., K)``: the arg-max of softmax classes, or
    :func:`regions_to_classes` of sigmoid regions."""
    if output == "regions":
        return regions_to_classes(probs)
    if output == "classes":
        return probs.argmax(-1).astype(np.uint8)
    raise ValueError(f"unknown output kind {output!r}; known: {OUTPUT_KINDS}")


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


def bounding_box(occupied: np.ndarray, margin: int, multiple: int = 1) -> tuple[slice, ...]:
    """Slices of the bounding box of an n-D ``occupied`` mask, grown by ``margin`` on each side.

    Each side is grown further (inside the array) towards a multiple of ``multiple`` so little
    padding is needed; an empty mask gives the whole array.
    """
    box = []
    for axis, n in enumerate(occupied.shape):
        hits = np.flatnonzero(occupied.any(axis=tuple(a for a in range(occupied.ndim) if a != axis)))
        if not len(hits):
            return tuple(slice(0, n) for n in occupied.shape)
        lo, hi = max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, n)
        extra = (-(hi - lo)) % multiple
        grow_hi = min(extra - extra // 2, n - hi)
        lo, hi = max(lo - (extra - grow_hi), 0), hi + grow_hi
        box.append(slice(lo, hi))
    return tuple(box)


def inplane_box(occupied: np.ndarray, margin: int = CROP_MARGIN) -> tuple[slice, slice]:
    """``(x, y)`` slices of the bounding box of a 2D ``occupied`` mask, grown by ``margin``.

    The box is grown further (inside the image) towards a multiple of 16 so little padding is
    needed; an empty mask gives the whole plane.
    """
    bx, by = bounding_box(occupied, margin, _MULTIPLE)
    return bx, by


def predict_classes(model, volume: np.ndarray, batch: int = 8, progress: Progress | None = None,
                    crop: bool = True, output: str = "classes") -> np.ndarray:
    """Classes ``(X, Y, Z)`` uint8 for a normalised ``(X, Y, Z, 4)`` volume, axial sweep
    (:func:`to_classes` of the network's ``output``).

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
        classes[bx, by, zs] = np.moveaxis(to_classes(probs, output), 0, 2)
        if progress is not None:
            progress(min(1.0, (start + len(zs)) / max(1, len(occupied))))
    if progress is not None and not len(occupied):
        progress(1.0)
    return classes


def window_starts(length: int, window: int, overlap: float = WINDOW_OVERLAP) -> list[int]:
    """Start offsets of windows of ``window`` voxels covering ``length`` voxels.

    Neighbours overlap by at least ``overlap`` x ``window``; the first window starts at 0, the last
    ends at ``length``, and the rest are spread evenly between (``[0]`` when one window covers all).
    """
    if length <= window:
        return [0]
    step = max(1, int(window * (1.0 - overlap)))
    n = int(np.ceil((length - window) / step)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - window, n)})


def gaussian_weights(shape: tuple[int, ...], sigma: float = BLEND_SIGMA) -> np.ndarray:
    """Blending weights of one window, float32: a separable Gaussian peaking at 1 in the centre,
    ``sigma`` x side wide, never below 1e-3 so every voxel a window covers counts."""
    weights = np.ones((), dtype=np.float32)
    for n in shape:
        x = np.arange(n, dtype=np.float32) - (n - 1) / 2.0
        axis = np.exp(-0.5 * (x / max(sigma * n, 1e-6)) ** 2).astype(np.float32)
        weights = np.multiply.outer(weights, axis)
    return np.maximum(weights / weights.max(), np.float32(1e-3)).astype(np.float32)


def sliding_window(model, volume: np.ndarray, window: int, multiple: int = 1, overlap: float = WINDOW_OVERLAP,
                   progress: Progress | None = None) -> np.ndarray:
    """Blended class probabilities ``(X, Y, Z, K)`` float32 of a ``(X, Y, Z, C)`` volume, any size.

    Every window is a cube of ``window`` voxels (rounded down to a multiple of ``multiple``), so
    the network sees one input shape only (one trace or compilation); an axis shorter than that
    is zero-padded at its far end. Windows overlap by ``overlap`` x ``window``, each runs alone
    through ``model.predict_on_batch``, their outputs are blended with :func:`gaussian_weights`
    and the padding is cut off again. ``progress`` gets the fraction of windows done after each.
    """
    window = max(multiple, window // multiple * multiple)
    grid = volume.shape[:3]
    pad = [(0, max(window - n, 0)) for n in grid]
    if any(after for _, after in pad):
        volume = np.pad(volume, (*pad, (0, 0)))
    weights = gaussian_weights((window,) * 3)
    corners = [(x, y, z) for x in window_starts(volume.shape[0], window, overlap)
               for y in window_starts(volume.shape[1], window, overlap)
               for z in window_starts(volume.shape[2], window, overlap)]
    total = np.zeros(volume.shape[:3], dtype=np.float32)
    blended = None
    for done, corner in enumerate(corners, start=1):
        box = tuple(slice(c, c + window) for c in corner)
        probs = np.asarray(model.predict_on_batch(np.ascontiguousarray(volume[box], dtype=np.float32)[None]))[0]
        if blended is None:
            blended = np.zeros((*volume.shape[:3], probs.shape[-1]), dtype=np.float32)
        blended[box] += probs * weights[..., None]
        total[box] += weights
        if progress is not None:
            progress(done / len(corners))
    blended /= total[..., None]
    return blended[:grid[0], :grid[1], :grid[2]]


def predict_classes_3d(model, volume: np.ndarray, window: int, multiple: int = 16,
                       overlap: float = WINDOW_OVERLAP, progress: Progress | None = None,
                       crop: bool = True, output: str = "classes") -> np.ndarray:
    """Classes ``(X, Y, Z)`` uint8 for a normalised ``(X, Y, Z, 4)`` volume, 3D sliding window
    (:func:`to_classes` of the blended ``output``: class probabilities or region probabilities).

    ``crop`` restricts the windows to the brain's 3D bounding box (:func:`bounding_box`, margin
    :data:`BOX_MARGIN_3D`); everything outside it is background. ``multiple`` is the network's
    down-sampling factor (the window side is rounded down to it). See :func:`sliding_window` for
    the windows and their blending.
    """
    classes = np.zeros(volume.shape[:3], dtype=np.uint8)
    nonzero = np.any(volume != 0, axis=3)
    if not nonzero.any():
        if progress is not None:
            progress(1.0)
        return classes
    box = bounding_box(nonzero, BOX_MARGIN_3D) if crop else (slice(None),) * 3
    del nonzero
    probs = sliding_window(model, volume[box], window, multiple, overlap, progress)
    classes[box] = to_classes(probs, output)
    return classes


def shipped_name(weights_dir: Path | None = None) -> str:
    """The BraTS model the manifest ships: its one BraTS card of role ``shipped`` (the 2D
    :data:`DEFAULT_MODEL` when that is one of several), else :data:`DEFAULT_MODEL`."""
    try:
        shipped = list(registry.models_by("brats", "shipped", weights_dir))
    except (OSError, ValueError):
        return DEFAULT_MODEL
    if len(shipped) == 1 or (shipped and DEFAULT_MODEL not in shipped):
        return shipped[0]
    return DEFAULT_MODEL


def available_models(weights_dir: Path | None = None) -> list[str]:
    """BraTS models of the manifest whose files are present, the shipped one first (cheap: no
    checksum); empty when there is none."""
    try:
        cards = registry.models_by("brats", None, weights_dir)
    except (OSError, ValueError):
        return []
    folder = Path(weights_dir or config.WEIGHTS_DIR)
    present = [n for n, c in cards.items() if (folder / c.get("file", "")).is_file() and c.get("file")]
    first = shipped_name(weights_dir)
    return sorted(present, key=lambda n: (n != first, n))


def model_problem(name: str | None = None, weights_dir: Path | None = None) -> str | None:
    """Why the BraTS model ``name`` (default: the shipped one) cannot be used (not listed, file
    missing), or ``None``.

    Cheap (no checksum, no deep-learning import), for a page to say so before anyone clicks;
    :meth:`VolumeSegmenter.load` still verifies the checksum.
    """
    name = name or shipped_name(weights_dir)
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


class VolumeSegmenter(registry.LoadedModel):
    """The shipped BraTS model (:class:`~core.serving.registry.LoadedModel`) with its post-processing rules.

    ``runner`` does the inference: for a 2D model its LiteRT export when current, else ``model``
    (Keras); a 3D model always runs on Keras.
    """

    @classmethod
    def load(cls, name: str | None = None, weights_dir: Path | None = None) -> "VolumeSegmenter":
        """The model ``name`` (default: the shipped one, :func:`shipped_name`) of ``weights_dir``."""
        name = name or shipped_name(weights_dir)
        card = registry.model_card(name, weights_dir)
        if card_dims(card) == 3:
            return cls(name, registry.load_keras_model(name, weights_dir), card)
        model, runner = registry.load_model_and_runner(name, weights_dir)
        return cls(name, model, card, runner)

    @property
    def dims(self) -> int:
        return card_dims(self.card)

    @property
    def output(self) -> str:
        """What the network gives (:data:`OUTPUT_KINDS`; the card's ``output.kind``, else classes)."""
        return str((self.card.get("output") or {}).get("kind", "classes"))

    @property
    def rules(self) -> VolumePostProcessing:
        return VolumePostProcessing(**self.card.get("postprocessing_rules", {}))

    def segment(self, images: Mapping[str, np.ndarray], spacing_mm: tuple[float, float, float],
                progress: Progress | None = None, crop: bool = True) -> np.ndarray:
        """BraTS labels (0, 1, 2, 4) ``(X, Y, Z)`` uint8 for the four modalities of one case.

        Normalises, runs the network (:meth:`predict`; ``progress`` gets the fraction done) and
        applies the card's post-processing rules.
        """
        classes = self.predict(normalise_case(images), progress=progress, crop=crop)
        return postprocess_labels(CLASS_TO_LABEL[classes], spacing_mm, self.rules)

    def predict(self, volume: np.ndarray, progress: Progress | None = None, crop: bool = True) -> np.ndarray:
        """Classes ``(X, Y, Z)`` of a normalised volume: the axial sweep of a 2D model
        (:func:`predict_classes`) or the sliding window of a 3D one (:func:`predict_classes_3d`,
        window side, padding multiple and overlap from the card's ``input``)."""
        if self.dims == 3:
            spec = self.card["input"]
            return predict_classes_3d(self.runner, volume, int(spec["window"]), int(spec.get("multiple", _MULTIPLE)),
                                      float(spec.get("overlap", WINDOW_OVERLAP)), progress, crop, self.output)
        return predict_classes(self.runner, volume, progress=progress, crop=crop, output=self.output)
