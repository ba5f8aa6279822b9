"""What the slice catalogue (:mod:`core.data.sources`) hands its users: one slice's provenance
(:class:`SliceRef`) and a set of slices with their cropped inputs and masks (:class:`SliceSet`).

They live apart from the catalogue so that what reads slices from elsewhere (a packed catalogue,
:mod:`core.data.packed`) needs nothing of how the catalogue builds them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from core import config
from core.data.datasets import DatasetError


@dataclass(frozen=True)
class SliceRef:
    """One catalogued slice: where it comes from and what is known about it."""

    source: str
    split: str
    label: str
    patient: str
    sequence: str
    plane: str
    ref: str          # file path relative to the data folder, or "<case>/<sequence>/<plane>/<index>"
    mask: str = ""    # the tumour mask: a file path, BRATS_MASK, EMPTY_MASK (known tumour-free), "" unknown

    @property
    def tumour(self) -> bool:
        return self.label != config.NO_TUMOUR_CLASS

    @property
    def has_mask(self) -> bool:
        return bool(self.mask)


@dataclass
class SliceSet:
    """Catalogued slices with their cropped classifier inputs ``x`` (N, S, S) uint8 and their tumour
    masks cropped alike, bit-packed ``y`` (N, S*S/8) (all zero where the mask is unknown: see
    :attr:`SliceRef.has_mask`)."""

    refs: list[SliceRef]
    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.refs)

    def masks(self, idx: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Boolean masks ``(n, S, S)`` of the slices ``idx`` (all when None)."""
        side = self.x.shape[1]
        packed = self.y if idx is None else self.y[np.asarray(idx)]
        return np.unpackbits(packed, axis=1, count=side * side).reshape(-1, side, side).astype(bool)

    def column(self, name: str) -> np.ndarray:
        return np.asarray([getattr(r, name) for r in self.refs])

    def labels(self) -> np.ndarray:
        """Class indices into :data:`core.config.CLASS_NAMES`."""
        return np.asarray([config.CLASS_NAMES.index(r.label) for r in self.refs], dtype=np.int64)

    def take(self, mask: np.ndarray | Iterable[int]) -> "SliceSet":
        idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(list(mask), dtype=np.int64)
        return SliceSet([self.refs[i] for i in idx], self.x[idx], None if self.y is None else self.y[idx])

    def where(self, **conditions: str | Iterable[str]) -> "SliceSet":
        """The slices whose fields match: ``where(source="brats", split=("val", "test"))``."""
        keep = np.ones(len(self), dtype=bool)
        for name, wanted in conditions.items():
            options = {wanted} if isinstance(wanted, str) else set(wanted)
            keep &= np.isin(self.column(name), list(options))
        return self.take(keep)

    @staticmethod
    def concat(parts: list["SliceSet"]) -> "SliceSet":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise DatasetError("no slices in any source")
        ys = None if any(p.y is None for p in parts) else np.concatenate([p.y for p in parts])
        return SliceSet([r for p in parts for r in p.refs], np.concatenate([p.x for p in parts]), ys)
