"""The external benchmark shaped for the Compare models page: tables, weakest cell, chart rows, cross-check."""
from __future__ import annotations

import json

import pytest

from core.evaluation import external_view as ev
from stand_ins import external_report


def test_cells_table_formats_values_with_intervals_and_dashes():
    table = ev.cells_table(external_report()).set_index(["source", "sequence"])
    flair = table.loc[("TCGA-LGG", "FLAIR")]
    assert flair["sensitivity (95 % CI)"] == "0.712 (0.634–0.781)"
    assert flair["specificity (95 % CI)"] == "0.958 (0.930–0.980)"
    assert flair["slices"] == "400" and flair["patients"] == "12" and flair["tumour / tumour-free"] == "150 / 250"
    assert flair["glioma accuracy"] == "0.802" and flair["AUC"] == "0.931 (0.900–0.960)" and flair["ECE"] == "0.042"
    assert flair["weakest"] == "◀ weakest" and table.loc[("TCGA-LGG", "T1"), "weakest"] == ""
    brats = table.loc[("BraTS 2021", "T2")]
    assert brats["specificity (95 % CI)"] == "—" and brats["AUC"] == "—"
    assert brats["tumour / tumour-free"] == "150 / 0"
    assert "None" not in table.to_string() and "nan" not in table.to_string()


def test_sources_table_pools_sequences_per_source_and_is_empty_for_older_reports():
    table = ev.sources_table(external_report()).set_index("source")
    assert list(table.index) == ["TCGA-LGG", "BraTS 2021"]
    assert "sequence" not in table.columns and "weakest" not in table.columns
    tcga = table.loc["TCGA-LGG"]
    assert tcga["ECE"] == "0.061" and tcga["slices"] == "800" and tcga["tumour / tumour-free"] == "300 / 500"
    assert tcga["specificity (95 % CI)"] == "0.931 (0.910–0.950)"
    assert table.loc["BraTS 2021", "specificity (95 % CI)"] == "—"
    older = {k: v for k, v in external_report().items() if k != "by_source"}
    assert ev.sources_table(older).empty


def test_worst_sentence_names_the_cell_its_weaker_metric_and_the_aim():
    text = ev.worst_sentence(external_report())
    assert "**TCGA-LGG · FLAIR**: sensitivity 0.712 (0.634–0.781), below the 0.90 aim" in text
    assert "tumour slices the app called tumour-free" in text
    val = ev.worst_sentence(external_report("val"))
    assert "**TCGA-LGG · T1**: specificity 0.904 (0.870–0.940), at or above the 0.90 aim" in val
    assert "no weakest result" in ev.worst_sentence({"cells": {}, "worst_cell": ""})
    assert ev.below_target(external_report()) and not ev.below_target(external_report("val"))
    assert not ev.below_target({"worst": None})


def test_hardest_patient_sentence_names_the_patient_with_most_of_the_weakest_cells_errors():
    report = external_report()
    assert ev.hardest_patient_sentence(report) == (
        "21 of its 42 missed tumour slices are one patient's (TCGA_A: 9 of 30 tumour slices found), "
        "among 2 patients in the cell.")
    # a cell weakest on specificity counts false alarms instead
    report["cells"]["tcga_lgg/flair"].update(sensitivity=0.99, specificity=0.7)
    assert ev.hardest_patient_sentence(report) == (
        "9 of its 10 false alarms are one patient's (TCGA_B: 9 of 230 tumour-free slices called tumour), "
        "among 2 patients in the cell.")
    assert ev.hardest_patient_sentence({**report, "by_patient": {}}) == ""   # artifacts written before it
    assert ev.hardest_patient_sentence(external_report("val")) == ""         # no figures for that cell


def test_chart_rows_leave_out_missing_metrics_and_keep_intervals():
    rows = ev.chart_rows(external_report())
    assert len(rows) == 5                                      # BraTS T2 has no specificity
    flair = rows[(rows.cell == "TCGA-LGG · FLAIR") & (rows.metric == "sensitivity")].iloc[0]
    assert (flair.value, flair.low, flair.high) == (0.712, 0.634, 0.781)
    assert ev.chart_rows({"cells": {}}).empty


