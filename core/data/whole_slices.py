"""Whole slices of the other sources, framed as the app's segmenter sees an upload, with the mask of
the region each sequence shows.

The 2D segmenter takes the whole slice (square-padded, resized, no brain crop: its outline must
land on the upload). For ``tcga_lgg`` and BraTS this module reads the catalogued slices
(:mod:`core.data.sources`) the way :class:`core.data.sources.SliceReader` hands them to the app and
pairs each with its expert mask: tcga_lgg's FLAIR abnormality on all three co-registered sequences;
for BraTS the region the sequence shows (:data:`REGION_BY_SEQUENCE`: whole tumour on FLAIR, T2 and T1,
tumour core on T1-CE). Tumour-free slices get an empty mask. Arrays are cached like the catalogue's.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.datasets import cached_arrays
from core.data.sources import SliceReader, SliceRef, load_sources, require_data_dir
from core.imaging.preprocess import pad_to_square, resize, segmenter_input

#: The BraTS region each sequence is scored and trained against (what the sequence shows).
REGION_BY_SEQUENCE: dict[str, str] = {"flair": "WT", "t2": "WT", "t1": "WT", "t1ce": "TC"}
#: Sources whose slices carry masks on other sequences than figshare's T1-CE.
MASKED_SOURCES: tuple[str, ...] = ("tcga_lgg", "brats")
#: Side of the catalogue crops read only for their refs (the classifier's cache).
_CATALOGUE_SIZE = 128


@dataclass
class WholeSlices:
    """Slices ``x`` (N, S, S) uint8 as the segmenter's input, masks ``y`` (N, S, S) bool, and their refs."""

    refs: list[SliceRef]
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.refs)

    def take(self, keep: np.ndarray) -> "WholeSlices":
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        return WholeSlices([self.refs[i] for i in idx], self.x[idx], self.y[idx])


def region_of(ref: SliceRef) -> str:
    """The BraTS region a slice's mask shows (tcga_lgg masks are one region whatever the name)."""
    return REGION_BY_SEQUENCE.get(ref.sequence, "WT")


def frame_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A slice and its mask as the segmenter sees them (:func:`core.slices.segment.to_model_input`)."""
    framed = resize(pad_to_square(mask.astype(np.uint8)), size, is_mask=True) > 0
    return np.round(segmenter_input(image, size) * 255.0).astype(np.uint8), framed


def masked_refs(sources: tuple[str, ...] | list[str], split: str, data_dir: Path | None = None,
                axial_only: bool = False) -> list[SliceRef]:
    """Catalogued slices of ``split`` with a known mask (tumour or known tumour-free)."""
    refs = load_sources(list(sources), _CATALOGUE_SIZE, data_dir).refs
    return [r for r in refs if r.split == split and r.has_mask and (not axial_only or r.plane == "axial")]


def load_whole_slices(refs: list[SliceRef], size: int, data_dir: Path | None = None) -> WholeSlices:
    """Read, frame and cache ``refs`` (see the module docstring)."""
    root = require_data_dir(data_dir)
    reader = SliceReader(root)

    def build() -> dict[str, np.ndarray]:
        x = np.empty((len(refs), size, size), dtype=np.uint8)
        y = np.empty((len(refs), size, size), dtype=bool)
        for i, ref in enumerate(refs):
            x[i], y[i] = frame_pair(reader(ref), reader.mask(ref, region_of(ref)), size)
        return {"x": x, "y": y}

    digest = hashlib.sha1("\n".join(f"{r.ref}|{r.mask}|{region_of(r)}" for r in refs).encode()).hexdigest()
    stamps = [root / "tcga_lgg" / "index.csv"] if any(r.source == "tcga_lgg" for r in refs) else []
    for case in sorted({r.patient for r in refs if r.source == "brats"}):
        stamps += sorted((root / "brats" / case).glob("*.nii*"))
    arrays = cached_arrays("whole", stamps, f"size={size};refs={digest};v1", build)
    return WholeSlices(list(refs), arrays["x"], arrays["y"])
