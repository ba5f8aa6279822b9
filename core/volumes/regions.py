"""Tumour regions of a BraTS label map (WT, TC, ET): masks, volumes, Dice, comparison with the truth.

Labels are 0 background, 1 NCR, 2 ED, 4 ET; regions WT = {1, 2, 4}, TC = {1, 4}, ET = {4}
(:data:`core.config.BRATS_REGIONS`). Empty regions: both empty -> Dice 1.0 and HD95 0.0 mm
(nothing to find, nothing found; e.g. ET in a case without enhancing tumour); exactly one empty
-> Dice 0.0 and HD95 ``nan`` (no surface to measure against), as in :mod:`core.imaging.metrics`.
"""
from __future__ import annotations

import numpy as np

from core import config
from core.imaging.metrics import dice, hausdorff95
from core.imaging.morphology import region_volumes_cm3

__all__ = [
    "LABEL_VOLUME_GROUPS",
    "region_masks",
    "label_volumes_cm3",
    "region_dice",
    "compare_to_truth",
]

#: Groups reported by :func:`label_volumes_cm3`: the three labels and the three regions.
LABEL_VOLUME_GROUPS: dict[str, tuple[int, ...]] = {
    "NCR": (1,),
    "ED": (2,),
    "ET": (4,),
    "WT": tuple(config.BRATS_REGIONS["WT"]),
    "TC": tuple(config.BRATS_REGIONS["TC"]),
}


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks ``{"WT", "TC", "ET"}`` (WT = {1, 2, 4}, TC = {1, 4}, ET = {4})."""
    arr = np.asarray(labels)
    return {name: np.isin(arr, values) for name, values in config.BRATS_REGIONS.items()}


def label_volumes_cm3(labels: np.ndarray, spacing_mm: tuple[float, float, float]) -> dict[str, float]:
    """Volumes in cm³ of NCR, ED, ET (labels 1, 2, 4) and of the regions WT and TC.

    Volume = voxel count x voxel volume (product of ``spacing_mm``) / 1000.
    """
    return region_volumes_cm3(labels, spacing_mm, LABEL_VOLUME_GROUPS)


def _masks_dice(pm: dict[str, np.ndarray], tm: dict[str, np.ndarray]) -> dict[str, float]:
    """Dice per region of two :func:`region_masks` results; both empty -> 1.0."""
    return {region: float(dice(pm[region], tm[region], empty_value=1.0)) for region in pm}


def region_dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per region ``{"WT", "TC", "ET"}`` of a predicted and a true label map; both empty -> 1.0."""
    return _masks_dice(region_masks(pred), region_masks(truth))


def _crop_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop two masks to the bounding box of their union plus one voxel (same HD95, less work)."""
    union = a | b
    if not union.any():
        return a, b
    slices = []
    for axis in range(union.ndim):
        other = tuple(x for x in range(union.ndim) if x != axis)
        hits = np.flatnonzero(union.any(axis=other))
        slices.append(slice(max(int(hits[0]) - 1, 0), int(hits[-1]) + 2))
    box = tuple(slices)
    return a[box], b[box]


def compare_to_truth(
    pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, float, float]
) -> dict[str, dict[str, float | bool]]:
    """Per region (WT, TC, ET) agreement of a predicted label map with the ground truth.

    Returns ``{region: {"dice", "hd95_mm", "volume_pred_cm3", "volume_truth_cm3",
    "volume_diff_cm3", "both_empty"}}``; ``volume_diff_cm3`` is pred - truth. Empty regions:
    both empty -> Dice 1.0, HD95 0.0 (``both_empty`` True; e.g. ET of a case with no enhancing
    tumour predicted as such); exactly one empty -> Dice 0.0, HD95 ``nan`` (undefined: no
    surface to measure against; skip it in averages). HD95 is the 95th percentile of the
    symmetric surface distances in mm (:func:`core.imaging.metrics.hausdorff95` with the spacing).
    """
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"Prediction {p.shape} and ground truth {t.shape} have different shapes.")
    spacing = tuple(float(s) for s in spacing_mm)
    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    pm, tm = region_masks(p), region_masks(t)
    scores = _masks_dice(pm, tm)
    out: dict[str, dict[str, float | bool]] = {}
    for region in config.BRATS_REGIONS:
        a, b = pm[region], tm[region]
        va, vb = int(a.sum()) * voxel_cm3, int(b.sum()) * voxel_cm3
        ca, cb = _crop_pair(a, b)
        out[region] = {
            "dice": scores[region],
            "hd95_mm": float(hausdorff95(ca, cb, spacing)),
            "volume_pred_cm3": va,
            "volume_truth_cm3": vb,
            "volume_diff_cm3": va - vb,
            "both_empty": bool(not a.any() and not b.any()),
        }
    return out
