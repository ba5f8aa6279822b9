"""2D views of a canonical RAS case for display: intensity windows, planes and their slices.

:func:`slice_view` returns views with the same orientation as :mod:`core.readers.nifti` slices:
rows run superior -> inferior (axial: anterior -> posterior); axial and coronal columns run
patient right -> left (radiological), sagittal columns posterior -> anterior. Images and labels
go through the same function, so overlays line up.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from core import config

__all__ = [
    "PLANES",
    "WINDOW_PERCENTILES",
    "window_presets",
    "apply_window",
    "plane_axis",
    "plane_size",
    "view_shape",
    "view_spacing",
    "slice_view",
    "largest_tumour_slice",
]

#: Display planes and the canonical (RAS) axis each one cuts.
PLANES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Intensity window presets: percentiles (low, high) of the non-zero voxels.
WINDOW_PERCENTILES: dict[str, tuple[float, float]] = {
    "default": (1.0, 99.0),
    "narrow": (5.0, 95.0),
    "full": (0.0, 100.0),
}


def window_presets(volume: np.ndarray, max_samples: int = 1_000_000) -> dict[str, tuple[float, float]]:
    """Intensity windows ``{name: (lo, hi)}`` from percentiles of the non-zero voxels.

    Names and percentiles are :data:`WINDOW_PERCENTILES` ("default" 1-99 %, "narrow" 5-95 %,
    "full" 0-100 %, i.e. min-max of the non-zero voxels). At most ``max_samples`` evenly strided
    voxels are used, so the cost is bounded for any volume. NaN and infinite voxels are ignored.
    ``hi > lo`` always; an all-zero (or all non-finite) volume gives ``(0, 1)`` everywhere.
    """
    values = np.asarray(volume)
    values = values[(values != 0) & np.isfinite(values)] if values.dtype.kind == "f" else values[values != 0]
    if values.size > max_samples:
        values = values[:: int(math.ceil(values.size / max_samples))]
    out: dict[str, tuple[float, float]] = {}
    for name, (p_lo, p_hi) in WINDOW_PERCENTILES.items():
        if values.size == 0:
            out[name] = (0.0, 1.0)
            continue
        lo, hi = (float(v) for v in np.percentile(values, [p_lo, p_hi]))
        if not hi > lo:
            hi = lo + max(1.0, abs(lo) * 1e-6)  # + 1.0 alone is lost on values like 1e30
        out[name] = (lo, hi)
    return out


def apply_window(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly to 0-255 (clipped outside) and return uint8 of the same shape."""
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + max(1e-6, abs(lo) * 1e-6)
    scaled = (np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def plane_axis(plane: str) -> int:
    """Canonical axis cut by a plane: sagittal 0 (x), coronal 1 (y), axial 2 (z)."""
    try:
        return PLANES[plane]
    except KeyError:
        raise ValueError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.") from None


def plane_size(shape: tuple[int, ...], plane: str) -> int:
    """Number of slices in ``plane`` for a volume of ``shape`` (valid indices 0 .. n-1)."""
    return int(shape[plane_axis(plane)])


def view_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """``(rows, cols)`` of :func:`slice_view` for a volume of ``shape``."""
    axis = plane_axis(plane)
    first, second = (int(shape[a]) for a in range(3) if a != axis)
    return second, first


def view_spacing(spacing_mm: tuple[float, ...], plane: str) -> tuple[float, float]:
    """``(row, col)`` pixel size in mm of :func:`slice_view` (for the display aspect ratio)."""
    axis = plane_axis(plane)
    first, second = (float(spacing_mm[a]) for a in range(3) if a != axis)
    return second, first


def slice_view(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One 2D slice of a canonical RAS ``(X, Y, Z)`` volume, oriented for display (a view).

    Axial (``volume[:, :, index]``): top = anterior, left = patient right (radiological).
    Coronal (``volume[:, index, :]``): top = superior, left = patient right.
    Sagittal (``volume[index, :, :]``): top = superior, left = posterior.
    The same orientation as :mod:`core.readers.nifti` slices; apply it to images and labels alike.
    """
    arr = np.asarray(volume)
    if arr.ndim != 3:
        raise ValueError(f"slice_view needs a 3D volume, got shape {arr.shape}.")
    axis = plane_axis(plane)
    n = arr.shape[axis]
    if not 0 <= int(index) < n:
        raise IndexError(f"{plane} slice {index} is out of range 0..{n - 1}.")
    slicer: list[Any] = [slice(None)] * 3
    slicer[axis] = int(index)
    view = np.rot90(arr[tuple(slicer)])
    if axis in (1, 2):
        view = view[:, ::-1]
    return view


def largest_tumour_slice(labels: np.ndarray | None, plane: str, region: str = "WT") -> int:
    """Index of the ``plane`` slice with the most ``region`` voxels; the middle slice if none."""
    axis = plane_axis(plane)
    if labels is None:
        raise ValueError("largest_tumour_slice needs a label map.")
    arr = np.asarray(labels)
    mask = np.isin(arr, config.BRATS_REGIONS[region])
    other = tuple(a for a in range(3) if a != axis)
    counts = mask.sum(axis=other)
    if not counts.any():
        return int(arr.shape[axis] // 2)
    return int(np.argmax(counts))
