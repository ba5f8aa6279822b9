"""Plotly figures of the model-comparison page, built from artifact data (dicts and frames in, figures out)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.viz import CLASS_COLOURS

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


def tradeoff_figure(table: pd.DataFrame, x: str, y: str, title: str) -> go.Figure:
    """Size or speed (``x``) against a score (``y``), one labelled point per evaluated model."""
    rows = table.dropna(subset=[x, y])
    fig = go.Figure()
    for group, part in rows.groupby("group"):
        fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers+text", text=part["model"], name=group,
                                 textposition="top center", marker=dict(size=12)))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=420, margin=_MARGIN)
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
