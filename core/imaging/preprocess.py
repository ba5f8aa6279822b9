"""Image preprocessing shared by training, evaluation and the app.

Functions take and return NumPy arrays. Images are 2D ``(H, W)`` greyscale; "unit" images are
float32 in [0, 1]. The classifier input follows the original work: crop the brain (drop the
black border), pad to a square, resize, scale to [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class CropBox:
    """Rows ``[top, bottom)`` and columns ``[left, right)`` of a crop, in source pixels."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def to_unit_range(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Scale a greyscale image to float32 in [0, 1].

    8-bit images are divided by 255 (the training data are 8-bit, so this is exact); float
    images already in [0, 1] (what :mod:`core.readers.slice` returns) pass through; other dtypes (16-bit PNG/TIFF, DICOM after rescale, NIfTI floats) are scaled between their
    ``low_pct`` and ``high_pct`` percentiles, which removes outliers from the window.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2D greyscale image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    data = image.astype(np.float32)
    if image.dtype.kind == "f" and data.size and np.nanmin(data) >= 0.0 and np.nanmax(data) <= 1.0:
        return np.nan_to_num(data, nan=0.0)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros_like(data, dtype=np.float32)
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(data, nan=lo) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Greyscale image of any dtype as uint8 (0-255) for display, hashing and PNG export."""
    if image.dtype == np.uint8:
        return image
    return np.round(to_unit_range(image) * 255.0).astype(np.uint8)


def brain_bbox(image: np.ndarray, rel_threshold: float = 0.12, margin: float = 0.02) -> CropBox:
    """Bounding box of the head: the largest bright connected region after smoothing.

    ``rel_threshold`` is a fraction of the 99th-percentile intensity. A blank image, or one
    with no clear foreground, yields the full frame.
    """
    unit = to_unit_range(image)
    h, w = unit.shape
    smooth = cv2.GaussianBlur(unit, (5, 5), 0)
    ref = float(np.percentile(smooth, 99))
    full = CropBox(0, h, 0, w)
    if ref <= 1e-6:
        return full
    fg = smooth > rel_threshold * ref
    fg = ndimage.binary_opening(fg, iterations=2)
    labels, count = ndimage.label(fg)
    if count == 0:
        return full
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    biggest = labels == (int(np.argmax(sizes)) + 1)
    if biggest.sum() < 0.01 * h * w:
        return full
    rows = np.flatnonzero(biggest.any(axis=1))
    cols = np.flatnonzero(biggest.any(axis=0))
    pad_r, pad_c = int(round(margin * h)), int(round(margin * w))
    return CropBox(max(0, rows[0] - pad_r), min(h, rows[-1] + 1 + pad_r),
                   max(0, cols[0] - pad_c), min(w, cols[-1] + 1 + pad_c))


def crop(image: np.ndarray, box: CropBox) -> np.ndarray:
    """Cut ``box`` out of ``image`` (works for images and masks alike)."""
    return image[box.top:box.bottom, box.left:box.right]


def pad_to_square(image: np.ndarray, value: float = 0) -> np.ndarray:
    """Pad the shorter side symmetrically so the image becomes square."""
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(top, side - h - top), (left, side - w - left)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="constant", constant_values=value)


def resize(image: np.ndarray, size: int, is_mask: bool = False) -> np.ndarray:
    """Resize to ``size`` x ``size``: area/cubic for images, nearest neighbour for masks."""
    if image.shape[:2] == (size, size):
        return image
    if is_mask:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


#: Intensity normalisations a classifier's card can name (``input.normalisation``): ``unit`` keeps
#: the cropped slice's [0, 1] scale; ``head`` maps the 1st-99th percentiles *inside the head* to
#: [0, 1], so scanners, sequences and file formats that window a slice differently look alike;
#: ``rank`` replaces each intensity by its quantile among the head's pixels, so any increasing
#: contrast curve (window/level, gamma, a per-case scaling) gives the same input and only the order
#: of the tissues' brightness remains (what tells one sequence from another).
NORMALISATIONS: tuple[str, ...] = ("unit", "head", "rank")


def head_mask(unit: np.ndarray, rel_threshold: float = 0.12) -> np.ndarray:
    """Pixels of the head (or skull-stripped brain): smoothed intensity above a fraction of its 99th percentile."""
    smooth = cv2.GaussianBlur(unit.astype(np.float32), (5, 5), 0)
    ref = float(np.percentile(smooth, 99))
    if ref <= 1e-6:
        return np.zeros(unit.shape, dtype=bool)
    return ndimage.binary_fill_holes(smooth > rel_threshold * ref)


def head_pixels(data: np.ndarray, erosion: int = 0) -> np.ndarray:
    """The values of the head's pixels (:func:`head_mask`, eroded by ``erosion`` px), or of the whole
    frame when those cover under 5 % of it."""
    mask = head_mask(data)
    if erosion:
        mask = ndimage.binary_erosion(mask, iterations=erosion)
    return data[mask] if mask.mean() >= 0.05 else data.ravel()


def normalise_in_head(unit: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Map the ``low_pct``-``high_pct`` percentiles of the head's pixels to [0, 1] (background stays dark).

    The head mask is eroded by the smoothing's reach (3 px) so its blurred rim of background does
    not set the black point. Falls back to the whole frame's percentiles when the head covers
    under 5 % of it.
    """
    data = unit.astype(np.float32)
    lo, hi = np.percentile(head_pixels(data, erosion=3), [low_pct, high_pct])
    if hi - lo < 1e-3:                  # a flat head: scale by its level alone
        lo, hi = 0.0, max(float(hi), 1e-3)
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def rank_in_head(unit: np.ndarray) -> np.ndarray:
    """Each pixel's rank among the head's pixels, in [0, 1]: the share of head pixels darker than it
    (the darkest head pixel and the background go to 0, the brightest to 1).

    Blind to any strictly increasing intensity mapping, up to where the head mask's edge falls. Uses
    the whole frame when the head covers under 5 % of it (as :func:`normalise_in_head`).
    """
    data = unit.astype(np.float32)
    reference = np.sort(head_pixels(data))
    if reference[-1] - reference[0] < 1e-6:     # a flat frame: nothing to order
        return np.zeros(data.shape, np.float32)
    darker = np.searchsorted(reference, data, side="left")
    below_brightest = np.searchsorted(reference, reference[-1], side="left")
    return np.minimum(darker / below_brightest, 1.0).astype(np.float32)


