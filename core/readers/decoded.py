"""What the slice readers hand back: a decoded :class:`Slice`, or a :class:`SliceSource` (headers only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Slice:
    """One display-ready greyscale slice and what is known about it."""

    image: np.ndarray
    spacing_mm: tuple[float, float] | None
    source_format: str
    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    colourfulness: float = 0.0

    @property
    def image_uint8(self) -> np.ndarray:
        """The image as uint8 0-255."""
        return np.round(self.image * 255.0).astype(np.uint8)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))


@dataclass(frozen=True)
class SliceSource:
    """What a file holds before a slice is chosen (headers only; pixels are not decoded)."""

    kind: str
    shape: tuple[int, ...]
    n_frames: int
    source_format: str
