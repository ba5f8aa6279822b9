"""Pictures and tables of a BraTS case for the Explore page (no Streamlit).

2D views are RGB ``uint8`` arrays (fast to send as images): a windowed slice from
:func:`core.volumes.views.slice_view`, the label map blended on it (per-label colour and opacity, filled
or as contours), resampled to square pixels and marked with the shared cursor. Tables are lists
of dicts (one row per label or region) and figures are ``plotly.graph_objects.Figure``.

The cursor is a voxel ``(x, y, z)`` of the canonical RAS volume: the axial view shows slice
``z`` with the cursor at ``(x, y)``, the coronal view slice ``y`` at ``(x, z)`` and the sagittal
view slice ``x`` at ``(y, z)``.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import ImageColor
from skimage.segmentation import find_boundaries
from skimage.transform import resize

from core import config
from core.volumes.mesh import brain_surface, region_mesh
from core.volumes.case import Case
from core.volumes.regions import LABEL_VOLUME_GROUPS, label_volumes_cm3
from core.volumes.views import PLANES, apply_window, largest_tumour_slice, slice_view, view_spacing

__all__ = [
    "LABELS",
    "PART_DESCRIPTIONS",
    "LEGEND_NAMES",
    "EMPTY_CELLS",
    "empty_cell_notes",
    "DEFAULT_COLOURS",
    "DEFAULT_OPACITY",
    "OverlayStyle",
    "Surface",
    "hex_to_rgb",
    "overlay_labels",
    "cursor_in_view",
    "square_pixels",
    "draw_cursor",
    "render_view",
    "default_cursor",
    "tumour_cursor",
    "case_summary",
    "volume_rows",
    "agreement_rows",
    "rows_csv",
    "volumes_figure",
    "case_surfaces",
    "surfaces_figure",
]

#: The three BraTS labels (project numbering) by display name.
LABELS: dict[str, int] = {name: value for value, name in config.BRATS_LABELS.items()}
#: What each label and region means, for tables and legends.
PART_DESCRIPTIONS: dict[str, str] = {
    "NCR": "necrotic / non-enhancing tumour core (label 1)",
    "ED": "peritumoral oedema (label 2)",
    "ET": "enhancing tumour (label 4)",
    "WT": "whole tumour: NCR + ED + ET",
    "TC": "tumour core: NCR + ET",
}
#: Default overlay colours (hex) and opacities of the labels.
DEFAULT_COLOURS: dict[str, str] = {"NCR": "#ff3b30", "ED": "#30d158", "ET": "#ffd60a"}
DEFAULT_OPACITY: dict[str, float] = {"NCR": 0.6, "ED": 0.4, "ET": 0.6}
#: Opacity of each label's surface in the 3D view (oedema translucent so the core shows).
SURFACE_OPACITY: dict[str, float] = {"NCR": 0.8, "ED": 0.25, "ET": 0.9}
CURSOR_RGB: tuple[int, int, int] = (0, 190, 255)
BRAIN_RGB = "#b0b0b0"


@dataclass(frozen=True)
class OverlayStyle:
    """How labels are drawn: colours (hex) and opacities per label name, fill or contours."""

    colours: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_COLOURS))
    opacity: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_OPACITY))
    contour: bool = False
    visible: bool = True


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` (or any colour PIL knows) -> ``(r, g, b)``."""
    rgb = ImageColor.getrgb(colour)
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


# --------------------------------------------------------------------------- 2D views


