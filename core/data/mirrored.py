"""Tumour-free training slices at the lesion's own level, made from the healthy hemisphere.

Why: the tumour-free slices of a glioma volume lie mostly above or below the lesion, so the
volume sources never show the classifier a tumour-free slice through the middle of the brain
(ventricles, basal ganglia) — and the external benchmark's tumour-free mid-brain slices were
called "tumour" almost always. A BraTS slice whose lesion lies wholly in one hemisphere still
holds a healthy one: reflecting it about the midline gives a plausible tumour-free slice at that
level (BraTS volumes are co-registered, so the midline is the middle of the brain's left-right
extent). Only axial and coronal views have left-right columns; only training cases are used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from core import config

#: Planes whose display columns run left-right (:func:`core.volumes.views.slice_view`).
MIRROR_PLANES: tuple[str, ...] = ("axial", "coronal")
#: Columns the lesion must keep from the midline (the reflected half must hold none of it).
MIDLINE_MARGIN = 4
#: Suffix of a mirrored slice's ref (``<case>/<sequence>/<plane>/<index>/mirrored``).
MIRRORED_TAG = "mirrored"


def midline_column(brain_view: np.ndarray) -> int:
    """The middle column of the brain's left-right extent in a 2D view (or its projection)."""
    cols = np.flatnonzero(np.asarray(brain_view, dtype=bool).any(axis=0))
    if cols.size == 0:
        raise ValueError("no brain in the view")
    return int(round((cols[0] + cols[-1]) / 2))


def healthy_side(tumour_view: np.ndarray, midline: int, margin: int = MIDLINE_MARGIN) -> str | None:
    """``"left"`` or ``"right"`` (display columns) when the lesion keeps ``margin`` columns off the
    midline on the other side; ``None`` when it crosses, nears the midline, or there is none."""
    cols = np.flatnonzero(np.asarray(tumour_view, dtype=bool).any(axis=0))
    if cols.size == 0:
        return None
    if cols[0] > midline + margin:
        return "left"
    if cols[-1] < midline - margin:
        return "right"
    return None


def mirror_half(image: np.ndarray, midline: int, keep: str) -> np.ndarray:
    """``image`` with the half opposite ``keep`` replaced by the reflection of ``keep`` about
    column ``midline`` (columns with no source pixel become 0)."""
    if keep not in ("left", "right"):
        raise ValueError(f"keep must be 'left' or 'right', got {keep!r}")
    out = np.array(image, copy=True)
    width = out.shape[1]
    cols = np.arange(width)
    target = cols > midline if keep == "left" else cols < midline
    source = 2 * midline - cols[target]
    inside = (source >= 0) & (source < width)
    out[:, cols[target][inside]] = image[:, source[inside]]
    out[:, cols[target][~inside]] = 0
    return out


def mirrored_slices(case, stride: int = 2) -> list[tuple[str, str, int, np.ndarray]]:
    """``(sequence, plane, index, image)`` of every mirrored tumour-free slice of a
    :class:`core.volumes.case.Case`: its tumour slices (:func:`core.data.sources.brats_slices`) in
    :data:`MIRROR_PLANES` whose lesion lies in one hemisphere, each sequence reflected alike."""
    from core.data.sources import brain_mask, brats_slice_image, brats_slices
    from core.volumes.views import plane_axis, slice_view

    if case.labels is None:
        return []
    brain = brain_mask(case)
    tumour = case.labels > 0
    picks = {(p, i) for _, p, i, label in brats_slices(case, stride) if label != config.NO_TUMOUR_CLASS}
    out = []
    for plane in MIRROR_PLANES:
        projection = brain.any(axis=plane_axis(plane), keepdims=True)
        midline = midline_column(slice_view(projection, plane, 0))
        for index in sorted(i for p, i in picks if p == plane):
            keep = healthy_side(slice_view(tumour, plane, index), midline)
            if keep is None:
                continue
            for sequence in case.images:
                image = brats_slice_image(case, sequence, plane, index)
                out.append((sequence, plane, index, mirror_half(image, midline, keep)))
    return out


def load_mirrored_brats(size: int, data_dir: Path | None = None, stride: int = 2,
                        brats_cases: dict[str, str] | None = None,
                        progress: Callable[[str], None] | None = None):
    """The mirrored tumour-free slices of the BraTS **training** cases as a
    :class:`core.data.sources.SliceSet` (label "no tumour", source "brats", split "train")."""
    from core.data.datasets import cached_arrays
    from core.data.sources import (BRATS_FRAME_MARGIN, EMPTY_MASK, SliceRef, SliceSet, _crop, _stack, brats_ref,
                                   brats_split, require_data_dir)
    from core.volumes.case import read_case_folder

    root = require_data_dir(data_dir)
    split_of = brats_split() if brats_cases is None else brats_cases
    refs, xs, ys = [], [], []
    for case_dir in sorted(p for p in (root / "brats").iterdir() if p.is_dir() and split_of.get(p.name) == "train"):
        def build(case_dir: Path = case_dir) -> dict[str, np.ndarray]:
            picks = mirrored_slices(read_case_folder(case_dir), stride)
            pairs = [_crop(image, None, size, BRATS_FRAME_MARGIN) for *_, image in picks]
            return {**_stack(pairs, size), "meta": np.array([f"{s}|{p}|{i}" for s, p, i, _ in picks], dtype=str)}

        data = cached_arrays("brats-mirrored", sorted(case_dir.glob("*.nii*")),
                             f"size={size};stride={stride};margin={MIDLINE_MARGIN};frame={BRATS_FRAME_MARGIN};v1", build)
        for entry in data["meta"]:
            sequence, plane, index = str(entry).split("|")
            refs.append(SliceRef("brats", "train", config.NO_TUMOUR_CLASS, case_dir.name, sequence, plane,
                                 brats_ref(case_dir.name, sequence, plane, int(index), MIRRORED_TAG), EMPTY_MASK))
        xs.append(data["x"])
        ys.append(data["y"])
        if progress:
            progress(case_dir.name)
    if not refs:
        return SliceSet([], np.zeros((0, size, size), np.uint8), np.zeros((0, size * size // 8), np.uint8))
    return SliceSet(refs, np.concatenate(xs), np.concatenate(ys))
