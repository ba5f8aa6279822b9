"""core.evaluation.comparison_figures: the Compare models page's Plotly figures carry the numbers they are given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluation import comparison_figures as figs
from core.imaging.viz import CLASS_COLOURS

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
LABELS = {"glioma": "Glioma", "meningioma": "Meningioma", "notumor": "No tumour", "pituitary": "Pituitary"}


# ----------------------------------------------------------------------------- confusion
def test_confusion_cells_are_row_percentages_with_counts_in_the_text():
    matrix = [[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0]]
    fig = figs.confusion_figure(matrix, CLASSES, LABELS, "Confusion")
    (heat,) = fig.data
    assert heat.type == "heatmap"
    assert list(heat.x) == list(heat.y) == [LABELS[c] for c in CLASSES]
    z = np.asarray(heat.z)
    np.testing.assert_allclose(z[0], [80, 20, 0, 0])
    np.testing.assert_allclose(z[1], [25, 75, 0, 0])
    np.testing.assert_allclose(z[2], [0, 0, 100, 0])
    np.testing.assert_allclose(z[3], [0, 0, 0, 0])                  # an empty row stays 0, no division by zero
    assert heat.text[0][0] == "8<br>80.0 %" and heat.text[1][1] == "3<br>75.0 %" and heat.text[3][3] == "0<br>0.0 %"
    assert (heat.zmin, heat.zmax) == (0, 100)
    assert fig.layout.title.text == "Confusion"
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "truth"
    assert fig.layout.yaxis.autorange == "reversed"                 # first class on top


def test_confusion_falls_back_to_the_class_name_without_a_label():
    fig = figs.confusion_figure([[1, 0], [0, 1]], ["a", "glioma"], {"glioma": "Glioma"}, "t")
    assert list(fig.data[0].x) == ["a", "Glioma"]


# ----------------------------------------------------------------------------- ROC
def test_roc_has_one_curve_per_class_with_its_auc_and_a_chance_line():
    roc = {"glioma": {"fpr": [0, 0.1, 1], "tpr": [0, 0.9, 1], "auc": 0.95},
           "notumor": {"fpr": [0, 0.5, 1], "tpr": [0, 0.5, 1], "auc": 0.5}}
    fig = figs.roc_figure(roc, LABELS, "ROC")
    assert [t.name for t in fig.data] == ["Glioma (AUC 0.9500)", "No tumour (AUC 0.5000)", "chance"]
    assert list(fig.data[0].x) == [0, 0.1, 1] and list(fig.data[0].y) == [0, 0.9, 1]
    assert fig.data[0].line.color == CLASS_COLOURS["glioma"] and fig.data[1].line.color == CLASS_COLOURS["notumor"]
    assert list(fig.data[2].x) == [0, 1] and list(fig.data[2].y) == [0, 1]
    assert list(fig.layout.xaxis.range) == [0, 1]


# ----------------------------------------------------------------------------- training curves
@pytest.fixture()
def log() -> pd.DataFrame:
    return pd.DataFrame({"epoch": [1, 2, 3], "accuracy": [0.5, 0.7, 0.8], "val_accuracy": [0.45, 0.6, 0.75],
                         "loss": [1.2, 0.8, 0.6], "val_loss": [1.3, 0.9, 0.7], "lr": [1e-3, 1e-3, 5e-4]})


def test_curves_put_scores_left_losses_right_and_skip_the_learning_rate(log):
    fig = figs.curves_figure(log, "Training")
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"accuracy", "val_accuracy", "loss", "val_loss"}
    assert by_name["accuracy"].xaxis == "x" and by_name["val_accuracy"].xaxis == "x"
    assert by_name["loss"].xaxis == "x2" and by_name["val_loss"].xaxis == "x2"
    assert list(by_name["val_loss"].y) == [1.3, 0.9, 0.7] and list(by_name["loss"].x) == [1, 2, 3]
    assert by_name["val_accuracy"].line.dash == "solid" and by_name["accuracy"].line.dash == "dot"


def test_overlay_curves_draw_one_column_of_each_model_that_has_it(log):
    other = pd.DataFrame({"epoch": [1, 2], "val_accuracy": [0.3, 0.9]})
    no_column = pd.DataFrame({"epoch": [1, 2], "val_dice": [0.1, 0.2]})
    fig = figs.overlay_curves_figure({"xception": log, "vgg19": other, "resunet": no_column}, "val_accuracy", "Val")
    assert [t.name for t in fig.data] == ["xception", "vgg19"]
    assert list(fig.data[0].y) == [0.45, 0.6, 0.75] and list(fig.data[1].y) == [0.3, 0.9]
    assert fig.layout.yaxis.title.text == "val_accuracy"


# ----------------------------------------------------------------------------- trade-off
@pytest.fixture()
def table() -> pd.DataFrame:
    return pd.DataFrame({"model": ["Stacking ensemble", "Xception", "VGG19", "Untimed"],
                         "params": [2.0e7, 2.1e7, 2.0e7, 1.0e6],
                         "size MB": [80.0, 84.0, 79.0, 4.0],
                         "accuracy": [0.98, 0.96, 0.95, np.nan],
                         "group": ["shipped", "comparison", "comparison", "comparison"]})


def test_tradeoff_has_one_named_point_per_model_with_its_numbers(table):
    fig = figs.tradeoff_figure(table, "size MB", "accuracy", "Size vs accuracy")
    assert [t.name for t in fig.data] == ["Stacking ensemble", "Xception", "VGG19"]   # the NaN row is dropped
    assert [t.x[0] for t in fig.data] == [80.0, 84.0, 79.0]
    assert [t.y[0] for t in fig.data] == [0.98, 0.96, 0.95]
    assert [t.marker.symbol for t in fig.data] == ["circle", "diamond", "diamond"]
    assert len({t.marker.color for t in fig.data}) == 3
    assert fig.layout.xaxis.title.text == "size MB" and fig.layout.yaxis.title.text == "accuracy"
    assert fig.layout.xaxis.type is None                            # linear unless x is the parameter count


def test_tradeoff_uses_a_log_axis_for_parameters_and_the_given_axis_title(table):
    fig = figs.tradeoff_figure(table, "params", "accuracy", "t", x_title="parameters")
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "parameters"
    assert "parameters: %{x}" in fig.data[0].hovertemplate


# ----------------------------------------------------------------------------- reliability
def test_reliability_skips_empty_bins_and_names_the_ece():
    before = {"confidence": [0.2, 0.5, 0.9], "accuracy": [0.1, None, 0.7], "counts": [4, 0, 30]}
    after = {"confidence": [0.2, 0.5, 0.9], "accuracy": [0.2, 0.5, 0.88], "counts": [4, 2, 28]}
    fig = figs.reliability_figure(before, after, 0.0812, 0.0123, "Reliability")
    diagonal, b, a = fig.data
    assert diagonal.name == "perfect calibration" and list(diagonal.x) == [0, 1]
    assert b.name == "before (ECE 0.0812)" and a.name == "after temperature scaling (ECE 0.0123)"
    assert list(b.x) == [0.2, 0.9] and list(b.y) == [0.1, 0.7] and list(b.text) == ["4 images", "30 images"]
    assert list(a.x) == [0.2, 0.5, 0.9] and list(a.y) == [0.2, 0.5, 0.88]


# ----------------------------------------------------------------------------- external benchmark
def test_external_bars_have_the_values_their_intervals_and_the_target_line():
    rows = pd.DataFrame({"cell": ["TCGA · T1ce", "UPENN · FLAIR", "TCGA · T1ce", "UPENN · FLAIR"],
                         "metric": ["sensitivity", "sensitivity", "specificity", "specificity"],
                         "value": [0.9, 0.6, 0.8, 0.95], "low": [0.85, 0.5, 0.7, 0.9], "high": [0.95, 0.7, 0.85, 1.0]})
    fig = figs.external_figure(rows, 0.8, "External")
    sens, spec = fig.data
    assert (sens.type, sens.name, spec.name) == ("bar", "sensitivity", "specificity")
    assert list(sens.x) == ["TCGA · T1ce", "UPENN · FLAIR"] and list(sens.y) == [0.9, 0.6]
    assert list(spec.y) == [0.8, 0.95]
    np.testing.assert_allclose(sens.error_y.array, [0.05, 0.1])    # high − value
    np.testing.assert_allclose(sens.error_y.arrayminus, [0.05, 0.1])  # value − low
    np.testing.assert_allclose(spec.error_y.array, [0.05, 0.05])
    np.testing.assert_allclose(np.asarray(spec.customdata), [[0.7, 0.85], [0.9, 1.0]])
    assert sens.marker.color != spec.marker.color
    (line,) = fig.layout.shapes
    assert line.y0 == line.y1 == 0.8
    assert fig.layout.annotations[0].text == "aim 0.80"
    assert fig.layout.barmode == "group"
