"""Known-answer tests for core.imaging.metrics (synthetic data only)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.imaging.metrics import (
    bootstrap_ci,
    classification_report,
    dice,
    expected_calibration_error,
    hausdorff95,
    iou,
    reliability_curve,
    roc_curves,
    segmentation_summary,
    subsample_curve,
)

NAMES = ["glioma", "meningioma", "notumor", "pituitary"]


def disc(radius: float, shape=(80, 80)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2 <= radius**2


def ball(radius: float, size=40) -> np.ndarray:
    zz, yy, xx = np.mgrid[:size, :size, :size]
    c = size // 2
    return (zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2 <= radius**2


# --------------------------------------------------------------------------- segmentation


def two_squares():
    a = np.zeros((50, 50), bool)
    b = np.zeros((50, 50), bool)
    a[10:30, 10:30] = True  # 400 px
    b[20:40, 20:40] = True  # 400 px, overlap 10 x 10 = 100
    return a, b


def test_dice_iou_known_overlap():
    a, b = two_squares()
    assert dice(a, b) == pytest.approx(2 * 100 / 800)
    assert iou(a, b) == pytest.approx(100 / 700)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0 and iou(a, np.zeros_like(a)) == 0.0
    empty = np.zeros((5, 5), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(empty, empty, empty_value=0.0) == 0.0
    assert isinstance(dice(a.astype(np.uint8), b), float)
    with pytest.raises(ValueError):
        dice(a, b[:10])


def test_hd95_concentric_discs():
    d20, d25 = disc(20), disc(25)
    assert hausdorff95(d20, d25) == pytest.approx(5.0, abs=1.0)
    assert hausdorff95(d25, d20) == pytest.approx(hausdorff95(d20, d25))
    assert hausdorff95(d20, d20) == 0.0
    # spacing scales distances
    assert hausdorff95(d20, d25, spacing=(2.0, 2.0)) == pytest.approx(
        2 * hausdorff95(d20, d25)
    )


def test_hd95_3d_and_empty_cases():
    assert hausdorff95(ball(10), ball(14)) == pytest.approx(4.0, abs=1.0)
    assert hausdorff95(ball(10), ball(14), spacing=(0.5, 0.5, 0.5)) == pytest.approx(
        0.5 * hausdorff95(ball(10), ball(14))
    )
    empty = np.zeros((10, 10), bool)
    some = empty.copy()
    some[3:6, 3:6] = True
    assert hausdorff95(empty, empty) == 0.0
    assert math.isnan(hausdorff95(some, empty))
    assert math.isnan(hausdorff95(empty, some))


def test_segmentation_summary():
    a, b = two_squares()
    empty = np.zeros_like(a)
    s = segmentation_summary([a, a, empty, a], [b, a, empty, empty])
    json.dumps(s)
    assert s["n"] == 4
    assert s["mean_dice"] == pytest.approx((0.25 + 1 + 1 + 0) / 4)
    assert s["mean_iou"] == pytest.approx((100 / 700 + 1 + 1 + 0) / 4)
    # global: intersections 100 + 400 + 0 + 0 over sizes 800 + 800 + 0 + 400
    assert s["global_dice"] == pytest.approx(2 * 500 / 2000)
    assert s["n_hd95"] == 3  # the one-empty pair is nan and skipped
    assert s["mean_hd95"] == pytest.approx((hausdorff95(a, b) + 0 + 0) / 3)
    with pytest.raises(ValueError):
        segmentation_summary([a], [])


# --------------------------------------------------------------------------- classification


def onehot_probs(pred: np.ndarray, k: int = 4, p: float = 0.9) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - p) / (k - 1))
    probs[np.arange(len(pred)), pred] = p
    return probs


def test_report_perfect_predictions():
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    r = classification_report(y, onehot_probs(y), NAMES)
    json.dumps(r)
    assert r["accuracy"] == 1.0 and r["n"] == 8
    assert r["macro_f1"] == 1.0
    assert all(v["f1"] == 1.0 and v["support"] == 2 for v in r["per_class"].values())
    assert r["macro_auc"] == 1.0
    assert np.array_equal(r["confusion_matrix"], np.diag([2, 2, 2, 2]))
    assert r["classes_present"] == NAMES
    assert r["ece"] == pytest.approx(0.1)  # always 90 % sure, always right


def test_report_subset_of_classes():
    y = np.array([0, 0, 0, 2, 2, 2])
    pred = np.array([0, 0, 3, 2, 2, 3])  # two predictions of the absent class 3
    r = classification_report(y, onehot_probs(pred), NAMES)
    json.dumps(r)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert set(r["per_class"]) == {"glioma", "notumor"}
    assert r["classes_present"] == ["glioma", "notumor"]
    g = r["per_class"]["glioma"]
    assert g["recall"] == pytest.approx(2 / 3) and g["precision"] == 1.0 and g["support"] == 3
    assert g["f1"] == pytest.approx(0.8)
    assert r["macro_f1"] == pytest.approx(0.8)
    cm = np.array(r["confusion_matrix"])
    assert cm.shape == (4, 4)
    assert cm[0].tolist() == [2, 0, 0, 1] and cm[2].tolist() == [0, 0, 2, 1]
    assert r["macro_auc"] is not None and 0.0 <= r["macro_auc"] <= 1.0
    curves = roc_curves(y, onehot_probs(pred), NAMES)
    json.dumps(curves)
    assert set(curves) == {"glioma", "notumor"}
    assert curves["glioma"]["fpr"][0] == 0.0 and curves["glioma"]["tpr"][-1] == 1.0


def test_report_single_class():
    y = np.array([1, 1, 1])
    r = classification_report(y, onehot_probs(np.array([1, 1, 0])), NAMES)
    assert r["macro_auc"] is None
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert list(r["per_class"]) == ["meningioma"]
    assert roc_curves(y, onehot_probs(y), NAMES) == {}


def test_report_rejects_bad_shapes():
    y = np.array([0, 1])
    with pytest.raises(ValueError):
        classification_report(y, onehot_probs(y), NAMES[:3])
    with pytest.raises(ValueError):
        classification_report(np.array([0, 5]), onehot_probs(y), NAMES)


def test_roc_curves_auc_matches_ranking():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    curves = roc_curves(y, probs, ["a", "b"])
    # class "b" scores: negatives 0.1, 0.4; positives 0.3, 0.8 -> 3 of 4 pairs ordered
    assert curves["b"]["auc"] == pytest.approx(0.75)
    assert curves["a"]["auc"] == pytest.approx(0.75)


# --------------------------------------------------------------------------- calibration


def calibrated_binary(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.5, 1.0, n)
    pred = rng.integers(0, 2, n)
    correct = rng.uniform(size=n) < conf
    y = np.where(correct, pred, 1 - pred)
    probs = np.empty((n, 2))
    probs[np.arange(n), pred] = conf
    probs[np.arange(n), 1 - pred] = 1 - conf
    return y, probs


def test_ece_calibrated_vs_overconfident():
    y, probs = calibrated_binary(20000)
    assert expected_calibration_error(y, probs) < 0.03
    # overconfident: 99 % sure, right 60 % of the time
    rng = np.random.default_rng(1)
    n = 5000
    y2 = (rng.uniform(size=n) >= 0.6).astype(int)  # class 0 in 60 %
    probs2 = np.tile([0.99, 0.01], (n, 1))
    ece = expected_calibration_error(y2, probs2)
    assert ece == pytest.approx(0.99 - np.mean(y2 == 0), abs=1e-9)
    assert ece > 0.3


def test_reliability_curve():
    y, probs = calibrated_binary(5000)
    rc = reliability_curve(y, probs, n_bins=10)
    json.dumps(rc)
    assert len(rc["bin_centers"]) == len(rc["counts"]) == 10 and len(rc["bin_edges"]) == 11
    assert sum(rc["counts"]) == 5000
    assert rc["counts"][:4] == [0, 0, 0, 0]  # max prob >= 0.5 with two classes
    assert rc["accuracy"][0] is None
    for acc, conf, centre in zip(rc["accuracy"][5:], rc["confidence"][5:], rc["bin_centers"][5:]):
        assert abs(conf - centre) < 0.05
        assert abs(acc - conf) < 0.06


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_estimate_and_shrinks():
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 1000):
        data = rng.normal(size=n)
        lo, hi = bootstrap_ci(lambda idx, d=data: float(d[idx].mean()), n, n_boot=400, seed=0)
        assert isinstance(lo, float) and isinstance(hi, float)
        assert lo <= data.mean() <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    # deterministic with a seed
    data = rng.normal(size=30)
    fn = lambda idx: float(data[idx].mean())  # noqa: E731
    assert bootstrap_ci(fn, 30, n_boot=100, seed=3) == bootstrap_ci(fn, 30, n_boot=100, seed=3)


def test_bootstrap_ci_by_groups_resamples_whole_groups():
    """Cluster bootstrap: items of one group move together, so the CI reflects between-group spread."""
    # 10 patients, 20 slices each; slices of a patient are identical, patients differ a lot.
    patient_means = np.random.default_rng(2).normal(0.7, 0.15, 10)
    values = np.repeat(patient_means, 20)
    groups = np.repeat([f"p{i}" for i in range(10)], 20)
    fn = lambda idx: float(values[idx].mean())  # noqa: E731
    lo_g, hi_g = bootstrap_ci(fn, len(values), n_boot=500, seed=0, groups=groups)
    lo_i, hi_i = bootstrap_ci(fn, len(values), n_boot=500, seed=0)
    assert lo_g <= values.mean() <= hi_g
    # 10 independent units, not 200: the grouped interval is wider than the naive one
    assert (hi_g - lo_g) > 1.5 * (hi_i - lo_i)
    # one group per item is the plain bootstrap again (up to resampling noise)
    lo_1, hi_1 = bootstrap_ci(fn, len(values), n_boot=500, seed=0, groups=np.arange(len(values)))
    assert abs((hi_1 - lo_1) - (hi_i - lo_i)) < 0.5 * (hi_i - lo_i)
    with pytest.raises(ValueError):
        bootstrap_ci(fn, len(values), groups=groups[:5])


def test_subsample_curve_keeps_ends_and_shape():
    fpr = np.linspace(0, 1, 1001) ** 3
    tpr = np.sqrt(np.linspace(0, 1, 1001))
    x, y = subsample_curve(fpr, tpr, 50)
    assert len(x) == len(y) <= 50 and len(x) >= 40
    assert (x[0], y[0]) == (0.0, 0.0) and (x[-1], y[-1]) == (1.0, 1.0)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    # area barely changes
    assert abs(np.trapezoid(y, x) - np.trapezoid(tpr, fpr)) < 0.01
    short_x, short_y = subsample_curve([0, 0.5, 1], [0, 0.8, 1], 50)
    assert short_x == [0, 0.5, 1] and short_y == [0, 0.8, 1]
    with pytest.raises(ValueError):
        subsample_curve([0, 1], [0], 10)
