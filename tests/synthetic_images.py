"""Synthetic test images shared by test modules (generated here, never real data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def phantom(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc ("lesion") inside an ellipse ("head"), and the lesion mask."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:size, :size]
    head = ((rr - size / 2) / (0.4 * size)) ** 2 + ((cc - size / 2) / (0.35 * size)) ** 2 <= 1
    r0, c0 = rng.integers(size // 3, 2 * size // 3, 2)
    lesion = (rr - r0) ** 2 + (cc - c0) ** 2 <= (size // 10) ** 2
    image = np.where(head, 90, 0) + np.where(lesion, 120, 0) + rng.normal(0, 4, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), lesion


def write_png(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as an image file at ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
