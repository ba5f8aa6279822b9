"""Limits every slice reader applies: upload size, image sides and frames, plausible pixel spacing,
and decoding at a reduced size (block means) with the spacing scaled to match."""
from __future__ import annotations

import math

import numpy as np

from core import config
from core.errors import EmptyFile, EmptyImage, ImageTooLarge, InputError


def check_bytes(data: bytes, name: str) -> None:
    """Refuse an empty upload or one over :data:`core.config.MAX_SLICE_BYTES`."""
    if not data:
        raise EmptyFile(f"'{name}' is empty (0 bytes). Upload the image file again.")
    if len(data) > config.MAX_SLICE_BYTES:
        raise ImageTooLarge(
            f"'{name}' is {len(data) / 2**20:.0f} MB; the limit is "
            f"{config.MAX_SLICE_BYTES / 2**20:.0f} MB per upload."
        )


def check_side(height: int, width: int, name: str) -> None:
    """Refuse an image whose longest side is over :data:`core.config.MAX_IMAGE_SIDE`."""
    if max(height, width) > config.MAX_IMAGE_SIDE:
        raise ImageTooLarge(
            f"'{name}' is {width}x{height} pixels; the largest side accepted is "
            f"{config.MAX_IMAGE_SIDE} pixels. Downscale the image and upload it again."
        )


def check_frame(height: int, width: int, name: str) -> None:
    """Refuse a frame with no pixels, a side over the limit or more than the pixel budget."""
    if height <= 0 or width <= 0:
        raise EmptyImage(
            f"'{name}' declares an image of {width}x{height} pixels: it holds no image. "
            "The file is damaged or was not exported correctly."
        )
    check_side(height, width, name)
    if height * width > config.MAX_FRAME_PIXELS:
        raise ImageTooLarge(
            f"'{name}' is {width}x{height} pixels ({height * width / 2**20:.0f} MP); the limit is "
            f"{config.MAX_FRAME_PIXELS / 2**20:.0f} MP per image. Downscale it and upload it again."
        )


def check_frames(n_frames: int, name: str) -> None:
    """Refuse a file with more than :data:`core.config.MAX_FRAMES` frames."""
    if n_frames > config.MAX_FRAMES:
        raise ImageTooLarge(
            f"'{name}' holds {n_frames} frames; the limit is {config.MAX_FRAMES}. "
            "Export the slices you need as separate files."
        )


def pick_frame(frame: int | None, n_frames: int, name: str) -> int:
    """The frame to read: 0 when none is asked for, else ``frame`` if it exists."""
    if frame is None:
        return 0
    if not 0 <= int(frame) < n_frames:
        raise InputError(
            f"Frame {frame} does not exist in '{name}': valid frames are 0 to {n_frames - 1}."
        )
    return int(frame)


def plausible_spacing(spacing: tuple[float, float] | None) -> tuple[float, float] | None:
    """``spacing`` when every value is finite and within :data:`core.config.SPACING_RANGE_MM`.

    Anything else (0, negative, 1e-300, 1e300, NaN) gives ``None``: the spacing is unknown.
    """
    if spacing is None:
        return None
    lo, hi = config.SPACING_RANGE_MM
    values = tuple(float(v) for v in spacing)
    if all(math.isfinite(v) and lo <= v <= hi for v in values):
        return values  # type: ignore[return-value]
    return None


def spacing_checked(spacing: tuple[float, float] | None, metadata: dict[str, str]) -> tuple[float, float] | None:
    """:func:`plausible_spacing`, noting in ``metadata`` a stated spacing that was ignored."""
    checked = plausible_spacing(spacing)
    if spacing is not None and checked is None:
        lo, hi = config.SPACING_RANGE_MM
        metadata["pixel spacing"] = (
            f"ignored: {spacing[0]:g} x {spacing[1]:g} mm is outside {lo:g}-{hi:g} mm, "
            "so measurements are in pixels"
        )
    return checked


def reduction_factor(height: int, width: int) -> int:
    """Smallest integer factor that brings the longest side to :data:`config.MAX_DECODED_SIDE`."""
    return max(1, math.ceil(max(height, width) / config.MAX_DECODED_SIDE))


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks over the first two axes (float64; edge blocks partial).

    Works one band of rows at a time, so a strided view of a huge frame is never copied or cast
    whole (at most ``factor`` rows exist as float64 at once).
    """
    values = np.asarray(arr)
    if factor <= 1:
        return values.astype(np.float64)
    height, width = values.shape[:2]
    col_starts = np.arange(0, width, factor)
    col_counts = np.diff(np.append(col_starts, width)).astype(np.float64)
    col_counts = col_counts.reshape((-1,) + (1,) * (values.ndim - 2))
    out = np.empty((math.ceil(height / factor), col_starts.size) + values.shape[2:], dtype=np.float64)
    for k, top in enumerate(range(0, height, factor)):
        band = values[top:top + factor]
        sums = np.add.reduceat(band.sum(axis=0, dtype=np.float64), col_starts, axis=0)
        out[k] = sums / (col_counts * band.shape[0])
    return out


def scaled_spacing(
    spacing: tuple[float, float] | None, before: tuple[int, int], after: tuple[int, int]
) -> tuple[float, float] | None:
    """Spacing of a reduced image: each pixel now covers ``before / after`` stored pixels."""
    if spacing is None or before == after:
        return spacing
    return (spacing[0] * before[0] / after[0], spacing[1] * before[1] / after[1])


def note_reduction(metadata: dict[str, str], before: tuple[int, int], after: tuple[int, int]) -> None:
    """Record in ``metadata`` that an image stored at ``before`` was decoded at ``after``."""
    if before != after:
        metadata["reduced"] = (
            f"stored {before[0]}x{before[1]}, decoded at {after[0]}x{after[1]} (largest side "
            f"{config.MAX_DECODED_SIDE} px); the pixel spacing is scaled to match"
        )
