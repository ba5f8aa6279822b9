"""core.volumes.figures: label overlays, the shared cursor, square pixels, volume tables and 3D figures."""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from core.volumes import figures as vv
from core.volumes.regions import compare_to_truth
from core.volumes.views import PLANES, slice_view

SHAPE = (30, 26, 18)


def labelled_volume() -> tuple[np.ndarray, np.ndarray]:
    image = np.full(SHAPE, 100, np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:15, 6:16, 4:12] = 2
    labels[7:12, 8:13, 6:10] = 1
    labels[9:11, 9:11, 7:9] = 4
    return image, labels


def test_overlay_fill_contour_and_hidden():
    grey = np.full((20, 20), 100, np.uint8)
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 2
    labels[8:12, 8:12] = 4
    style = vv.OverlayStyle(colours={"NCR": "#ff0000", "ED": "#00ff00", "ET": "#0000ff"},
                            opacity={"NCR": 1.0, "ED": 0.5, "ET": 1.0})
    rgb = vv.overlay_labels(grey, labels, style)
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (100, 100, 100)                 # background untouched
    assert tuple(rgb[6, 6]) == (50, 178, 50)                   # ED: half-way to green
    assert tuple(rgb[10, 10]) == (0, 0, 255)                   # ET fully blue
    contour = vv.overlay_labels(grey, labels, vv.OverlayStyle(style.colours, style.opacity, contour=True))
    assert tuple(contour[5, 10]) == (0, 255, 0)                # ED edge: opacity doubled to 1
    assert tuple(contour[6, 10]) == (100, 100, 100)            # ED interior left clear
    assert tuple(contour[8, 9]) == (0, 0, 255) and tuple(contour[9, 9]) == (100, 100, 100)
    hidden = vv.overlay_labels(grey, labels, vv.OverlayStyle(visible=False))
    assert np.all(hidden == 100)
    assert vv.hex_to_rgb("#30d158") == (48, 209, 88)


@pytest.mark.parametrize("plane", list(PLANES))
def test_cursor_lands_on_its_voxel_in_every_view(plane):
    cursor = (21, 7, 13)
    marker = np.zeros(SHAPE, np.uint8)
    marker[cursor] = 1
    view = slice_view(marker, plane, cursor[PLANES[plane]])
    assert np.unravel_index(int(view.argmax()), view.shape) == vv.cursor_in_view(SHAPE, plane, cursor)


def test_render_view_square_pixels_and_crosshair():
    image, labels = labelled_volume()
    cursor = (10, 10, 8)
    # 1 x 1 x 3 mm voxels: coronal rows (z) are 3 mm, so the view is stretched 3x vertically
    out = vv.render_view(image, labels, "coronal", cursor, (0, 200), vv.OverlayStyle(), (1.0, 1.0, 3.0),
                         show_cursor=False, min_side=0)
    assert out.shape == (SHAPE[2] * 3, SHAPE[0], 3)
    big = vv.render_view(image, None, "axial", cursor, (0, 200), vv.OverlayStyle(), (1.0, 1.0, 1.0), min_side=256)
    assert big.shape[:2] == (SHAPE[1] * 9, SHAPE[0] * 9)       # whole-factor enlargement
    row, col = vv.cursor_in_view(SHAPE, "axial", cursor)
    r, c = int((row + 0.5) * 9 - 0.5), int((col + 0.5) * 9 - 0.5)
    assert tuple(big[r, 0]) == vv.CURSOR_RGB and tuple(big[0, c]) == vv.CURSOR_RGB
    assert tuple(big[r, c]) != vv.CURSOR_RGB                   # open centre shows the voxel
    plain = vv.render_view(image, None, "axial", cursor, (0, 200), vv.OverlayStyle(), (1.0, 1.0, 1.0),
                           show_cursor=False, min_side=256)
    assert not np.any(np.all(plain == vv.CURSOR_RGB, axis=2))


def test_tumour_and_default_cursor():
    _, labels = labelled_volume()
    x, y, z = vv.tumour_cursor(labels)
    assert labels[x, y, z] > 0
    assert vv.tumour_cursor(np.zeros(SHAPE, np.uint8)) == (15, 13, 9) == vv.default_cursor(SHAPE)
    assert vv.tumour_cursor(None, SHAPE) == (15, 13, 9)


def test_volume_rows_and_csv():
    _, truth = labelled_volume()
    pred = truth.copy()
    pred[pred == 4] = 1                                           # model misses the ET
    spacing = (1.0, 1.0, 2.0)                                     # 2 mm³ voxels
    rows = vv.volume_rows(truth, pred, spacing, compare_to_truth(pred, truth, spacing))
    by = {r["part"]: r for r in rows}
    assert list(by) == ["NCR", "ED", "ET", "WT", "TC"]
    assert by["ET"]["expert_cm3"] == pytest.approx(8 * 2 / 1000) and by["ET"]["model_cm3"] == 0.0
    assert by["WT"]["expert_cm3"] == pytest.approx(by["WT"]["model_cm3"]) == pytest.approx(10 * 10 * 8 * 2 / 1000)
    assert by["NCR"]["difference_cm3"] == pytest.approx(8 * 2 / 1000)
    assert by["WT"]["dice"] == 1.0 and by["ET"]["dice"] == 0.0 and by["ET"]["hd95_mm"] is None
    assert by["NCR"]["dice"] is None
    only_truth = vv.volume_rows(truth, None, spacing)
    assert all(r["model_cm3"] is None and "dice" not in r for r in only_truth)
    parsed = list(csv.DictReader(io.StringIO(vv.rows_csv(rows).decode())))
    assert parsed[2]["part"] == "ET" and parsed[2]["model_cm3"] == "0.0000" and parsed[2]["hd95_mm"] == ""
    assert vv.rows_csv([]) == b""
    fig = vv.volumes_figure(rows)
    assert [t.name for t in fig.data] == ["Expert", "Model"]
    assert len(vv.volumes_figure(only_truth).data) == 1


def test_agreement_notes():
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[5:10, 5:10, 5:10] = 1
    pred = truth.copy()
    pred[12, 12, 12] = 4
    rows = {r["region"]: r for r in vv.agreement_rows(compare_to_truth(pred, truth, (1.0, 1.0, 1.0)))}
    assert rows["ET"]["hd95_mm"] is None and "undefined" in rows["ET"]["note"]
    assert rows["TC"]["note"] == "" and math.isfinite(rows["TC"]["hd95_mm"])
    rows = {r["region"]: r for r in vv.agreement_rows(compare_to_truth(truth, truth, (1.0, 1.0, 1.0)))}
    assert rows["ET"]["dice"] == 1.0 and "absent in both" in rows["ET"]["note"]


def test_surfaces_and_figure():
    image, labels = labelled_volume()
    image[labels == 0] = 0
    image[3:27, 3:23, 2:16] = np.maximum(image[3:27, 3:23, 2:16], 50)
    surfaces = vv.case_surfaces(labels, (1.0, 1.0, 1.0), ["ED", "ET"], {"ET": "#123456"}, brain=image,
                                max_faces=2000)
    assert [s.name for s in surfaces] == ["Brain", "ED", "ET"]
    assert all(0 < len(s.faces) <= 2000 for s in surfaces)
    assert surfaces[2].colour == "#123456" and surfaces[0].opacity < 0.5
    fig = vv.surfaces_figure(surfaces, "test")
    assert all(isinstance(t, go.Mesh3d) for t in fig.data) and fig.layout.scene.aspectmode == "data"
    assert vv.case_surfaces(np.zeros(SHAPE, np.uint8), (1.0, 1.0, 1.0)) == []
