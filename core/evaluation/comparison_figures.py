"""Plotly figures of the model-comparison page, built from artifact data (dicts and frames in, figures out)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.imaging.viz import CLASS_COLOURS

_MARGIN = dict(l=10, r=10, t=50, b=10)


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], labels: dict[str, str],
                     title: str) -> go.Figure:
    """Counts heat-map (rows truth, columns prediction), each cell also as % of its true class."""
    cm = np.asarray(matrix, dtype=float)
    row_pct = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    text = [[f"{int(c)}<br>{p:.1f} %" for c, p in zip(crow, prow)] for crow, prow in zip(cm, row_pct)]
    names = [labels.get(c, c) for c in classes]
    fig = go.Figure(go.Heatmap(z=row_pct, x=names, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
                               zmin=0, zmax=100, colorbar=dict(title="% of row"),
                               hovertemplate="truth %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="truth", yaxis_autorange="reversed",
                      height=420, margin=_MARGIN)
    return fig


def roc_figure(roc: dict[str, dict], labels: dict[str, str], title: str) -> go.Figure:
    """One-vs-rest ROC curve per class, AUC in the legend, chance diagonal."""
    fig = go.Figure()
    for cls, curve in roc.items():
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", line=dict(color=CLASS_COLOURS.get(cls)),
                                 name=f"{labels.get(cls, cls)} (AUC {curve['auc']:.4f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), name="chance"))
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.01], height=420, margin=_MARGIN,
                      legend=dict(x=0.45, y=0.05))
    return fig


def curves_figure(log: pd.DataFrame, title: str) -> go.Figure:
    """Per-epoch training log: scores (accuracy, Dice) on the left, losses on the right."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("score", "loss"))
    for column in log.columns:
        if column in ("epoch", "lr", "learning_rate"):
            continue
        col = 2 if "loss" in column else 1
        dash = "solid" if column.startswith("val_") else "dot"
        fig.add_trace(go.Scatter(x=log["epoch"], y=log[column], mode="lines+markers", name=column,
                                 line=dict(dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=360, margin=_MARGIN)
    return fig


def overlay_curves_figure(logs: dict[str, pd.DataFrame], column: str, title: str) -> go.Figure:
    """One column (e.g. ``val_accuracy``) of several models' logs on one axis."""
    fig = go.Figure()
    for name, log in logs.items():
        if column in log:
            fig.add_trace(go.Scatter(x=log["epoch"], y=log[column], mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=column, height=360, margin=_MARGIN)
    return fig


#: Marker colours of the trade-off plot, one per model (cycled).
_POINT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf", "#393b79", "#637939")


def tradeoff_figure(table: pd.DataFrame, x: str, y: str, title: str, names: str = "model",
                    x_title: str | None = None) -> go.Figure:
    """Size or speed (``x``) against a score (``y``), one point per evaluated model.

    Models are named in the legend below the plot (one entry per point, its colour and shape), never
    as text beside the points, so names can neither overlap each other nor be clipped at the edges.
    Shipped models (``group == "shipped"``) are circles, the others diamonds.
    """
    rows = table.dropna(subset=[x, y]).reset_index(drop=True)
    fig = go.Figure()
    for k, row in rows.iterrows():
        shipped = row.get("group") == "shipped"
        fig.add_trace(go.Scatter(
            x=[row[x]], y=[row[y]], mode="markers", name=str(row[names]),
            marker=dict(size=13, color=_POINT_COLOURS[k % len(_POINT_COLOURS)],
                        symbol="circle" if shipped else "diamond", line=dict(width=1, color="#333")),
            hovertemplate=f"{row[names]}<br>{x_title or x}: %{{x}}<br>{y}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=x_title or x, yaxis_title=y, height=380 + 22 * ((len(rows) + 1) // 2),
                      margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0, font=dict(size=12)))
    if x == "params":
        fig.update_xaxes(type="log")
    return fig


def reliability_figure(before: dict, after: dict, ece_before: float, ece_after: float, title: str) -> go.Figure:
    """Reliability diagram: accuracy against confidence per bin, before and after temperature scaling."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"),
                             name="perfect calibration"))
    for curve, name, colour in ((before, f"before (ECE {ece_before:.4f})", "#ff7f0e"),
                                (after, f"after temperature scaling (ECE {ece_after:.4f})", "#1f77b4")):
        keep = [i for i, a in enumerate(curve["accuracy"]) if a is not None]
        fig.add_trace(go.Scatter(x=[curve["confidence"][i] for i in keep], y=[curve["accuracy"][i] for i in keep],
                                 mode="lines+markers", name=name, line=dict(color=colour),
                                 text=[f"{curve['counts'][i]} images" for i in keep],
                                 hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{text}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="mean confidence in bin", yaxis_title="accuracy in bin",
                      xaxis_range=[0, 1.01], yaxis_range=[0, 1.01], height=420, margin=_MARGIN)
    return fig


def external_figure(rows: pd.DataFrame, target: float, title: str) -> go.Figure:
    """Sensitivity and specificity per source × sequence cell (bars with 95 % CI whiskers) and the target line.

    ``rows``: columns ``cell, metric, value, low, high`` (:func:`core.evaluation.external_view.chart_rows`).
    """
    fig = go.Figure()
    colours = {"sensitivity": "#d62728", "specificity": "#1f77b4"}
    for metric, part in rows.groupby("metric", sort=False):
        fig.add_trace(go.Bar(
            x=part["cell"], y=part["value"], name=metric, marker_color=colours.get(metric),
            error_y=dict(type="data", symmetric=False, array=part["high"] - part["value"],
                         arrayminus=part["value"] - part["low"]),
            customdata=part[["low", "high"]].to_numpy(),
            hovertemplate="%{x}<br>" + metric + " %{y:.3f} (95 % CI %{customdata[0]:.3f}–%{customdata[1]:.3f})"
                          "<extra></extra>"))
    fig.add_hline(y=target, line_dash="dash", line_color="#2ca02c", annotation_text=f"aim {target:.2f}",
                  annotation_position="bottom right")
    fig.update_layout(title=title, barmode="group", yaxis_title="proportion", yaxis_range=[0, 1.05], height=420,
                      margin=_MARGIN, legend=dict(orientation="h", y=-0.25))
    return fig