def overlay_labels(grey: np.ndarray, labels: np.ndarray | None, style: OverlayStyle) -> np.ndarray:
    """``(H, W, 3)`` uint8: a uint8 slice with its label map blended in.

    Filled labels blend with their opacity; in contour mode only each label's inner boundary
    is drawn, at twice the opacity (capped at 1) so thin outlines stay visible.
    """
    rgb = np.repeat(np.asarray(grey, dtype=np.uint8)[..., None], 3, axis=2)
    if labels is None or not style.visible:
        return rgb
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"labels {labels.shape} and slice {rgb.shape[:2]} differ in size")
    out = rgb.astype(np.float32)
    for name, value in LABELS.items():
        mask = labels == value
        if not mask.any():
            continue
        alpha = float(np.clip(style.opacity.get(name, DEFAULT_OPACITY[name]), 0.0, 1.0))
        if style.contour:
            mask = find_boundaries(mask, mode="inner")
            alpha = min(1.0, 2.0 * alpha)
        colour = np.asarray(hex_to_rgb(style.colours.get(name, DEFAULT_COLOURS[name])), dtype=np.float32)
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def cursor_in_view(shape: Sequence[int], plane: str, cursor: Sequence[int]) -> tuple[int, int]:
    """``(row, col)`` of the cursor voxel in :func:`core.volumes.views.slice_view` of ``plane``."""
    nx, ny, nz = (int(s) for s in shape[:3])
    x, y, z = (int(c) for c in cursor)
    if plane == "axial":
        return ny - 1 - y, nx - 1 - x
    if plane == "coronal":
        return nz - 1 - z, nx - 1 - x
    if plane == "sagittal":
        return nz - 1 - z, y
    raise ValueError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.")


def _display_shape(shape: tuple[int, int], pixel_mm: tuple[float, float], min_side: int) -> tuple[int, int]:
    rows, cols = shape
    finest = min(pixel_mm)
    target = (max(1, round(rows * pixel_mm[0] / finest)), max(1, round(cols * pixel_mm[1] / finest)))
    factor = max(1, math.ceil(min_side / max(target))) if min_side else 1
    return target[0] * factor, target[1] * factor


def square_pixels(rgb: np.ndarray, pixel_mm: tuple[float, float], min_side: int = 0) -> np.ndarray:
    """Resample an ``(H, W, 3)`` view so pixels are square in mm (nearest neighbour).

    With ``min_side`` the result is also enlarged by a whole factor until its longer side
    reaches it, so small volumes and the cursor lines stay crisp when the browser scales them.
    """
    target = _display_shape(rgb.shape[:2], pixel_mm, min_side)
    if target == rgb.shape[:2]:
        return rgb
    out = resize(rgb, (*target, rgb.shape[2]), order=0, preserve_range=True, anti_aliasing=False)
    return out.astype(np.uint8)


def draw_cursor(rgb: np.ndarray, row: float, col: float, colour: tuple[int, int, int] = CURSOR_RGB,
                gap: int = 4) -> np.ndarray:
    """A copy of ``rgb`` with a one-pixel crosshair through ``(row, col)``, open around the point."""
    out = rgb.copy()
    h, w = out.shape[:2]
    r, c = int(round(row)), int(round(col))
    colour_arr = np.asarray(colour, dtype=np.uint8)
    if 0 <= r < h:
        for lo, hi in ((0, c - gap), (c + gap + 1, w)):
            if hi > lo:
                out[r, max(lo, 0):min(hi, w)] = colour_arr
    if 0 <= c < w:
        for lo, hi in ((0, r - gap), (r + gap + 1, h)):
            if hi > lo:
                out[max(lo, 0):min(hi, h), c] = colour_arr
    return out


def render_view(volume: np.ndarray, labels: np.ndarray | None, plane: str, cursor: Sequence[int],
                window: tuple[float, float], style: OverlayStyle, spacing_mm: Sequence[float],
                show_cursor: bool = True, min_side: int = 256) -> np.ndarray:
    """The ``plane`` view through the cursor: windowed slice, labels, square pixels, crosshair."""
    index = int(cursor[PLANES[plane]])
    grey = apply_window(slice_view(volume, plane, index), *window)
    lab = slice_view(labels, plane, index) if labels is not None else None
    rgb = overlay_labels(grey, lab, style)
    shown = square_pixels(rgb, view_spacing(tuple(spacing_mm), plane), min_side)
    if not show_cursor:
        return shown
    row, col = cursor_in_view(volume.shape, plane, cursor)
    sr, sc = shown.shape[0] / rgb.shape[0], shown.shape[1] / rgb.shape[1]
    return draw_cursor(shown, (row + 0.5) * sr - 0.5, (col + 0.5) * sc - 0.5, gap=max(3, round(2 * max(sr, sc))))


def default_cursor(shape: Sequence[int]) -> tuple[int, int, int]:
    """The centre voxel."""
    return int(shape[0]) // 2, int(shape[1]) // 2, int(shape[2]) // 2


