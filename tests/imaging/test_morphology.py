"""Known-answer tests for core.imaging.morphology (synthetic masks only, no model)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.imaging.morphology import (
    ShapeFeatures,
    feature_table,
    fill_holes,
    keep_largest_component,
    measure_mask,
    region_volumes_cm3,
    remove_small_components,
)


def disc(radius: float, shape=(201, 201), centre=None) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` of ``centre``."""
    cy, cx = centre if centre is not None else ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def rectangle(rows=30, cols=60, shape=(100, 150), top=20, left=30) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + rows, left : left + cols] = True
    return m


# --------------------------------------------------------------------------- disc


def test_disc_known_answers():
    r = 40
    f = measure_mask(disc(r))
    assert isinstance(f, ShapeFeatures)
    assert f.area_px == pytest.approx(math.pi * r**2, rel=0.01)
    assert f.circularity == pytest.approx(1.0, abs=0.1)
    assert f.circularity > 0.97  # the smoothed contour gets close to the true length
    assert f.perimeter_px == pytest.approx(2 * math.pi * r, rel=0.02)
    assert f.max_feret_px == pytest.approx(2 * r, abs=2)
    assert f.perp_diameter_px == pytest.approx(2 * r, abs=2)
    assert f.eccentricity == pytest.approx(0.0, abs=0.05)
    assert f.equivalent_diameter_px == pytest.approx(2 * r, abs=0.5)
    assert f.width_px == f.height_px == 2 * r + 1
    assert f.centroid_rc == pytest.approx((100.0, 100.0))
    assert f.n_components == 1
    assert f.units == "px"
    for name in ("area_mm2", "area_cm2", "perimeter_mm", "width_mm", "height_mm", "max_feret_mm",
                 "perp_diameter_mm", "rano_product_mm2", "equivalent_diameter_mm", "spacing_mm"):
        assert getattr(f, name) is None, name
    assert f.rano_product_px2 == pytest.approx(f.max_feret_px * f.perp_diameter_px)


def test_disc_with_isotropic_spacing_scales_lengths_and_areas():
    m = disc(40)
    px = measure_mask(m)
    mm = measure_mask(m, spacing_mm=(0.5, 0.5))
    assert mm.units == "mm"
    assert mm.spacing_mm == (0.5, 0.5)
    assert mm.area_mm2 == pytest.approx(px.area_px * 0.25)
    assert mm.area_cm2 == pytest.approx(mm.area_mm2 / 100)
    for length in ("perimeter", "max_feret", "perp_diameter", "equivalent_diameter"):
        assert getattr(mm, f"{length}_mm") == pytest.approx(getattr(px, f"{length}_px") * 0.5)
    assert mm.width_mm == pytest.approx(px.width_px * 0.5)
    assert mm.rano_product_mm2 == pytest.approx(px.rano_product_px2 * 0.25)
    # pixel fields do not depend on spacing
    assert mm.area_px == px.area_px and mm.max_feret_px == px.max_feret_px
    assert mm.circularity == pytest.approx(px.circularity)


def test_physical_disc_on_anisotropic_grid():
    # A 20 mm radius disc sampled at 0.5 mm rows x 1 mm cols is a 40 x 20 px ellipse.
    yy, xx = np.mgrid[:120, :80]
    m = ((yy - 60) / 40.0) ** 2 + ((xx - 40) / 20.0) ** 2 <= 1
    f = measure_mask(m, spacing_mm=(0.5, 1.0))
    assert f.area_mm2 == pytest.approx(math.pi * 20**2, rel=0.01)
    assert f.perimeter_mm == pytest.approx(2 * math.pi * 20, rel=0.02)
    assert f.circularity == pytest.approx(1.0, abs=0.05)
    assert f.eccentricity < 0.1  # physical shape is round...
    assert measure_mask(m).eccentricity > 0.8  # ...the pixel shape is not
    assert f.max_feret_mm == pytest.approx(40, abs=1.5)
    assert f.perp_diameter_mm == pytest.approx(40, abs=1.5)
    assert f.equivalent_diameter_mm == pytest.approx(40, abs=0.5)


# --------------------------------------------------------------------------- rectangle


