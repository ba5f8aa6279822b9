"""What the 2D segmenter's trainer needs to learn from other sources beside figshare.

``python -m core.train.segmenter --extra-sources tcga_lgg brats`` mixes whole slices of those
sources (:mod:`core.data.whole_slices`: tcga_lgg's FLAIR abnormality on its three sequences, BraTS
whole tumour or tumour core by sequence, tumour-free slices with empty masks) into every epoch.
This module holds the draw weights of that mix and the per-cell validation that selects the epoch.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from core.data.sources import SliceRef
from core.imaging.metrics import dice

#: Cell name of the figshare validation patients (the segmenter's own split).
FIGSHARE_CELL = "figshare/t1ce"


def mixed_weights(n_figshare: int, extra: list[SliceRef], extra_share: float) -> np.ndarray:
    """Draw weights over ``n_figshare`` figshare slices followed by ``extra``: figshare gets
    ``1 - extra_share``; the rest is split equally over the extra sources, and within a source
    equally over its (sequence, tumour or not) cells, each slice of a cell alike."""
    if not extra:
        return np.full(n_figshare, 1.0 / n_figshare)
    cells = Counter((r.source, r.sequence, r.tumour) for r in extra)
    per_source = Counter(s for s, _, _ in cells)
    sources = len(per_source)
    w_extra = np.array([extra_share / (sources * per_source[r.source] * cells[(r.source, r.sequence, r.tumour)])
                        for r in extra])
    weights = np.concatenate([np.full(n_figshare, (1.0 - extra_share) / n_figshare), w_extra])
    return weights / weights.sum()


def cell_of(ref: SliceRef) -> str:
    return f"{ref.source}/{ref.sequence}"


def slice_agreement(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of one slice, 1.0 when both are empty (a tumour-free slice left clean)."""
    if not truth.any() and not pred.any():
        return 1.0
    return dice(pred, truth)


def cell_scores(pred: np.ndarray, truth: np.ndarray, cells: list[str]) -> dict[str, dict[str, float]]:
    """Per cell: ``score`` (mean :func:`slice_agreement` over every slice), ``tumour_dice`` (mean Dice
    on slices with a mask) and ``clean`` (share of tumour-free slices left without any outline)."""
    out: dict[str, dict[str, float]] = {}
    for cell in sorted(set(cells)):
        idx = [i for i, c in enumerate(cells) if c == cell]
        with_mask = [i for i in idx if truth[i].any()]
        without = [i for i in idx if not truth[i].any()]
        out[cell] = {
            "n": len(idx),
            "score": float(np.mean([slice_agreement(pred[i], truth[i]) for i in idx])),
            "tumour_dice": float(np.mean([dice(pred[i], truth[i]) for i in with_mask])) if with_mask else float("nan"),
            "clean": float(np.mean([not pred[i].any() for i in without])) if without else float("nan")}
    return out


def worst_score(table: dict[str, dict[str, float]]) -> float:
    return float(min(row["score"] for row in table.values()))


def selection_score(worst: float, figshare_dice: float, floor: float | None) -> float:
    """The epoch's rank: its worst cell, or, below the figshare ``floor``, its figshare Dice minus 1
    (so every epoch that keeps figshare ranks first, and among the rest the least harmful)."""
    return worst if floor is None or figshare_dice >= floor else figshare_dice - 1.0
