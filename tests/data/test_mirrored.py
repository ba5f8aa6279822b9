"""core.data.mirrored: the midline, which side is healthy, the reflection, and the mirrored tumour-free
slices of a synthetic case whose lesion sits in one hemisphere (and of one whose lesion crosses)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core.data import mirrored
from core.volumes.case import Case
from core.volumes.views import slice_view


def test_midline_is_the_middle_of_the_brains_extent():
    view = np.zeros((8, 20), bool)
    view[2:6, 4:15] = True                                      # columns 4..14
    assert mirrored.midline_column(view) == 9
    with pytest.raises(ValueError):
        mirrored.midline_column(np.zeros((4, 4), bool))


@pytest.mark.parametrize("cols, side", [((14, 18), "left"), ((1, 5), "right"), ((8, 12), None),
                                        ((13, 15), None), ((0, 0), None)])
def test_healthy_side_needs_the_lesion_clear_of_the_midline(cols, side):
    tumour = np.zeros((6, 20), bool)
    tumour[2:4, cols[0]:cols[1]] = True
    assert mirrored.healthy_side(tumour, midline=9, margin=4) == side   # 13..14 is within 4 of 9: too close


def test_mirror_half_reflects_the_kept_side_and_leaves_it_untouched():
    image = np.arange(2 * 7).reshape(2, 7)                      # columns 0..6, midline 3
    left = mirrored.mirror_half(image, 3, "left")
    np.testing.assert_array_equal(left[:, :4], image[:, :4])
    np.testing.assert_array_equal(left[:, 4:], image[:, [2, 1, 0]])
    right = mirrored.mirror_half(image, 3, "right")
    np.testing.assert_array_equal(right[:, 3:], image[:, 3:])
    np.testing.assert_array_equal(right[:, :3], image[:, [6, 5, 4]])
    off = mirrored.mirror_half(image, 5, "left")                # column 6 <- 4; nothing falls off
    np.testing.assert_array_equal(off[:, 6], image[:, 4])
    edge = mirrored.mirror_half(image, 1, "right")              # column 0 <- 2
    np.testing.assert_array_equal(edge[:, 0], image[:, 2])
    with pytest.raises(ValueError):
        mirrored.mirror_half(image, 3, "up")


def _case(lesion_x: tuple[int, int]) -> Case:
    """A 40 mm cube brain ``[8, 32)`` with a lesion at ``x`` in ``lesion_x``, y and z in [12, 27)."""
    shape = (40, 40, 40)
    brain = np.zeros(shape, bool)
    brain[8:32, 8:32, 8:32] = True
    labels = np.zeros(shape, np.uint8)
    labels[lesion_x[0]:lesion_x[1], 12:27, 12:27] = 2
    x = np.arange(40)[:, None, None]
    images = {s: np.where(brain, 50 + k * 10 + x, 0).astype(np.uint8) + np.where(labels > 0, 80, 0).astype(np.uint8)
              for k, s in enumerate(("flair", "t1", "t1ce", "t2"))}
    return Case(images=images, labels=labels, affine=np.eye(4), spacing_mm=(1.0, 1.0, 1.0), case_id="c",
                source_convention="brats2021")


def test_mirrored_slices_of_a_one_sided_lesion_hold_no_lesion_and_keep_the_healthy_half():
    case = _case((8, 15))                                       # x 8..14: one hemisphere (midline x = 20)
    picks = mirrored.mirrored_slices(case, stride=1)
    planes = Counter(p for _, p, _, _ in picks)
    assert set(planes) == {"axial", "coronal"}                  # sagittal views have no left-right columns
    assert planes["axial"] == planes["coronal"] == 4 * 15       # 15 lesion slices (105 mm² each) x 4 sequences
    assert Counter(s for s, _, _, _ in picks) == {s: 30 for s in ("flair", "t1", "t1ce", "t2")}
    for sequence, plane, index, image in picks:
        original = slice_view(case.images[sequence], plane, index)
        lesion = slice_view(case.labels > 0, plane, index)
        assert image.shape == original.shape and image.dtype == np.uint8
        assert image.max() < 130 <= original.max()              # the bright lesion (>= 139) is gone
        # the half without the lesion is the reflection of the other, and equals the original there
        cols = np.flatnonzero(lesion.any(axis=0))
        healthy = slice(None, 20) if cols[0] > 20 else slice(21, None)
        assert np.abs(image[:, healthy].astype(int) - original[:, healthy].astype(int)).max() <= 2
        np.testing.assert_array_equal(image[:, 20 - 5], image[:, 20 + 5])


def test_a_lesion_across_the_midline_gives_nothing():
    assert mirrored.mirrored_slices(_case((15, 25)), stride=1) == []
    unlabelled = _case((8, 15))
    unlabelled.labels = None
    assert mirrored.mirrored_slices(unlabelled) == []


def test_load_mirrored_brats_reads_training_cases_only(tmp_path, monkeypatch):
    import nibabel as nib

    import synthetic_sources as syn

    root = tmp_path / "data"
    for case_id in ("BraTS2021_00001", "BraTS2021_00002"):     # train and val in the synthetic split
        folder = root / "brats" / case_id
        folder.mkdir(parents=True)
        case = _case((8, 15))
        for key, arr in {**case.images, "seg": case.labels}.items():
            nib.save(nib.Nifti1Image(arr, np.eye(4)), str(folder / f"{case_id}_{key}.nii.gz"))
    syn.isolate(monkeypatch, root, tmp_path / "cache", tmp_path / "weights")
    slices = mirrored.load_mirrored_brats(32, stride=1)
    assert len(slices) == 2 * 15 * 4 and slices.x.shape == (120, 32, 32) and slices.x.dtype == np.uint8
    assert {(r.source, r.split, r.label, r.patient) for r in slices.refs} == {("brats", "train", "notumor",
                                                                                "BraTS2021_00001")}
    assert all(r.ref.endswith("/mirrored") and r.plane in ("axial", "coronal") for r in slices.refs)
    assert len(mirrored.load_mirrored_brats(32, stride=2)) == 2 * 8 * 4    # indices 12, 14, ..., 26
    assert len(list((tmp_path / "cache").rglob("*.npz"))) >= 2          # cached per case and parameters