def tumour_cursor(labels: np.ndarray | None, shape: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Cursor on the largest whole-tumour slice of each plane; the centre without a tumour."""
    if labels is None or not np.any(labels):
        return default_cursor(shape if shape is not None else np.shape(labels))
    return (largest_tumour_slice(labels, "sagittal"), largest_tumour_slice(labels, "coronal"),
            largest_tumour_slice(labels, "axial"))


# --------------------------------------------------------------------------- tables


def case_summary(case: Case) -> dict[str, str]:
    """Facts about a case for a caption: size, voxel size, orientation, dtype, naming."""
    dtypes = sorted({str(v.dtype) for v in case.images.values()})
    return {
        "case": case.case_id,
        "grid": "×".join(str(s) for s in case.shape) + " voxels",
        "voxel size": " × ".join(f"{s:.3g}" for s in case.spacing_mm) + " mm",
        "stored orientation": f"{case.original_axcodes} (shown reoriented to RAS)",
        "image type": ", ".join(dtypes),
        "naming": {"brats2021": "BraTS 2020/2021", "brats2023": "BraTS 2023",
                   "decathlon": "Medical Segmentation Decathlon"}.get(case.source_convention, case.source_convention),
        "labels": "expert label map included" if case.has_labels else "no label map",
    }


def volume_rows(truth: np.ndarray | None, pred: np.ndarray | None, spacing_mm: tuple[float, float, float],
                comparison: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per label and region (NCR, ED, ET, WT, TC): expert and model volumes in cm³.

    Columns: ``part``, ``meaning``, ``expert_cm3``, ``model_cm3``, ``difference_cm3`` (model -
    expert); ``None`` where that label map is absent. With a ``comparison``
    (:func:`core.volumes.regions.compare_to_truth`) the regions WT, TC and ET also get ``dice`` and
    ``hd95_mm`` (``None`` for NCR and ED, and for an undefined HD95).
    """
    vt = label_volumes_cm3(truth, spacing_mm) if truth is not None else None
    vp = label_volumes_cm3(pred, spacing_mm) if pred is not None else None
    rows = []
    for part in LABEL_VOLUME_GROUPS:
        t = vt[part] if vt is not None else None
        p = vp[part] if vp is not None else None
        row: dict[str, Any] = {"part": part, "meaning": PART_DESCRIPTIONS[part], "expert_cm3": t, "model_cm3": p,
                               "difference_cm3": (p - t) if t is not None and p is not None else None}
        if comparison is not None:
            scores = comparison.get(part)
            hd = float(scores["hd95_mm"]) if scores else float("nan")
            row["dice"] = float(scores["dice"]) if scores else None
            row["hd95_mm"] = hd if math.isfinite(hd) else None
        rows.append(row)
    return rows


#: Short names of the labels for legends.
LEGEND_NAMES: dict[str, str] = {"NCR": "necrotic core", "ED": "oedema", "ET": "enhancing tumour"}
#: Why a cell of the volumes table is empty, by reason.
EMPTY_CELLS: dict[str, str] = {
    "no_truth": "no expert labels",
    "label": "Dice and HD95 are scored for the regions WT, TC and ET",
    "both_empty": "region absent in both: Dice 1 by convention, no HD95",
    "one_empty": "region absent in one of the two: Dice 0, no HD95",
}


def empty_cell_notes(rows: Iterable[Mapping[str, Any]], comparison: Mapping[str, Mapping[str, Any]] | None = None,
                     has_truth: bool = True) -> list[str]:
    """For each row of :func:`volume_rows`, why its empty cells are empty (:data:`EMPTY_CELLS`), so that a
    table shows "—" with a reason instead of ``None``; ``""`` for a row without empty cells. Columns
    empty in every row (no model run: no model volume, Dice or HD95) need no note and get none."""
    notes = []
    for row in rows:
        reasons = []
        if not has_truth:
            reasons.append(EMPTY_CELLS["no_truth"])
        if comparison is not None:
            scores = comparison.get(row["part"])
            if scores is None:
                reasons.append(EMPTY_CELLS["label"])
            elif scores.get("both_empty"):
                reasons.append(EMPTY_CELLS["both_empty"])
            elif row.get("hd95_mm") is None:
                reasons.append(EMPTY_CELLS["one_empty"])
        notes.append("; ".join(reasons))
    return notes


def agreement_rows(comparison: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :func:`core.volumes.regions.compare_to_truth` output: region, Dice, HD95 and a note."""
    rows = []
    for region, scores in comparison.items():
        hd = float(scores["hd95_mm"])
        if scores.get("both_empty"):
            note = "absent in both: counts as Dice 1.0 (nothing to find, nothing found)"
        elif not math.isfinite(hd):
            note = "absent in one of the two: Dice 0, HD95 undefined"
        else:
            note = ""
        rows.append({"region": region, "meaning": PART_DESCRIPTIONS[region], "dice": float(scores["dice"]),
                     "hd95_mm": hd if math.isfinite(hd) else None, "note": note})
    return rows


def rows_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """UTF-8 CSV of a list of row dicts (floats with 4 decimals, ``None`` as empty)."""
    rows = list(rows)
    if not rows:
        return b""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else "" if v is None else v) for k, v in row.items()})
    return buffer.getvalue().encode("utf-8")


def volumes_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Grouped bars of the expert and model volumes (cm³) per label and region."""
    fig = go.Figure()
    parts = [r["part"] for r in rows]
    for key, name, colour in (("expert_cm3", "Expert", "#4c78a8"), ("model_cm3", "Model", "#f58518")):
        values = [r[key] for r in rows]
        if any(v is not None for v in values):
            fig.add_trace(go.Bar(x=parts, y=values, name=name, marker_color=colour,
                                 hovertemplate="%{x}: %{y:.2f} cm³<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", yaxis_title="volume (cm³)", height=320,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12))
    return fig


# --------------------------------------------------------------------------- 3D


@dataclass(frozen=True)
class Surface:
    """One triangle mesh to draw: vertices (N, 3) mm, faces (M, 3), colour (hex), opacity."""

    name: str
    verts: np.ndarray
    faces: np.ndarray
    colour: str
    opacity: float


def case_surfaces(labels: np.ndarray | None, spacing_mm: tuple[float, float, float],
                  parts: Sequence[str] = ("ED", "NCR", "ET"), colours: Mapping[str, str] | None = None,
                  brain: np.ndarray | None = None, max_faces: int = 20_000) -> list[Surface]:
    """Decimated surfaces of the chosen labels (and of the brain, from one modality, if given).

    Each label gets at most ``max_faces`` triangles and the brain about as many, so the whole
    scene stays light enough for the browser. Empty labels are left out.
    """
    colours = {**DEFAULT_COLOURS, **(colours or {})}
    out: list[Surface] = []
    if brain is not None:
        mesh = brain_surface(brain, spacing_mm, max_faces=max_faces)
        if mesh is not None:
            out.append(Surface("Brain", mesh[0], mesh[1], BRAIN_RGB, 0.12))
    if labels is not None:
        for part in parts:
            mesh = region_mesh(labels == LABELS[part], spacing_mm, max_faces=max_faces)
            if mesh is not None:
                out.append(Surface(part, mesh[0], mesh[1], colours[part], SURFACE_OPACITY[part]))
    return out


def surfaces_figure(surfaces: Sequence[Surface], title: str = "") -> go.Figure:
    """A plotly scene of ``Mesh3d`` surfaces in mm along the canonical R, A, S axes."""
    fig = go.Figure()
    for s in surfaces:
        fig.add_trace(go.Mesh3d(
            x=s.verts[:, 0], y=s.verts[:, 1], z=s.verts[:, 2],
            i=s.faces[:, 0], j=s.faces[:, 1], k=s.faces[:, 2],
            color=s.colour, opacity=s.opacity, name=s.name, showlegend=True, flatshading=False,
            lighting=dict(ambient=0.45, diffuse=0.8, specular=0.2, roughness=0.6),
            hoverinfo="name",
        ))
    fig.update_layout(
        title=title or None, height=560, margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        legend=dict(orientation="h", y=0.02),
        scene=dict(aspectmode="data", xaxis_title="x → right (mm)", yaxis_title="y → anterior (mm)",
                   zaxis_title="z → superior (mm)", camera=dict(eye=dict(x=1.15, y=-1.15, z=0.55))),
    )
    return fig
