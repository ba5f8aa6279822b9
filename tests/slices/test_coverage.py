"""core.slices.coverage: training counts per class x sequence x plane from a card, the caution shown for
rarely or never seen acquisitions, and the coverage block built from training slices."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core.slices import coverage
from core.slices.acquisition import Acquisition, from_probabilities
from core.slices.coverage import RARE_COUNT, RARE_SHARE, Coverage, build_coverage, coverage_note
from core.data.sources import PLANES, SEQUENCES, SliceRef, SliceSet


def acq(sequence: str, plane: str, seq_conf: float = 0.95, plane_conf: float = 0.95) -> Acquisition:
    seq = np.full(4, (1 - seq_conf) / 3)
    seq[SEQUENCES.index(sequence)] = seq_conf
    pl = np.full(3, (1 - plane_conf) / 2)
    pl[PLANES.index(plane)] = plane_conf
    return from_probabilities(np.concatenate([seq, pl])[None])[0]


def card(known: dict, estimated: dict | None = None) -> dict:
    rows = lambda d: [{"class": c, "sequence": q, "plane": p, "n": n} for (c, q, p), n in d.items()]  # noqa: E731
    return {"coverage": {"known": rows(known), "estimated": rows(estimated or {})}}


def test_from_card_reads_known_and_estimated_counts():
    assert Coverage.from_card({}) is None and Coverage.from_card({"coverage": {}}) is None
    cov = Coverage.from_card(card({("glioma", "flair", "axial"): 120, ("notumor", "t1", "axial"): 40},
                                  {("glioma", "flair", "axial"): 30, ("glioma", "t1ce", "coronal"): 7}))
    assert cov.seen("glioma", "flair", "axial") == (120, 30)
    assert cov.seen("glioma", "t1ce", "coronal") == (0, 7)
    assert cov.seen("pituitary", "t2", "sagittal") == (0, 0)
    assert cov.total("glioma") == 157 and cov.total("notumor") == 40 and cov.total("meningioma") == 0


def test_well_covered_gives_no_note_and_missing_inputs_give_none():
    cov = Coverage.from_card(card({("glioma", "flair", "axial"): 600, ("glioma", "t1", "axial"): 400}))
    assert coverage_note(cov, "glioma", acq("flair", "axial")) is None
    assert coverage_note(None, "glioma", acq("flair", "axial")) is None
    assert coverage_note(cov, "glioma", None) is None


def test_never_seen_combination():
    cov = Coverage.from_card(card({("glioma", "flair", "axial"): 600}))
    note = coverage_note(cov, "glioma", acq("t2", "sagittal"))
    assert "never trained" in note and "sagittal T2" in note and "Glioma" in note
    # another class in the same sequence and plane does not count
    assert "never trained" in coverage_note(cov, "meningioma", acq("flair", "axial"))


def test_rare_by_count_and_by_share_with_exact_boundaries():
    few = Coverage.from_card(card({("glioma", "flair", "axial"): 1000, ("glioma", "t1ce", "coronal"): 20},
                                  {("glioma", "t1ce", "coronal"): 9}))
    note = coverage_note(few, "glioma", acq("t1ce", "coronal"))
    assert "few" in note and "coronal T1-CE" in note and "29 of 1029" in note and "(9 of them estimated)" in note
    # RARE_COUNT slices exactly, at exactly RARE_SHARE of the class: not rare
    total = round(RARE_COUNT / RARE_SHARE)
    edge = Coverage.from_card(card({("notumor", "t2", "axial"): RARE_COUNT,
                                    ("notumor", "flair", "axial"): total - RARE_COUNT}))
    assert coverage_note(edge, "notumor", acq("t2", "axial")) is None
    below = Coverage.from_card(card({("notumor", "t2", "axial"): RARE_COUNT - 1,
                                     ("notumor", "flair", "axial"): total}))
    assert "few" in coverage_note(below, "notumor", acq("t2", "axial"))
    # plenty of slices, but a small share of a big class: rare by share
    share = Coverage.from_card(card({("glioma", "t1", "axial"): 60, ("glioma", "flair", "axial"): 4000}))
    note = coverage_note(share, "glioma", acq("t1", "axial"))
    assert "few" in note and "60 of 4060" in note and "estimated" not in note


def test_unconfident_recognition_comes_first():
    cov = Coverage.from_card(card({("glioma", "flair", "axial"): 600}))
    unsure = acq("flair", "axial", seq_conf=0.55)
    assert not unsure.confident
    note = coverage_note(cov, "glioma", unsure)
    assert "could not be recognised" in note and "unsure" in note and '"Glioma"' in note
    assert "could not be recognised" in coverage_note(cov, "glioma", acq("t2", "coronal", plane_conf=0.4))


class StandIn:
    """A recogniser that calls a crop FLAIR axial when it is bright, T1 sagittal otherwise."""

    sha256 = "f" * 64

    def __init__(self):
        self.calls = []

    def recognise_crops(self, crops):
        self.calls.append(np.array(crops))
        return [acq("flair", "axial") if c.mean() > 0.5 else acq("t1", "sagittal") for c in crops]


def _train_set() -> SliceSet:
    refs, images = [], []

    def add(source, label, sequence, plane, level):
        refs.append(SliceRef(source, "train", label, "", sequence, plane, f"r{len(refs)}"))
        images.append(np.full((8, 8), level, np.uint8))

    for _ in range(3):
        add("tcga_lgg", "glioma", "flair", "axial", 10)
    add("brats", "glioma", "t2", "coronal", 10)
    add("brats", "notumor", "t2", "coronal", 10)
    for _ in range(2):
        add("fourclass", "glioma", "unknown", "unknown", 200)       # bright -> estimated FLAIR axial
    add("fourclass", "meningioma", "unknown", "unknown", 20)        # dark -> estimated T1 sagittal
    add("figshare", "pituitary", "t1ce", "unknown", 200)           # sequence known, plane not: estimated
    return SliceSet(refs, np.stack(images))


def test_build_coverage_counts_known_and_estimates_the_rest():
    recogniser = StandIn()
    block = build_coverage(_train_set(), recogniser)
    assert block["known"] == [{"class": "glioma", "sequence": "flair", "plane": "axial", "n": 3},
                              {"class": "glioma", "sequence": "t2", "plane": "coronal", "n": 1},
                              {"class": "notumor", "sequence": "t2", "plane": "coronal", "n": 1}]
    assert Counter({(r["class"], r["sequence"], r["plane"]): r["n"] for r in block["estimated"]}) == Counter(
        {("glioma", "flair", "axial"): 2, ("meningioma", "t1", "sagittal"): 1, ("pituitary", "flair", "axial"): 1})
    assert block["unlabelled"] == 4 and block["estimated_by"] == StandIn.sha256
    # only the unlabelled crops were shown to the recogniser, once, as float32 in [0, 1]
    (crops,) = recogniser.calls
    assert crops.shape == (4, 8, 8) and crops.dtype == np.float32
    np.testing.assert_allclose(crops[:, 0, 0], [200 / 255, 200 / 255, 20 / 255, 200 / 255], rtol=1e-6)
    # and the block reads back as the same counts
    cov = Coverage.from_card({"coverage": block})
    assert cov.seen("glioma", "flair", "axial") == (3, 2)
    assert cov.total("glioma") == 6
    assert str(RARE_COUNT) in block["rule"]


def test_build_coverage_without_a_recogniser():
    block = build_coverage(_train_set(), None)
    assert block["estimated"] == [] and block["estimated_by"] is None and block["unlabelled"] == 4
    assert sum(r["n"] for r in block["known"]) == 5


@pytest.mark.parametrize("decision", ["glioma", "notumor"])
def test_note_uses_class_display_names(decision):
    cov = Coverage.from_card(card({}))
    note = coverage_note(cov, decision, acq("flair", "axial"))
    assert {"glioma": "Glioma", "notumor": "No tumour"}[decision] in note
    assert coverage.SEQUENCE_LABELS["flair"] in note
