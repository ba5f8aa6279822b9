"""The segmenter's multi-source mix: draw weights, weighted crop batches and per-cell validation."""
from __future__ import annotations

import numpy as np
import pytest

from core.data.sources import SliceRef
from core.train.segmenter import CropBatches
from core.train.segmenter_mix import cell_of, cell_scores, mixed_weights, slice_agreement, worst_score


def ref(source: str, sequence: str, tumour: bool, k: int = 0) -> SliceRef:
    return SliceRef(source, "train", "glioma" if tumour else "notumor", f"p{k}", sequence, "axial", f"{source}/{k}")


def test_weights_give_figshare_its_share_and_every_extra_cell_its_own():
    extra = ([ref("tcga_lgg", "flair", True, k) for k in range(6)] + [ref("tcga_lgg", "flair", False, 9)]
             + [ref("brats", "t1", True, k) for k in range(3)])
    w = mixed_weights(10, extra, 0.4)
    assert w.shape == (20,) and w.sum() == pytest.approx(1.0)
    assert w[:10].sum() == pytest.approx(0.6) and np.allclose(w[:10], 0.06)
    tcga, brats = w[10:17], w[17:]
    assert tcga.sum() == pytest.approx(0.2) and brats.sum() == pytest.approx(0.2)
    # tcga's two cells (tumour, tumour-free) weigh the same whatever their sizes
    assert tcga[:6].sum() == pytest.approx(tcga[6]) == pytest.approx(0.1)
    assert np.allclose(mixed_weights(4, [], 0.5), 0.25)


def test_weighted_crop_batches_draw_only_weighted_slices_anew_each_epoch():
    images = np.zeros((6, 16, 16), np.uint8)
    masks = np.zeros((6, 16, 16), bool)
    weights = np.array([0.5, 0.5, 0, 0, 0, 0])
    batches = CropBatches(images, masks, batch=4, crop=8, seed=1, weights=weights, samples=10)
    assert len(batches) == 3 and len(batches.order) == 10 and set(batches.order) <= {0, 1}
    first = batches.order.copy()
    batches.on_epoch_end()
    assert set(batches.order) <= {0, 1} and not np.array_equal(first, batches.order)
    x, y = batches[2]
    assert x.shape == (2, 8, 8, 1) and y.shape == (2, 8, 8, 1)
    plain = CropBatches(images, masks, batch=4, crop=8, seed=1)
    assert len(plain) == 2 and sorted(plain.order) == list(range(6))
    np.testing.assert_array_equal(plain.order, np.random.default_rng(1).permutation(6))


def test_cell_scores_count_clean_tumour_free_slices_and_dice_on_tumours():
    truth = np.zeros((4, 4, 4), bool)
    truth[0, :2, :2] = True          # tumour slice, half found
    truth[1, :2, :2] = True          # tumour slice, missed
    pred = np.zeros_like(truth)
    pred[0, :2, :] = True            # 4 of 8 predicted pixels right: Dice 2*4/(4+8) = 2/3
    pred[3, 0, 0] = True             # tumour-free slice 3 outlined, slice 2 left clean
    cells = ["brats/t1", "brats/t1", "brats/t1", "tcga_lgg/flair"]
    table = cell_scores(pred, truth, cells)
    assert table["brats/t1"]["n"] == 3
    assert table["brats/t1"]["tumour_dice"] == pytest.approx(1 / 3)
    assert table["brats/t1"]["clean"] == 1.0
    assert table["brats/t1"]["score"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert table["tcga_lgg/flair"]["score"] == 0.0 and table["tcga_lgg/flair"]["clean"] == 0.0
    assert np.isnan(table["tcga_lgg/flair"]["tumour_dice"])
    assert worst_score(table) == 0.0
    assert slice_agreement(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    assert cell_of(ref("brats", "t1ce", True)) == "brats/t1ce"


def test_epochs_below_the_figshare_floor_rank_after_every_epoch_above_it():
    from core.train.segmenter_mix import selection_score

    kept, lost_little, lost_more = selection_score(0.05, 0.72, 0.71), selection_score(0.4, 0.70, 0.71), \
        selection_score(0.5, 0.60, 0.71)
    assert kept == 0.05 and kept > lost_little > lost_more
    assert selection_score(0.3, 0.1, None) == 0.3
