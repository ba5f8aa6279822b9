"""Segmentation and classification metrics; every return value is JSON-able.

Segmentation masks are boolean-like arrays of any dimension (2D slices, 3D volumes); nonzero
means foreground. Classification inputs are integer labels ``y_true`` (N,) and probabilities
``y_prob`` (N, K) over all K model classes; the prediction is ``argmax(y_prob)``.

Empty-mask conventions:
* ``dice`` / ``iou``: both masks empty -> ``empty_value`` (default 1.0: nothing to find,
  nothing found); exactly one empty -> 0.0.
* ``hausdorff95``: both empty -> 0.0; exactly one empty -> ``nan`` (no surface to measure
  against; averages in :func:`segmentation_summary` skip it).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.metrics import (
    auc,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "dice",
    "iou",
    "hausdorff95",
    "segmentation_summary",
    "classification_report",
    "expected_calibration_error",
    "reliability_curve",
    "bootstrap_ci",
    "roc_curves",
    "subsample_curve",
]


# --------------------------------------------------------------------------- segmentation


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean versions of two masks of identical shape."""
    p, t = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"Mask shapes differ: {p.shape} vs {t.shape}.")
    return p, t


def dice(pred: np.ndarray, truth: np.ndarray, empty_value: float = 1.0) -> float:
    """Dice = 2|P∩T| / (|P|+|T|) of two masks of equal shape; both empty -> ``empty_value``."""
    p, t = _pair(pred, truth)
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return float(empty_value)
    return 2.0 * int(np.logical_and(p, t).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray, empty_value: float = 1.0) -> float:
    """Jaccard index |P∩T| / |P∪T|; both empty -> ``empty_value``."""
    p, t = _pair(pred, truth)
    union = int(np.logical_or(p, t).sum())
    if union == 0:
        return float(empty_value)
    return int(np.logical_and(p, t).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: the mask minus its erosion (face connectivity, outside = background)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hausdorff95(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...] | None = None
) -> float:
    """95th percentile of the symmetric surface distances between two masks (2D or 3D).

    Distances from every surface voxel of ``pred`` to the nearest surface voxel of ``truth``
    and vice versa are pooled, and their 95th percentile returned, in the units of
    ``spacing`` (per-axis voxel size, e.g. mm; pixels when ``None``).
    Both empty -> 0.0; exactly one empty -> ``nan``.
    """
    p, t = _pair(pred, truth)
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return 0.0
    if not (p_any and t_any):
        return float("nan")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != p.ndim:
            raise ValueError(f"Spacing {spacing} does not match mask dimension {p.ndim}.")
    sp, st = _surface(p), _surface(t)
    to_truth = ndimage.distance_transform_edt(~st, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    distances = np.concatenate([to_truth[sp], to_pred[st]])
    return float(np.percentile(distances, 95))


def segmentation_summary(
    preds: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    spacing: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """Aggregate metrics over paired masks.

    Returns ``n``, ``mean_dice`` / ``mean_iou`` (per-image means), ``global_dice``
    (2 * summed intersections / summed sizes), ``mean_hd95`` over finite values (``None`` if
    none) and ``n_hd95`` (how many were finite).
    """
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions but {len(truths)} ground truths.")
    dices, ious, hds = [], [], []
    inter = size = 0
    for pred, truth in zip(preds, truths):
        p, t = _pair(pred, truth)
        dices.append(dice(p, t))
        ious.append(iou(p, t))
        hds.append(hausdorff95(p, t, spacing))
        inter += int(np.logical_and(p, t).sum())
        size += int(p.sum()) + int(t.sum())
    finite = [h for h in hds if math.isfinite(h)]
    n = len(dices)
    return {
        "n": n,
        "mean_dice": float(np.mean(dices)) if n else None,
        "mean_iou": float(np.mean(ious)) if n else None,
        "global_dice": (2.0 * inter / size if size else 1.0) if n else None,
        "mean_hd95": float(np.mean(finite)) if finite else None,
        "n_hd95": len(finite),
    }


# --------------------------------------------------------------------------- classification


def _check_probs(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``y_true`` (N,) ints in [0, K) and ``y_prob`` (N, K)."""
    yt = np.asarray(y_true).astype(int).ravel()
    yp = np.asarray(y_prob, dtype=np.float64)
    if yp.ndim != 2 or yp.shape[0] != yt.shape[0]:
        raise ValueError(f"y_prob must be (N, K) with N={yt.shape[0]}, got {yp.shape}.")
    if yt.size and (yt.min() < 0 or yt.max() >= yp.shape[1]):
        raise ValueError(f"Labels must lie in [0, {yp.shape[1]}).")
    return yt, yp


def _calibration_bins(
    y_true: np.ndarray, y_prob: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, accuracy sum, confidence sum) over equal-width bins (lo, hi] of [0, 1]."""
    yt, yp = _check_probs(y_true, y_prob)
    conf = yp.max(axis=1)
    correct = (yp.argmax(axis=1) == yt).astype(float)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    return counts, acc_sum, conf_sum


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / N) * |accuracy_b - confidence_b| on max-probability confidence.

    Bins are ``n_bins`` equal-width intervals (lo, hi] of [0, 1]. 0.0 for N = 0.
    """
    counts, acc_sum, conf_sum = _calibration_bins(y_true, y_prob, n_bins)
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(np.abs(acc_sum - conf_sum).sum() / total)


def reliability_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> dict[str, list]:
    """Data for a reliability diagram: per-bin centre, accuracy, mean confidence and count.

    Accuracy/confidence are ``None`` for empty bins. Also returns the ``bin_edges``.
    """
    counts, acc_sum, conf_sum = _calibration_bins(y_true, y_prob, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "bin_edges": [float(e) for e in edges],
        "bin_centers": [float(c) for c in (edges[:-1] + edges[1:]) / 2],
        "accuracy": [float(a / c) if c else None for a, c in zip(acc_sum, counts)],
        "confidence": [float(s / c) if c else None for s, c in zip(conf_sum, counts)],
        "counts": [int(c) for c in counts],
    }


def classification_report(
    y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1, confusion matrix, macro AUC and ECE for K-class predictions.

    Works when ``y_true`` holds only a subset of the K classes: per-class metrics, macro F1 and
    macro AUC then cover the classes present, while predictions of an absent class count as
    errors (in accuracy, and as misses in the true class's recall). The confusion matrix is
    always K x K (rows = truth, columns = prediction, in ``class_names`` order).
    ``macro_auc`` is the mean one-vs-rest ROC AUC over present classes, ``None`` with fewer than
    two classes present.
    """
    yt, yp = _check_probs(y_true, y_prob)
    k = yp.shape[1]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} probability columns.")
    y_pred = yp.argmax(axis=1)
    present = sorted(int(c) for c in np.unique(yt))
    precision, recall, f1, support = precision_recall_fscore_support(
        yt, y_pred, labels=present, zero_division=0
    )
    per_class = {
        class_names[c]: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(present)
    }
    macro_auc = None
    if len(present) >= 2:
        macro_auc = float(np.mean([roc_auc_score(yt == c, yp[:, c]) for c in present]))
    return {
        "n": int(yt.size),
        "accuracy": float(np.mean(y_pred == yt)) if yt.size else None,
        "per_class": per_class,
        "macro_f1": float(np.mean(f1)) if present else None,
        "confusion_matrix": confusion_matrix(yt, y_pred, labels=list(range(k))).tolist(),
        "class_names": list(class_names),
        "classes_present": [class_names[c] for c in present],
        "macro_auc": macro_auc,
        "ece": expected_calibration_error(yt, yp),
    }


def roc_curves(
    y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC per present class: ``{name: {"fpr": [...], "tpr": [...], "auc": float}}``.

    Classes whose one-vs-rest problem is undefined (absent, or the only class present) are left
    out.
    """
    yt, yp = _check_probs(y_true, y_prob)
    out: dict[str, dict[str, Any]] = {}
    for c in sorted(int(v) for v in np.unique(yt)):
        positives = yt == c
        if positives.all():
            continue
        fpr, tpr, _ = roc_curve(positives, yp[:, c])
        out[class_names[c]] = {
            "fpr": [float(v) for v in fpr],
            "tpr": [float(v) for v in tpr],
            "auc": float(auc(fpr, tpr)),
        }
    return out


# --------------------------------------------------------------------------- uncertainty


def bootstrap_ci(
    values_fn: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Sequence[Any] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric.

    ``values_fn(indices)`` computes the metric on the resampled items ``indices`` drawn with
    replacement from ``range(n)``. With ``groups`` (one id per item, e.g. the patient of each
    slice) whole groups are resampled instead (cluster bootstrap), so correlated items of one
    patient move together. Non-finite resample values are ignored. Returns the
    ``(alpha/2, 1 - alpha/2)`` percentiles; ``(nan, nan)`` if nothing finite.
    """
    if n <= 0:
        raise ValueError("bootstrap_ci needs n >= 1.")
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = (rng.integers(0, n, size=n) for _ in range(n_boot))
    else:
        if len(groups) != n:
            raise ValueError(f"{len(groups)} group ids for {n} items.")
        _, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        members = [np.flatnonzero(codes == g) for g in range(int(codes.max()) + 1)]
        draws = (np.concatenate([members[g] for g in rng.integers(0, len(members), size=len(members))])
                 for _ in range(n_boot))
    values = np.array([values_fn(idx) for idx in draws], dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def subsample_curve(x: Sequence[float], y: Sequence[float], max_points: int = 60) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points of a monotone curve (e.g. ROC), always keeping both ends.

    Points are kept at evenly spaced positions along the curve's length, so steep and flat parts
    both stay visible. Curves already short enough are returned unchanged.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.shape} vs {ya.shape}.")
    if max_points < 2:
        raise ValueError("max_points must be at least 2.")
    if xa.size <= max_points:
        return xa.tolist(), ya.tolist()
    length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(xa), np.diff(ya)))])
    targets = np.linspace(0.0, length[-1], max_points)
    keep = np.unique(np.clip(np.searchsorted(length, targets), 0, xa.size - 1))
    keep = np.union1d(keep, [0, xa.size - 1])
    return xa[keep].tolist(), ya[keep].tolist()
