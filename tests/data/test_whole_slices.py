"""core.data.whole_slices: other sources' whole slices framed as the segmenter sees an upload, with the
mask of the region each sequence shows (synthetic data folder of tests/synthetic_sources.py)."""
from __future__ import annotations

import numpy as np
import pytest

import synthetic_sources as syn
from core.data import whole_slices
from core.data.sources import SliceReader
from core.slices.segment import to_model_input

SIZE = 80  # twice the synthetic BraTS side: nearest-neighbour masks scale exactly


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    with syn.isolated_tree(tmp_path_factory) as (root, _):
        yield root


def test_framing_matches_the_segmenter_and_keeps_the_mask_aligned():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 50)).astype(np.uint8)
    mask = np.zeros((30, 50), dtype=bool)
    mask[10:20, 5:15] = True
    x, y = whole_slices.frame_pair(image, mask, 100)
    expected, geometry = to_model_input(image, 100)
    np.testing.assert_array_equal(x, np.round(expected * 255.0).astype(np.uint8))
    assert (geometry.top, geometry.left, geometry.side) == (10, 0, 50)
    # the mask moves down by the padding (10 rows) and doubles in scale (50 -> 100)
    assert y.sum() == 400 and y[40:60, 10:30].all()


def test_masked_refs_keep_known_masks_of_the_split(tree):
    train = whole_slices.masked_refs(whole_slices.MASKED_SOURCES, "train")
    val = whole_slices.masked_refs(whole_slices.MASKED_SOURCES, "val", axial_only=True)
    expected = syn.tcga_expected()
    assert sum(r.source == "tcga_lgg" for r in train) == expected[("train", "glioma")] + expected[("train", "notumor")]
    assert {r.source for r in train} == {"tcga_lgg", "brats"} and all(r.split == "train" for r in train)
    assert {r.plane for r in train if r.source == "brats"} == {"axial", "coronal", "sagittal"}
    assert {r.plane for r in val} == {"axial"} and {r.patient for r in val if r.source == "brats"} == {"BraTS2021_00002"}


def test_brats_masks_follow_the_sequence_and_tcga_masks_are_the_files(tree):
    refs = whole_slices.masked_refs(whole_slices.MASKED_SOURCES, "train")
    slices = whole_slices.load_whole_slices(refs, SIZE)
    assert slices.x.shape == (len(refs), SIZE, SIZE) and slices.x.dtype == np.uint8 and slices.y.dtype == bool
    reader = SliceReader(tree)
    cores = 0
    for k, ref in enumerate(slices.refs):
        if ref.source == "brats" and ref.tumour and ref.ref.endswith("/16"):  # through the tumour's core
            cores += 1
            # whole tumour: the 12 mm cube, tumour core (labels 1 and 4): the 8 mm cube; x4 in area
            assert slices.y[k].sum() == (8 * 8 if ref.sequence == "t1ce" else 12 * 12) * 4, ref
        if not ref.tumour:
            assert not slices.y[k].any(), ref
        if ref.source == "tcga_lgg" and ref.tumour:
            _, framed = whole_slices.frame_pair(reader(ref), reader.mask(ref), SIZE)
            np.testing.assert_array_equal(slices.y[k], framed)
            assert framed.any()
    assert cores == 3 * len(syn.BRATS_MODALITIES)  # one training case, three planes    assert {r.sequence for r in slices.refs if r.source == "brats"} == set(syn.BRATS_MODALITIES)


def test_arrays_are_cached_and_a_different_list_is_not_served_from_it(tree, monkeypatch):
    refs = whole_slices.masked_refs(["tcga_lgg"], "train")
    first = whole_slices.load_whole_slices(refs, SIZE)
    monkeypatch.setattr(whole_slices, "frame_pair", lambda *a: pytest.fail("rebuilt a cached set"))
    again = whole_slices.load_whole_slices(refs, SIZE)
    np.testing.assert_array_equal(first.x, again.x)
    monkeypatch.undo()
    fewer = whole_slices.load_whole_slices(refs[:2], SIZE)
    np.testing.assert_array_equal(fewer.x, first.x[:2])
    assert len(first.take(np.array([1, 0]))) == 2 and list(first.take(np.array([1, 0])).refs) == [refs[1], refs[0]]
