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
    images already in [0, 1] (what :mod:`core.io` returns) pass through; other dtypes (16-bit PNG/TIFF, DICOM after rescale, NIfTI floats) are scaled between their
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


def classifier_input(image: np.ndarray, size: int) -> np.ndarray:
    """Brain-crop, square-pad, resize and scale one greyscale slice: ``(size, size)`` float32."""
    unit = to_unit_range(image)
    square = pad_to_square(crop(unit, brain_bbox(unit)))
    return np.clip(resize(square, size), 0.0, 1.0).astype(np.float32)


def classifier_input_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """As :func:`classifier_input` but stored compactly as uint8 (for dataset caches)."""
    return np.round(classifier_input(image, size) * 255.0).astype(np.uint8)


def segmenter_input(image: np.ndarray, size: int) -> np.ndarray:
    """Whole slice (no crop: the mask must align with the upload) resized to ``size``, in [0, 1]."""
    return np.clip(resize(to_unit_range(image), size), 0.0, 1.0).astype(np.float32)