def test_rectangle_known_answers():
    f = measure_mask(rectangle())
    assert (f.width_px, f.height_px) == (60, 30)
    assert f.area_px == 1800
    assert f.solidity == pytest.approx(1.0)
    # Pixel-corner convention: the rectangle spans 60 x 30 pixel squares, so the max Feret is
    # the outer diagonal sqrt(60² + 30²) (centre-to-centre would give sqrt(59² + 29²)).
    diag = math.hypot(60, 30)
    assert f.max_feret_px == pytest.approx(diag, abs=1e-9)
    # Longest chord perpendicular to the diagonal runs between the long sides (height h):
    # length = h / cos(angle to the vertical) = h * diag / w.
    assert f.perp_diameter_px == pytest.approx(30 * diag / 60, abs=1e-9)
    assert f.rano_product_px2 == pytest.approx(diag * 30 * diag / 60)
    # perimeter lies between the pixel-centre (176) and pixel-corner (180) outlines
    assert 176 <= f.perimeter_px <= 180
    assert f.centroid_rc == pytest.approx((34.5, 59.5))
    assert f.eccentricity == pytest.approx(math.sqrt(1 - 0.25), abs=0.01)  # axes ratio 1:2


def test_rectangle_anisotropic_spacing():
    f = measure_mask(rectangle(), spacing_mm=(0.5, 1.0))
    assert f.width_mm == pytest.approx(60 * 1.0)
    assert f.height_mm == pytest.approx(30 * 0.5)
    assert f.area_mm2 == pytest.approx(1800 * 0.5)
    assert f.area_cm2 == pytest.approx(9.0)
    # physically a 60 mm x 15 mm rectangle
    diag = math.hypot(60, 15)
    assert f.max_feret_mm == pytest.approx(diag, abs=1e-9)
    assert f.perp_diameter_mm == pytest.approx(15 * diag / 60, abs=1e-9)
    assert f.rano_product_mm2 == pytest.approx(f.max_feret_mm * f.perp_diameter_mm)
    assert 2 * (59 + 14.5) <= f.perimeter_mm <= 2 * (60 + 15)
    assert f.solidity == pytest.approx(1.0)
    # equivalent diameter from the physical area
    assert f.equivalent_diameter_mm == pytest.approx(math.sqrt(4 * 900 / math.pi))


# --------------------------------------------------------------------------- several parts, edge cases


def test_two_discs_sum_areas_and_span_whole_lesion():
    a = disc(10, shape=(100, 200), centre=(50, 40))
    b = disc(15, shape=(100, 200), centre=(50, 150))
    fa, fb = measure_mask(a), measure_mask(b)
    f = measure_mask(a | b)
    assert f.n_components == 2
    assert f.area_px == fa.area_px + fb.area_px
    assert f.perimeter_px == pytest.approx(fa.perimeter_px + fb.perimeter_px)
    # bounding box and Feret span both discs: from col 40-10-0.5 to 150+15+0.5
    assert f.width_px == (150 + 15) - (40 - 10) + 1
    assert f.max_feret_px == pytest.approx(f.width_px, abs=0.5)
    assert f.solidity < 0.6  # the hull of the pair is mostly empty


def test_features_do_not_depend_on_where_the_lesion_lies():
    """Moving a lesion changes only its centroid (the measurement works on the lesion's box)."""
    yy, xx = np.mgrid[:120, :160]
    u, v = (yy - 40) * 0.8 + (xx - 50) * 0.6, -(yy - 40) * 0.6 + (xx - 50) * 0.8
    blob = (u / 21.0) ** 2 + (v / 9.5) ** 2 <= 1.0  # rotated ellipse
    blob[38:41, 30:70] = True  # with a spur
    moved = np.roll(blob, (47, 61), axis=(0, 1))
    a, b = measure_mask(blob, (0.7, 0.9)).to_dict(), measure_mask(moved, (0.7, 0.9)).to_dict()
    assert b.pop("centroid_rc") == pytest.approx(tuple(c + d for c, d in zip(a.pop("centroid_rc"), (47, 61))))
    assert a == b


def test_empty_mask_returns_none():
    assert measure_mask(np.zeros((10, 10), bool)) is None
    assert measure_mask(np.zeros((10, 10), np.uint8), spacing_mm=(1.0, 1.0)) is None


def test_bad_input_rejected():
    with pytest.raises(ValueError):
        measure_mask(np.ones((3, 3, 3), bool))
    with pytest.raises(ValueError):
        measure_mask(np.ones((3, 3), bool), spacing_mm=(1.0, 0.0))


