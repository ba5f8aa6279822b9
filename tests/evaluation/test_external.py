"""core.evaluation.external: cell metrics on hand-made probabilities, patient-grouped bootstrap CIs, the
worst cell, JSON cleaning, and the benchmark's slice selection on a synthetic data folder."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

import synthetic_sources as syn
from core.evaluation import external

G, M, N, P = 0, 1, 2, 3          # glioma, meningioma, notumor, pituitary (core.config.CLASS_NAMES)


def rows(spec: list[tuple[int, float]]) -> np.ndarray:
    """Probability rows from ``(argmax class, P(no tumour))``: the rest shared by the other classes."""
    out = []
    for cls, p_no in spec:
        row = np.zeros(4)
        row[N] = p_no
        if cls != N:
            row[cls] = 1.0 - p_no
        else:
            others = [c for c in range(4) if c != N]
            row[others] = (1.0 - p_no) / 3
        assert row.argmax() == cls and math.isclose(row.sum(), 1.0)
        out.append(row)
    return np.array(out)


def test_cell_metrics_known_values():
    labels = np.array([G, G, G, M, N, N, N, N])
    probs = rows([(G, 0.1), (G, 0.2), (N, 0.7), (P, 0.3),       # tumours: 3 of 4 called tumour
                  (N, 0.9), (N, 0.8), (N, 0.6), (G, 0.35)])      # tumour-free: 3 of 4 called so
    m = external.cell_metrics(labels, probs)
    assert (m["n"], m["n_tumour"], m["n_no_tumour"]) == (8, 4, 4)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["glioma_accuracy"] == pytest.approx(2 / 3)
    # P(tumour): tumours 0.9 0.8 0.3 0.7 vs tumour-free 0.1 0.2 0.4 0.65 -> 14 of 16 pairs ordered
    assert m["auc"] == pytest.approx(14 / 16)
    assert 0.0 <= m["ece"] <= 1.0
    np.testing.assert_allclose(external.tumour_probability(probs)[:4], [0.9, 0.8, 0.3, 0.7])
    assert external.worst_value(m) == pytest.approx(0.75)


def test_cell_metrics_nan_when_a_cell_has_no_tumour_free_slices():
    m = external.cell_metrics(np.array([M, P, M]), rows([(M, 0.1), (N, 0.9), (M, 0.3)]))
    assert m["n_no_tumour"] == 0
    assert math.isnan(m["specificity"]) and math.isnan(m["auc"]) and math.isnan(m["glioma_accuracy"])
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert external.worst_value(m) == pytest.approx(2 / 3)      # only the defined one counts
    free = external.cell_metrics(np.array([N, N]), rows([(N, 0.9), (G, 0.2)]))
    assert math.isnan(free["sensitivity"]) and free["specificity"] == 0.5
    assert external.worst_value(free) == 0.5
    assert math.isnan(external.worst_value({"sensitivity": float("nan"), "specificity": float("nan")}))
    empty = external.cell_metrics(np.zeros(0, int), np.zeros((0, 4)))
    assert empty["n"] == 0 and math.isnan(empty["accuracy"]) and math.isnan(empty["ece"])


def _two_patient_cell(patients: list[str]):
    """Ten tumour slices: patient A's five all found, patient B's five all missed."""
    labels = np.full(10, G)
    probs = rows([(G, 0.1)] * 5 + [(N, 0.9)] * 5)
    return (np.array(["tcga_lgg"] * 10), np.array(["flair"] * 10), np.array(patients), labels, probs)


def test_cis_are_grouped_by_patient():
    table = external.cell_table(*_two_patient_cell(["A"] * 5 + ["B"] * 5), n_boot=400, seed=3)
    row = table["tcga_lgg/flair"]
    assert row["sensitivity"] == 0.5 and row["patients"] == 2
    # resampling 2 patients: {A, A} -> 1, {B, B} -> 0, {A, B} -> 0.5, so the CI spans everything
    assert row["sensitivity_ci95"] == [0.0, 1.0]
    assert row["accuracy_ci95"] == [0.0, 1.0]
    assert "specificity_ci95" not in row and "auc_ci95" not in row         # undefined metrics get no CI
    # the same slices without patients are resampled one by one: a much narrower interval
    loose = external.cell_table(*_two_patient_cell([""] * 10), n_boot=400, seed=3)["tcga_lgg/flair"]
    lo, hi = loose["sensitivity_ci95"]
    assert 0.0 < lo <= 0.5 <= hi < 1.0
    assert loose["patients"] is None


def test_cis_contain_the_point_estimate():
    rng = np.random.default_rng(0)
    n = 60
    labels = rng.choice([G, M, N], size=n)
    probs = rng.dirichlet(np.ones(4), size=n)
    patients = np.array([f"p{i // 4}" for i in range(n)])
    table = external.cell_table(np.array(["brats"] * n), np.array(["t2"] * n), patients, labels, probs,
                                n_boot=120, seed=1)
    row = table["brats/t2"]
    for name in external.CI_METRICS:
        lo, hi = row[f"{name}_ci95"]
        assert lo <= row[name] <= hi, name
    assert row["patients"] == 15


def test_cell_table_groups_and_orders_cells_and_finds_the_worst():
    src = np.array(["brats", "tcga_lgg", "brats", "brats", "tcga_lgg", "brats"])
    seq = np.array(["flair", "t1", "t1", "flair", "t1", "t1"])
    pat = np.array(["c1", "p1", "c1", "c2", "p2", "c2"])
    labels = np.array([G, G, N, N, N, G])
    probs = rows([(G, 0.2), (N, 0.6), (N, 0.9), (G, 0.3), (N, 0.8), (G, 0.1)])
    table = external.cell_table(src, seq, pat, labels, probs)
    assert list(table) == ["tcga_lgg/t1", "brats/t1", "brats/flair"]   # catalogue order of sources, sequences
    assert table["brats/flair"]["n"] == 2 and table["brats/flair"]["patients"] == 2
    assert (table["brats/flair"]["sensitivity"], table["brats/flair"]["specificity"]) == (1.0, 0.0)
    assert (table["brats/t1"]["sensitivity"], table["brats/t1"]["specificity"]) == (1.0, 1.0)
    assert (table["tcga_lgg/t1"]["sensitivity"], table["tcga_lgg/t1"]["specificity"]) == (0.0, 1.0)
    assert table["brats/t1"]["worst"] == 1.0
    assert not any(k.endswith("_ci95") for row in table.values() for k in row)   # n_boot=0: no CIs
    key, value = external.worst_cell(table)
    assert value == 0.0 and key in {"tcga_lgg/t1", "brats/flair"}
    table["tcga_lgg/t1"]["worst"] = float("nan")                        # undefined cells are skipped
    assert external.worst_cell(table) == ("brats/flair", 0.0)
    key, value = external.worst_cell({"a/b": {"worst": float("nan")}})
    assert key == "" and math.isnan(value)


def test_patient_table_counts_each_patients_misses_hardest_first():
    src = np.array(["brats"] * 7 + ["tcga_lgg"])
    seq = np.array(["t1ce"] * 7 + ["t1"])
    pat = np.array(["c1", "c1", "c1", "c2", "c2", "c2", "c2", "p1"])
    labels = np.array([G, G, N, G, G, G, N, G])
    # c1: 1 of 2 tumours found, its tumour-free slice left alone; c2: 3 of 3 found, 1 false alarm of 1
    probs = rows([(G, 0.1), (N, 0.8), (N, 0.9), (G, 0.3), (G, 0.2), (G, 0.4), (G, 0.1), (N, 0.9)])
    table = external.patient_table(src, seq, pat, labels, probs)
    assert list(table) == ["tcga_lgg/t1", "brats/t1ce"]
    assert [r["patient"] for r in table["brats/t1ce"]] == ["c2", "c1"]   # specificity 0 before sensitivity 0.5
    c2, c1 = table["brats/t1ce"]
    assert (c1["found"], c1["n_tumour"], c1["false_alarms"], c1["n_no_tumour"]) == (1, 2, 0, 1)
    assert (c1["sensitivity"], c1["specificity"], c1["worst"]) == (0.5, 1.0, 0.5)
    assert (c2["found"], c2["n_tumour"], c2["false_alarms"], c2["n_no_tumour"]) == (3, 3, 1, 1) and c2["worst"] == 0.0
    only = table["tcga_lgg/t1"][0]
    assert only["found"] == 0 and only["n_no_tumour"] == 0 and math.isnan(only["specificity"]) and only["worst"] == 0.0


def test_json_table_rounds_and_turns_nan_into_null():
    table = {"tcga_lgg/t1": {"source": "tcga_lgg", "n": 7, "sensitivity": 2 / 3, "specificity": float("nan"),
                             "auc": np.float64(0.123456), "sensitivity_ci95": [0.1234567, float("nan")],
                             "patients": None, "nested": {"x": float("inf")}}}
    out = external.json_table(table)
    row = out["tcga_lgg/t1"]
    assert row["sensitivity"] == 0.6667 and row["auc"] == 0.1235
    assert row["specificity"] is None and row["nested"]["x"] is None
    assert row["sensitivity_ci95"] == [0.1235, None]
    assert row["n"] == 7 and isinstance(row["n"], int) and row["patients"] is None and row["source"] == "tcga_lgg"
    json.dumps(out, allow_nan=False)                                    # strict JSON
    assert math.isnan(table["tcga_lgg/t1"]["specificity"])               # the input is left alone


# --------------------------------------------------------------------------- benchmark slices


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return syn.build_tree(tmp_path_factory.mktemp("data"))


@pytest.fixture
def isolated(tree, tmp_path, monkeypatch):
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    return tree


def test_benchmark_slices_held_out_split_brats_axial_only(isolated):
    slices = external.benchmark_slices("test", 32, isolated, ["tcga_lgg", "brats"])
    assert set(slices.column("split")) == {"test"}
    counts = Counter(zip(slices.column("source"), slices.column("plane"), slices.column("label")))
    # tcga_lgg fold 4: 3 glioma rows + 2 tumour-free rows, 3 sequences each
    assert counts[("tcga_lgg", "axial", "glioma")] == 9 and counts[("tcga_lgg", "axial", "notumor")] == 6
    # BraTS: only the held-out case, axial only: 6 glioma + 4 tumour-free slices x 4 sequences
    assert counts[("brats", "axial", "glioma")] == 24 and counts[("brats", "axial", "notumor")] == 16
    assert len(slices) == 55 and slices.x.shape == (55, 32, 32)
    assert set(slices.where(source="brats").column("patient")) == {"BraTS2021_00003"}
    assert set(slices.where(source="tcga_lgg").column("patient")) == {"P04", "P05"}
    assert list(dict.fromkeys(slices.column("source"))) == ["tcga_lgg", "brats"]


def test_benchmark_slices_validation_split(isolated):
    slices = external.benchmark_slices("val", 32, isolated, ["brats", "tcga_lgg"])
    assert set(slices.column("split")) == {"val"} and set(slices.column("plane")) == {"axial"}
    assert set(slices.where(source="brats").column("patient")) == {"BraTS2021_00002"}
    assert Counter(slices.column("source")) == {"brats": 40, "tcga_lgg": 9}
    with pytest.raises(ValueError, match="unknown benchmark split"):
        external.benchmark_slices("train", 32, isolated, ["tcga_lgg"])


def test_benchmark_table_end_to_end_on_synthetic_slices(isolated):
    """A stand-in classifier that calls everything "no tumour": sensitivity 0, specificity 1 in every cell."""
    slices = external.benchmark_slices("test", 32, isolated, ["tcga_lgg", "brats"])
    probs = rows([(N, 0.97)] * len(slices))
    table = external.cell_table(slices.column("source"), slices.column("sequence"), slices.column("patient"),
                                slices.labels(), probs)
    assert list(table) == ["tcga_lgg/t1", "tcga_lgg/t1ce", "tcga_lgg/flair",
                           "brats/t1", "brats/t1ce", "brats/t2", "brats/flair"]
    assert all(r["sensitivity"] == 0.0 and r["specificity"] == 1.0 for r in table.values())
    assert table["tcga_lgg/flair"]["patients"] == 2 and table["brats/t2"]["n"] == 10
    assert external.worst_cell(table)[1] == 0.0
    pooled = external.cell_table(slices.column("source"), [external.ALL_SEQUENCES] * len(slices),
                                 slices.column("patient"), slices.labels(), probs)
    assert list(pooled) == ["tcga_lgg/all", "brats/all"]
    assert pooled["brats/all"]["n"] == sum(table[f"brats/{q}"]["n"] for q in ("t1", "t1ce", "t2", "flair"))
    assert pooled["tcga_lgg/all"]["patients"] == table["tcga_lgg/flair"]["patients"]
    by_patient = external.patient_table(slices.column("source"), slices.column("sequence"), slices.column("patient"),
                                        slices.labels(), probs)
    assert list(by_patient) == list(table)
    for key, patients in by_patient.items():
        assert len(patients) == table[key]["patients"]
        assert sum(r["n_tumour"] + r["n_no_tumour"] for r in patients) == table[key]["n"]
        assert all(r["found"] == 0 and r["false_alarms"] == 0 for r in patients)  # everything "no tumour"


class _Outline:
    """A stand-in segmenter that outlines nothing, or the whole slice."""

    name, sha256 = "resunet", "b" * 64

    def __init__(self, everything: bool):
        self.everything = everything

    def segment(self, image, spacing_mm):
        mask = np.full(image.shape, self.everything, dtype=bool)
        return mask, mask.astype(np.float32)


@pytest.mark.parametrize("everything", [False, True])
def test_external_segmentation_scores_tumour_slices_and_counts_clean_tumour_free_ones(isolated, monkeypatch,
                                                                                   everything):
    from core.evaluation.external_segmentation import evaluate_external_segmentation
    from core.slices.segment import Segmenter

    monkeypatch.setattr(Segmenter, "load", classmethod(lambda cls, name="resunet", weights_dir=None: _Outline(everything)))
    result = evaluate_external_segmentation("test", data_dir=isolated, n_boot=20, sources=["tcga_lgg", "brats"])
    cells = result["cells"]
    assert set(cells) == {"tcga_lgg/t1", "tcga_lgg/t1ce", "tcga_lgg/flair", "brats/t1", "brats/t1ce", "brats/t2",
                          "brats/flair"}
    assert result["n"] == 9 + 24  # tumour slices only: 3 tcga rows and 6 BraTS slices per sequence
    tcga, brats_t1ce = cells["tcga_lgg/flair"]["resunet"], cells["brats/t1ce"]["resunet"]
    assert tcga["n"] == 3 and tcga["n_tumour_free"] == 2 and brats_t1ce["n_tumour_free"] == 4
    assert cells["brats/t1ce"]["target"] == "TC" and cells["brats/flair"]["target"] == "WT"
    if everything:
        assert all(c["resunet"]["clean"] == 0.0 and c["resunet"]["found"] == 1.0 for c in cells.values())
        # whole tumour (12 x 12) against the whole 40 x 40 slice
        assert cells["brats/flair"]["resunet"]["mean_dice"] == pytest.approx(2 * 144 / (144 + 1600), abs=1e-3)
    else:
        assert all(c["resunet"]["clean"] == 1.0 and c["resunet"]["mean_dice"] == 0.0 for c in cells.values())
