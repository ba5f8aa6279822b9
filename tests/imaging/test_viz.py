"""core.imaging.viz: masks, outlines and heat-maps drawn over greyscale slices (uint8 RGB out)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core import config
from core.imaging.viz import (CLASS_COLOURS, EXPERT_COLOUR, GREEN, RED, contour_pixels, draw_outline, grey_to_rgb,
                              overlay_heatmap, overlay_mask)

GREY = 100


@pytest.fixture()
def image() -> np.ndarray:
    return np.full((64, 64), GREY, np.uint8)


@pytest.fixture()
def square() -> np.ndarray:
    """A 20 × 20 square mask away from the image border."""
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    return mask


def blend(alpha: float, colour: tuple[int, int, int], grey: int = GREY) -> np.ndarray:
    return (1 - alpha) * grey + alpha * np.asarray(colour, float)


# ----------------------------------------------------------------------------- grey_to_rgb
def test_grey_to_rgb_repeats_the_channel():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = grey_to_rgb(grey)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey)


def test_grey_to_rgb_scales_unit_floats_to_0_255():
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(grey_to_rgb(unit)[0, :, 0], [0, 128, 255])


# ----------------------------------------------------------------------------- contour_pixels
def test_contour_is_the_inner_rim_of_the_mask(square):
    rim = contour_pixels(square, 1)
    assert rim.dtype == bool and rim.shape == square.shape
    assert rim.sum() == 4 * 20 - 4                                  # one pixel around a 20 × 20 square
    assert not (rim & ~square).any()                                # never outside the mask
    assert rim[20, 25] and rim[39, 30] and not rim[30, 30]
    assert contour_pixels(square, 2).sum() == 20 * 20 - 16 * 16     # two pixels wide


def test_contour_of_an_empty_mask_is_empty():
    assert not contour_pixels(np.zeros((16, 16), bool)).any()


# ----------------------------------------------------------------------------- overlay_mask
def test_fill_colours_the_mask_and_leaves_the_rest_untouched(image, square):
    out = overlay_mask(image, square, "fill", 0.4)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[square], np.broadcast_to(blend(0.4, GREEN), (square.sum(), 3)), atol=1)
    np.testing.assert_array_equal(out[~square], np.full(((~square).sum(), 3), GREY))
    np.testing.assert_array_equal(out[30, 30], [60, 140, 60])       # 0.6 × 100 + 0.4 × (0, 200, 0)


def test_fill_with_an_empty_mask_is_the_grey_image(image):
    out = overlay_mask(image, np.zeros((64, 64), bool), "fill", 0.9)
    np.testing.assert_array_equal(out, grey_to_rgb(image))


def test_fill_opacity_is_clipped_and_a_colour_can_be_chosen(image, square):
    solid = overlay_mask(image, square, "fill", 3.0, colour=(230, 30, 30))
    np.testing.assert_array_equal(solid[square], np.tile([230, 30, 30], (square.sum(), 1)))
    none = overlay_mask(image, square, "fill", -1.0)
    np.testing.assert_array_equal(none, grey_to_rgb(image))


def test_fill_accepts_integer_label_masks(image, square):
    np.testing.assert_array_equal(overlay_mask(image, square.astype(np.uint8) * 3), overlay_mask(image, square))


def test_contour_colours_only_the_rim_at_least_60_percent(image, square):
    out = overlay_mask(image, square, "contour", 0.2)              # opacity under 0.6 is raised to 0.6
    rim = contour_pixels(square, 1)
    np.testing.assert_allclose(out[rim], np.broadcast_to(blend(0.6, RED), (rim.sum(), 3)), atol=1)
    np.testing.assert_array_equal(out[~rim], np.full(((~rim).sum(), 3), GREY))
    np.testing.assert_array_equal(out[20, 25], [178, 58, 58])       # 0.4 × 100 + 0.6 × (230, 30, 30)
    stronger = overlay_mask(image, square, "contour", 0.9)
    np.testing.assert_allclose(stronger[20, 25], blend(0.9, RED), atol=1)


def test_contour_thickness_grows_with_the_image():
    big = np.full((800, 800), GREY, np.uint8)
    mask = np.zeros((800, 800), bool)
    mask[200:600, 200:600] = True
    out = overlay_mask(big, mask, "contour")
    changed = (out != GREY).any(axis=2)
    np.testing.assert_array_equal(changed, contour_pixels(mask, 4))  # round(800 / 200) pixels wide
    assert changed[200:204, 400].all() and not changed[204, 400]


def test_overlay_mask_keeps_the_input_and_refuses_a_mismatched_mask(image, square):
    before = image.copy()
    overlay_mask(image, square)
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ValueError, match="differ in size"):
        overlay_mask(image, np.zeros((32, 64), bool))


def test_overlay_mask_of_a_float_image(square):
    unit = np.full((64, 64), 0.5, np.float32)
    out = overlay_mask(unit, square, "fill", 0.0)
    assert out.dtype == np.uint8 and (out == 128).all()


# ----------------------------------------------------------------------------- draw_outline
def test_draw_outline_paints_the_rim_opaque_on_a_copy(image, square):
    rgb = grey_to_rgb(image)
    out = draw_outline(rgb, square)
    rim = contour_pixels(square, 1)
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out is not rgb
    np.testing.assert_array_equal(out[rim], np.tile(EXPERT_COLOUR, (rim.sum(), 1)))
    np.testing.assert_array_equal(out[~rim], rgb[~rim])
    np.testing.assert_array_equal(rgb, grey_to_rgb(image))          # the input is not drawn on
    np.testing.assert_array_equal(draw_outline(rgb, square, (1, 2, 3))[rim], np.tile([1, 2, 3], (rim.sum(), 1)))


def test_draw_outline_of_an_empty_mask_and_a_mismatched_one(image):
    rgb = grey_to_rgb(image)
    np.testing.assert_array_equal(draw_outline(rgb, np.zeros((64, 64), bool)), rgb)
    with pytest.raises(ValueError, match="differ in size"):
        draw_outline(rgb, np.zeros((64, 63), bool))


# ----------------------------------------------------------------------------- overlay_heatmap
def jet(value: int) -> np.ndarray:
    return cv2.cvtColor(cv2.applyColorMap(np.array([[value]], np.uint8), cv2.COLORMAP_JET),
                        cv2.COLOR_BGR2RGB)[0, 0].astype(float)


def test_heatmap_zero_leaves_the_image_and_one_gives_the_jet_maximum(image):
    cold = overlay_heatmap(image, np.zeros((64, 64)), 0.45)
    assert cold.shape == (64, 64, 3) and cold.dtype == np.uint8
    np.testing.assert_array_equal(cold, grey_to_rgb(image))
    hot = overlay_heatmap(image, np.ones((64, 64)), 1.0)
    np.testing.assert_array_equal(hot[0, 0], jet(255))             # dark red
    assert hot[0, 0, 0] > hot[0, 0, 1] and hot[0, 0, 0] > hot[0, 0, 2]


def test_heatmap_weight_is_opacity_times_square_root_of_heat(image):
    heat = np.zeros((64, 64))
    heat[:, 32:] = 0.25
    out = overlay_heatmap(image, heat, 0.8)
    weight = 0.8 * 0.25 ** 0.5                                      # 0.4
    np.testing.assert_allclose(out[10, 40], (1 - weight) * GREY + weight * jet(64), atol=1)
    np.testing.assert_array_equal(out[:, :32], grey_to_rgb(image)[:, :32])


def test_heatmap_clips_heat_and_opacity(image):
    np.testing.assert_array_equal(overlay_heatmap(image, np.full((64, 64), 5.0), 7.0),
                                  overlay_heatmap(image, np.ones((64, 64)), 1.0))
    np.testing.assert_array_equal(overlay_heatmap(image, np.full((64, 64), -2.0), 0.5), grey_to_rgb(image))


# ----------------------------------------------------------------------------- colours
def test_every_class_has_a_distinct_hex_colour():
    assert set(CLASS_COLOURS) == set(config.CLASS_NAMES)
    assert len(set(CLASS_COLOURS.values())) == len(CLASS_COLOURS)
    assert all(len(c) == 7 and c.startswith("#") and int(c[1:], 16) >= 0 for c in CLASS_COLOURS.values())