def test_single_pixel_is_finite():
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    f = measure_mask(m, spacing_mm=(1.0, 1.0))
    assert f.area_px == 1 and f.perimeter_px > 0
    assert 0 <= f.circularity <= 1
    assert f.max_feret_px == pytest.approx(math.sqrt(2))


def test_to_dict_and_feature_table_are_json_able():
    f_mm = measure_mask(disc(20), spacing_mm=(0.8, 0.8))
    f_px = measure_mask(disc(20))
    json.dumps(f_mm.to_dict())
    json.dumps(f_px.to_dict())
    rows_mm, rows_px = feature_table(f_mm), feature_table(f_px)
    json.dumps(rows_mm)
    for row in rows_mm + rows_px:
        assert set(row) == {"feature", "value", "unit"}
        assert isinstance(row["value"], float)
    units_mm = {r["unit"] for r in rows_mm}
    assert {"mm", "mm²", "cm²"} <= units_mm and "px" not in units_mm
    units_px = {r["unit"] for r in rows_px}
    assert {"px", "px²"} <= units_px and "mm" not in units_px
    area = next(r for r in rows_mm if r["unit"] == "mm²")
    assert area["value"] == pytest.approx(f_mm.area_mm2)
    centroid_px = [r["value"] for r in rows_px if r["feature"].startswith("Centroid")]
    centroid_mm = [r["value"] for r in rows_mm if r["feature"].startswith("Centroid")]
    assert centroid_px == pytest.approx(list(f_px.centroid_rc))
    assert centroid_mm == pytest.approx([f_mm.centroid_rc[0] * 0.8, f_mm.centroid_rc[1] * 0.8])


# --------------------------------------------------------------------------- clean-up helpers


def test_remove_small_components_mm_threshold():
    m = np.zeros((40, 40), bool)
    m[2:4, 2:7] = True  # 10 mm² at 1 mm spacing
    m[20:25, 20:30] = True  # 50 mm²
    out = remove_small_components(m, min_area_mm2=20, spacing_mm=(1.0, 1.0))
    assert out.dtype == bool
    assert out.sum() == 50 and not out[2:4, 2:7].any()
    # same blobs at 2 mm spacing are 40 and 200 mm²: both kept
    assert remove_small_components(m, 20, (2.0, 2.0)).sum() == 60
    # without spacing: pixel fallback
    assert remove_small_components(m, 20, None, min_area_px_fallback=11).sum() == 50
    assert remove_small_components(m, 20, None, min_area_px_fallback=10).sum() == 60


def test_fill_holes_fills_a_ring():
    ring = disc(20, shape=(60, 60)) & ~disc(8, shape=(60, 60))
    filled = fill_holes(ring)
    assert np.array_equal(filled, disc(20, shape=(60, 60)))


def test_keep_largest_component():
    a = disc(5, shape=(50, 50), centre=(10, 10))
    b = disc(9, shape=(50, 50), centre=(35, 35))
    assert np.array_equal(keep_largest_component(a | b), b)
    assert not keep_largest_component(np.zeros((5, 5))).any()


# --------------------------------------------------------------------------- 3D volumes


def test_region_volumes_cm3_sphere():
    zz, yy, xx = np.mgrid[:45, :45, :45]
    dist2 = (zz - 22) ** 2 + (yy - 22) ** 2 + (xx - 22) ** 2
    labels = np.zeros(dist2.shape, np.uint8)
    labels[dist2 <= 20**2] = 2
    labels[dist2 <= 8**2] = 4
    regions = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,), "NCR": (1,)}
    vols = region_volumes_cm3(labels, (1.0, 1.0, 1.0), regions)
    assert vols["WT"] == pytest.approx(4 / 3 * math.pi * 20**3 / 1000, rel=0.02)
    assert vols["ET"] == pytest.approx(4 / 3 * math.pi * 8**3 / 1000, rel=0.05)
    assert vols["TC"] == vols["ET"]
    assert vols["NCR"] == 0.0
    doubled = region_volumes_cm3(labels, (2.0, 1.0, 1.0), regions)
    assert doubled["WT"] == pytest.approx(2 * vols["WT"])
    assert all(isinstance(v, float) for v in doubled.values())
    with pytest.raises(ValueError):
        region_volumes_cm3(labels, (1.0, 1.0), regions)
