"""Where the false alarms are: tumour-free slices of a volume by their distance to its lesion.

The external benchmark's tumour-free slices of ``tcga_lgg`` and BraTS come from the same volumes
as its tumour slices. A false alarm on a slice next to the lesion (a glancing edge below the mask
threshold, or swelling that the mask leaves out) means something else than one ten slices away,
on anatomy that the classifier simply calls "tumour". :func:`false_alarms_by_distance` counts the
tumour-free slices called tumour per source, sequence and band of distance, in slices, to the
nearest tumour slice of the benchmark in the same volume, sequence and plane.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any, Sequence

import numpy as np

from core import config
from core.data.sources import catalogue_order, parse_brats_ref

NO_TUMOUR = config.CLASS_NAMES.index(config.NO_TUMOUR_CLASS)
#: Bands of distance (slices; ``None``: no upper bound) the table reports.
DISTANCE_BANDS: tuple[tuple[int, int | None], ...] = ((1, 2), (3, 5), (6, 10), (11, None))


def band_label(band: tuple[int, int | None]) -> str:
    """``"1-2"``, ``"11+"``."""
    low, high = band
    return f"{low}+" if high is None else f"{low}-{high}"


def volume_position(ref: Any) -> tuple[str, int] | None:
    """``(volume key, slice index)`` of a catalogued slice from a volume; ``None`` for 2D sources.

    TCGA files are named ``<volume>_<index>.jpg`` and BraTS slices by
    :func:`core.data.sources.brats_ref`; the key keeps sequences and planes apart.
    """
    if ref.source == "tcga_lgg":
        volume, _, index = PurePosixPath(ref.ref).stem.rpartition("_")
        return (f"tcga_lgg:{volume}:{ref.sequence}", int(index)) if volume and index.isdigit() else None
    if ref.source == "brats":
        parsed = parse_brats_ref(ref.ref)
        return (f"brats:{':'.join(parsed[:3])}", parsed[3]) if parsed else None
    return None


def lesion_distances(refs: Sequence[Any], labels: np.ndarray) -> np.ndarray:
    """For each tumour-free slice from a volume, the distance (slices) to the nearest tumour slice
    of ``refs`` in the same volume; NaN for tumour slices, 2D sources and volumes with no tumour slice."""
    labels = np.asarray(labels)
    positions = [volume_position(r) for r in refs]
    tumour_at: dict[str, list[int]] = defaultdict(list)
    for pos, label in zip(positions, labels):
        if pos is not None and label != NO_TUMOUR:
            tumour_at[pos[0]].append(pos[1])
    out = np.full(len(refs), np.nan)
    for k, (pos, label) in enumerate(zip(positions, labels)):
        if pos is not None and label == NO_TUMOUR and tumour_at.get(pos[0]):
            out[k] = float(min(abs(pos[1] - t) for t in tumour_at[pos[0]]))
    return out


def false_alarms_by_distance(refs: Sequence[Any], labels: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
    """One row per source x sequence x distance band: tumour-free slices, how many were called
    tumour, the rate (cells in the benchmark's source and sequence order)."""
    distances = lesion_distances(refs, labels)
    called_tumour = np.asarray(probs).argmax(1) != NO_TUMOUR
    sources, sequences = np.array([r.source for r in refs]), np.array([r.sequence for r in refs])
    measured = np.isfinite(distances)
    rows = []
    for source, sequence in sorted(set(zip(sources[measured], sequences[measured])), key=lambda p: catalogue_order(*p)):
        for band in DISTANCE_BANDS:
            low, high = band
            keep = ((sources == source) & (sequences == sequence) & (distances >= low)
                    & (distances <= (np.inf if high is None else high)))
            n, alarms = int(keep.sum()), int(called_tumour[keep].sum())
            rows.append({"source": str(source), "sequence": str(sequence), "distance": band_label(band), "n": n,
                         "false_alarms": alarms, "rate": alarms / n if n else None})
    return rows
