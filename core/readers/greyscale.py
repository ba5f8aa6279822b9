"""Stored pixel values to display greyscale in [0, 1]: a robust window, or luminance of colour."""
from __future__ import annotations

import numpy as np

from core.imaging.preprocess import to_unit_range


def unit_range(values: np.ndarray) -> np.ndarray:
    """:func:`core.imaging.preprocess.to_unit_range`, made finite: huge values (e.g. 1e30 everywhere)
    can leave it a zero-width window, and 0/0 must not reach the page."""
    image = to_unit_range(values)
    if not np.isfinite(image).all():
        image = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return image.astype(np.float32, copy=False)


def rgb_to_luminance(rgb: np.ndarray, max_value: float) -> tuple[np.ndarray, float]:
    """Rec. 601 luminance in [0, 1] and mean chroma (max-min of R, G, B) in [0, 1]."""
    rgb = rgb[..., :3].astype(np.float32) / float(max_value)
    lum = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    colourfulness = float(np.clip(chroma.mean(), 0.0, 1.0)) if chroma.size else 0.0
    return np.clip(lum, 0.0, 1.0).astype(np.float32), colourfulness