def test_crosscheck_and_members():
    report = external_report()
    cross = ev.crosscheck_table(report).set_index("cell")
    assert cross.loc["TCGA-LGG · FLAIR", "of them flagged as possible lesions"] == "17"
    assert cross.loc["TCGA-LGG · FLAIR", "false alarms"] == "6 of 250 tumour-free"
    assert cross.loc["TCGA-LGG · FLAIR", "sensitivity before → after"] == "0.712 → 0.825"
    assert "BraTS 2021 · T2" not in cross.index
    assert ev.crosscheck_totals(report) == {"missed": 48, "rescued": 19, "false_alarms": 7, "tumour_free": 500}
    assert ev.rule_text(report["crosscheck_rule"]) == ("a region is flagged when its mean tumour probability is at "
                                                       "least 0.80 and it covers at least 0.5 % of the image")
    members = ev.members_table(report).set_index("member")
    assert members.loc["resnet_compact", "weakest cell"] == "TCGA-LGG · FLAIR"
    assert members.loc["resnet_compact", "lower of sensitivity and specificity"] == "0.654"
    assert members.loc["mobilenet_compact", "specificity there"] == "—"


def test_false_alarm_table_pivots_sources_by_distance():
    table = ev.false_alarm_table(external_report()).set_index("cell")
    assert list(table.index) == ["TCGA-LGG · T1-CE", "BraTS 2021 · FLAIR"]
    assert table.loc["TCGA-LGG · T1-CE", "1-2 slices away"] == "0.55 (22 of 40)"
    assert table.loc["TCGA-LGG · T1-CE", "11+ slices away"] == "0.10 (6 of 60)"
    assert table.loc["BraTS 2021 · FLAIR", "1-2 slices away"] == "no slices"  # none in that band: no rate
    assert ev.false_alarm_table({"cells": {}}).empty


@pytest.mark.parametrize("value, ci, text", [(None, None, "—"), (float("nan"), [0.1, 0.2], "—"),
                                             (0.5, None, "0.500"), (0.5, [None, 0.6], "0.500"),
                                             (0.5, [0.4, 0.6], "0.500 (0.400–0.600)")])
def test_fmt_ci(value, ci, text):
    assert ev.fmt_ci(value, ci) == text


def test_files_and_stale_versions(tmp_path):
    assert ev.available(tmp_path) == [] and ev.load(tmp_path) is None
    (tmp_path / "external_val.json").write_text(json.dumps(external_report("val")))
    assert ev.available(tmp_path) == ["val"] and ev.load(tmp_path, "val")["split"] == "val"
    (tmp_path / "external.json").write_text(json.dumps(external_report()))
    assert ev.available(tmp_path) == ["test", "val"]
    report = ev.load(tmp_path)
    assert ev.stale_models(report, {"stacking_ensemble": "0" * 64}) == []
    assert ev.stale_models(report, {"stacking_ensemble": "1" * 64}) == ["stacking_ensemble"]


def test_segmentation_table_scores_outlines_by_cell_and_counts_clean_slices(tmp_path):
    report = {"cells": {
        "brats/t1ce": {"source": "brats", "sequence": "t1ce", "target": "TC",
                       "resunet": {"n": 96, "mean_dice": 0.1061, "found": 1.0, "mean_dice_ci95": [0.03, 0.27],
                                   "n_tumour_free": 128, "clean": 0.0547}},
        "figshare/t1ce": {"source": "figshare", "sequence": "t1ce", "target": "expert mask",
                          "resunet": {"n": 206, "mean_dice": 0.619, "found": 0.97, "n_tumour_free": 0, "clean": None}},
        "tcga_lgg/flair": {"source": "tcga_lgg", "sequence": "flair", "target": "expert mask",
                           "resunet": {"n": 373, "mean_dice": 0.443, "found": 0.92}}}}   # written before `clean`
    table = ev.segmentation_table(report).set_index("cell")
    brats = table.loc["BraTS 2021 · T1-CE"]
    assert brats["region"] == "tumour core" and brats["mean Dice (95 % CI)"] == "0.106 (0.030–0.270)"
    assert brats["outlined (tumour)"] == "1.00 of 96" and brats["left clean (tumour-free)"] == "0.05 of 128"
    figshare = table.loc["figshare (held-out fold) · T1-CE"]
    assert figshare["region"] == "expert outline" and figshare["left clean (tumour-free)"] == "—"
    assert table.loc["TCGA-LGG · FLAIR", "left clean (tumour-free)"] == "—"
    assert ev.segmentation_table({}).empty
    assert ev.load_segmentation(tmp_path) is None
    (tmp_path / ev.SEGMENTATION_FILE).write_text(json.dumps(report))
    assert ev.load_segmentation(tmp_path) == report
