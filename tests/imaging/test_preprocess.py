"""Brain crop, square padding, resizing and the segmenter's input geometry."""
from __future__ import annotations

import numpy as np
import pytest

from core.imaging.preprocess import brain_bbox, classifier_input, pad_to_square, to_unit_range
from core.slices.segment import to_model_input, to_original_grid


def head(h: int = 200, w: int = 300, centre=(100, 180), radii=(60, 80)) -> np.ndarray:
    rr, cc = np.mgrid[:h, :w]
    inside = ((rr - centre[0]) / radii[0]) ** 2 + ((cc - centre[1]) / radii[1]) ** 2 <= 1
    return np.where(inside, 180, 0).astype(np.uint8)


def test_brain_bbox_finds_the_head_and_ignores_specks():
    image = head()
    image[5, 5] = 255  # isolated bright pixel outside the head
    box = brain_bbox(image, margin=0.0)
    assert abs(box.top - 40) <= 2 and abs(box.bottom - 161) <= 2
    assert abs(box.left - 100) <= 2 and abs(box.right - 261) <= 2


def test_blank_image_keeps_the_full_frame():
    box = brain_bbox(np.zeros((50, 70), np.uint8))
    assert (box.top, box.bottom, box.left, box.right) == (0, 50, 0, 70)


def test_classifier_input_is_square_unit_range_and_fills_the_frame():
    x = classifier_input(head(), 64)
    assert x.shape == (64, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # the head (wider than tall) spans the full width after cropping
    assert x[32].max() > 0.6 and x[32, 4] > 0.3 and x[32, -5] > 0.3


def test_to_unit_range_handles_uint8_floats_and_16_bit():
    assert to_unit_range(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    already = np.array([[0.2, 0.7]], np.float32)
    assert np.array_equal(to_unit_range(already), already)
    sixteen = np.linspace(0, 4095, 10000, dtype=np.float32).reshape(100, 100).astype(np.uint16)
    unit = to_unit_range(sixteen)
    assert unit.min() == 0.0 and unit.max() == 1.0
    with pytest.raises(ValueError):
        to_unit_range(np.zeros((2, 2, 3)))


def test_pad_to_square_centres_the_image():
    padded = pad_to_square(np.ones((2, 6)))
    assert padded.shape == (6, 6)
    assert padded[:2].sum() == 0 and padded[2:4].sum() == 12


def test_segmenter_geometry_round_trip_preserves_position():
    mask = np.zeros((120, 200), np.float32)
    mask[30:60, 140:180] = 1.0
    x, geometry = to_model_input(mask, 64)
    assert x.shape == (64, 64)
    back = to_original_grid(x, geometry)
    assert back.shape == mask.shape
    overlap = ((back > 0.5) & (mask > 0.5)).sum() / mask.sum()
    assert overlap > 0.85


def test_segmenter_input_pads_the_whole_slice_to_a_square_before_resizing():
    from core.imaging.preprocess import segmenter_input

    image = np.full((30, 50), 200, dtype=np.uint8)
    out = segmenter_input(image, 100)
    assert out.shape == (100, 100) and out.dtype == np.float32
    # 10 padded rows above and below (of 50) become 20 black rows each at 100 px (cubic: a 2-row edge); the
    # slice keeps 200/255
    assert np.all(out[:19] == 0) and np.all(out[81:] == 0)
    np.testing.assert_allclose(out[23:77, 3:97], 200 / 255, atol=1e-6)