def normalise(unit: np.ndarray, how: str) -> np.ndarray:
    """Apply one of :data:`NORMALISATIONS` to a cropped [0, 1] classifier input."""
    if how == "unit":
        return unit.astype(np.float32)
    if how == "head":
        return normalise_in_head(unit)
    if how == "rank":
        return rank_in_head(unit)
    raise ValueError(f"unknown normalisation {how!r}; known: {NORMALISATIONS}")


def classifier_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Brain-crop, square-pad, resize and scale one greyscale slice: ``(size, size)`` float32 in [0, 1]."""
    return classifier_crop_and_box(image, size)[0]


def classifier_crop_and_box(image: np.ndarray, size: int) -> tuple[np.ndarray, CropBox]:
    """:func:`classifier_crop` and the box it cut (to crop a mask alike or map results back)."""
    unit = to_unit_range(image)
    box = brain_bbox(unit)
    square = pad_to_square(crop(unit, box))
    return np.clip(resize(square, size), 0.0, 1.0).astype(np.float32), box


def crop_mask_like(mask: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """A mask on the image's grid cut, padded and resized exactly as :func:`classifier_crop` cut the image."""
    square = pad_to_square(crop(np.asarray(mask).astype(np.uint8), box))
    return resize(square, size, is_mask=True) > 0


def to_image_grid(values: np.ndarray, image_shape: tuple[int, int], box: CropBox) -> np.ndarray:
    """A map on the classifier input (crop → pad to square → resize) back on the image's ``(H, W)`` grid."""
    side = max(box.height, box.width)
    square = cv2.resize(values.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    top, left = (side - box.height) // 2, (side - box.width) // 2
    out = np.zeros(image_shape, np.float32)
    out[box.top:box.bottom, box.left:box.right] = square[top:top + box.height, left:left + box.width]
    return np.clip(out, 0.0, 1.0)


def classifier_input(image: np.ndarray, size: int, normalisation: str = "unit") -> np.ndarray:
    """:func:`classifier_crop` followed by the card's intensity normalisation (:func:`normalise`)."""
    return normalise(classifier_crop(image, size), normalisation)


def classifier_input_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """The cropped slice (:func:`classifier_crop`, before normalisation) as uint8, for dataset caches."""
    return np.round(classifier_crop(image, size) * 255.0).astype(np.uint8)


def segmenter_input(image: np.ndarray, size: int) -> np.ndarray:
    """Whole slice (no crop: the mask must align with the upload) in [0, 1], padded to a square and
    resized to ``size``."""
    return np.clip(resize(pad_to_square(to_unit_range(image)), size), 0.0, 1.0).astype(np.float32)
