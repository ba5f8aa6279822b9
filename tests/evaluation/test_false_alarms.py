"""core.evaluation.false_alarms: slice positions from catalogue refs, distances to the lesion, and the
false-alarm table by distance band, on hand-made refs."""
from __future__ import annotations

import numpy as np
import pytest

from core.data.sources import SliceRef
from core.evaluation import false_alarms as fa

G, M, N, P = 0, 1, 2, 3          # glioma, meningioma, notumor, pituitary (core.config.CLASS_NAMES)


def tcga(volume: str, index: int, label: str, sequence: str = "t1") -> SliceRef:
    folder = {"t1": "pre", "t1ce": "post", "flair": "flair"}[sequence]
    return SliceRef("tcga_lgg", "test", label, volume[:12], sequence, "axial",
                    f"tcga_lgg/images/{folder}/{volume}_{index:03d}.jpg")


def brats(case: str, index: int, label: str, sequence: str = "flair", plane: str = "axial") -> SliceRef:
    return SliceRef("brats", "test", label, case, sequence, plane, f"{case}/{sequence}/{plane}/{index}", "brats:wt")


def one_hot(classes: list[int]) -> np.ndarray:
    return np.eye(4)[classes]


def test_volume_position_reads_tcga_and_brats_refs_and_skips_2d_sources():
    assert fa.volume_position(tcga("TCGA_CS_4941_19960909", 7, "glioma")) == ("tcga_lgg:TCGA_CS_4941_19960909:t1", 7)
    assert fa.volume_position(brats("BraTS2021_00031", 62, "notumor", "t2", "coronal")) == \
        ("brats:BraTS2021_00031:t2:coronal", 62)
    flat = SliceRef("fourclass", "val", "glioma", "", "unknown", "unknown", "brain_mri_4class/Training/glioma/x.jpg")
    assert fa.volume_position(flat) is None
    odd = SliceRef("brats", "test", "notumor", "c", "t1", "axial", "c/t1/axial")
    assert fa.volume_position(odd) is None


def test_distances_keep_volumes_sequences_and_planes_apart():
    refs = [tcga("VOL_A", 10, "glioma"), tcga("VOL_A", 12, "glioma"),
            tcga("VOL_A", 3, "notumor"), tcga("VOL_A", 15, "notumor"),
            tcga("VOL_A", 30, "notumor", "flair"),             # no FLAIR tumour slice in this volume
            tcga("VOL_B", 11, "notumor"),                      # another volume: VOL_A's lesion is not its own
            brats("C1", 40, "glioma"), brats("C1", 46, "notumor"),
            brats("C1", 80, "notumor", plane="sagittal")]      # no sagittal tumour slice
    labels = np.array([G, G, N, N, N, N, G, N, N])
    d = fa.lesion_distances(refs, labels)
    assert np.isnan(d[[0, 1, 6]]).all()                        # tumour slices have no distance
    assert d[2] == 7 and d[3] == 3 and d[7] == 6
    assert np.isnan(d[4]) and np.isnan(d[5]) and np.isnan(d[8])


def test_false_alarm_table_counts_each_band():
    refs = [tcga("V", 20, "glioma")] + [tcga("V", 20 + k, "notumor") for k in (1, 2, 4, 8, 9, 15)]
    refs += [brats("C", 50, "glioma"), brats("C", 52, "notumor"), brats("C", 70, "notumor")]
    labels = np.array([G] + [N] * 6 + [G, N, N])
    called = [G,  P, N, G, N, N, M,  G, G, N]                  # decisions: tumour-free ones called tumour or not
    rows = fa.false_alarms_by_distance(refs, labels, one_hot(called))
    table = {(r["source"], r["sequence"], r["distance"]): (r["false_alarms"], r["n"]) for r in rows}
    assert table[("tcga_lgg", "t1", "1-2")] == (1, 2)          # 21 called pituitary, 22 called no tumour
    assert table[("tcga_lgg", "t1", "3-5")] == (1, 1)
    assert table[("tcga_lgg", "t1", "6-10")] == (0, 2)
    assert table[("tcga_lgg", "t1", "11+")] == (1, 1)
    assert table[("brats", "flair", "1-2")] == (1, 1)
    assert table[("brats", "flair", "3-5")] == (0, 0)
    assert table[("brats", "flair", "11+")] == (0, 1)
    rates = {(r["source"], r["distance"]): r["rate"] for r in rows}
    assert rates[("tcga_lgg", "1-2")] == pytest.approx(0.5) and rates[("brats", "3-5")] is None
    assert [r["distance"] for r in rows[:4]] == ["1-2", "3-5", "6-10", "11+"] and len(rows) == 8


def test_false_alarm_table_keeps_sequences_apart():
    refs = [tcga("V", 10, "glioma", "t1"), tcga("V", 11, "notumor", "t1"),
            tcga("V", 10, "glioma", "flair"), tcga("V", 11, "notumor", "flair")]
    rows = fa.false_alarms_by_distance(refs, np.array([G, N, G, N]), one_hot([G, G, G, N]))
    near = {r["sequence"]: (r["false_alarms"], r["n"]) for r in rows if r["distance"] == "1-2"}
    assert near == {"t1": (1, 1), "flair": (0, 1)}


def test_no_volume_sources_give_an_empty_table():
    flat = [SliceRef("figshare", "test", "glioma", "p1", "t1ce", "axial", "figshare_3064/1.mat")]
    assert fa.false_alarms_by_distance(flat, np.array([G]), one_hot([G])) == []
