"""core.train.augment.augment_acquisition and the head normalisations of core.imaging.preprocess
(normalise_in_head, rank_in_head, head_mask, classifier_input(..., normalisation="head" / "rank"))."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.train.augment import AcquisitionConfig, augment_acquisition
from core.imaging.preprocess import (classifier_crop, classifier_input, head_mask, normalise, normalise_in_head,
                                     rank_in_head)
from synthetic_images import phantom

#: Every step switched off: the augmentation must then return the image unchanged.
IDENTITY = AcquisitionConfig(rotation_deg=0.0, shift=0.0, zoom=(1.0, 1.0), hflip=False, window_low=0.0,
                             window_high=0.0, gamma=(1.0, 1.0), bias_p=0.0, noise_p=0.0, blur_p=0.0,
                             sharpen_p=0.0, jpeg_p=0.0, lowres_p=0.0, skull_strip_p=0.0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return phantom(3, 64)[0]


def test_augment_shape_dtype_range_and_change(image):
    out = augment_acquisition(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - image / 255.0).mean() > 0.01


def test_augment_is_deterministic_per_seed(image):
    a = augment_acquisition(image, np.random.default_rng(7))
    b = augment_acquisition(image, np.random.default_rng(7))
    c = augment_acquisition(image, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augment_many_seeds_stay_valid(image):
    outs = [augment_acquisition(image, np.random.default_rng(s)) for s in range(25)]
    for out in outs:
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0 and np.isfinite(out).all()
        assert out.max() > 0.2                                     # the head never vanishes
    assert len({out.tobytes() for out in outs}) == 25


def test_uint8_and_unit_float_inputs_agree(image):
    a = augment_acquisition(image, np.random.default_rng(5))
    b = augment_acquisition(image.astype(np.float32) / 255.0, np.random.default_rng(5))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_everything_off_is_the_identity(image):
    out = augment_acquisition(image, np.random.default_rng(1), IDENTITY)
    np.testing.assert_allclose(out, image / 255.0, atol=1e-6)


def test_single_steps_do_what_they_say(image):
    unit = image / 255.0
    squared = augment_acquisition(image, np.random.default_rng(2), replace(IDENTITY, gamma=(2.0, 2.0)))
    np.testing.assert_allclose(squared, unit ** 2, atol=1e-5)
    flips = [augment_acquisition(image, np.random.default_rng(s), replace(IDENTITY, hflip=True)) for s in range(12)]
    mirrored = [np.allclose(f, unit[:, ::-1], atol=1e-6) for f in flips]
    kept = [np.allclose(f, unit, atol=1e-6) for f in flips]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)
    window = augment_acquisition(image, np.random.default_rng(3), replace(IDENTITY, window_low=0.3))
    assert (window <= unit + 1e-6).all() and (window < unit - 1e-3).any()   # raised black point darkens


def test_simulated_skull_stripping_removes_the_rim_only(image):
    out = augment_acquisition(image, np.random.default_rng(0), replace(IDENTITY, skull_strip_p=1.0))
    head = head_mask(image / 255.0)
    assert not out[~head].any()                                    # nothing appears outside the head
    rim = head & (out == 0) & (image > 0)
    assert rim.sum() > 0.1 * head.sum()                            # a rim of the head is gone
    np.testing.assert_allclose(out[32, 32], image[32, 32] / 255.0, atol=1e-6)   # the centre is kept


# --------------------------------------------------------------------------- head normalisation


def _ramp_head(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An ellipse of values ramping 0.2 -> 0.6 left to right on a black background, and its region."""
    rr, cc = np.mgrid[:size, :size]
    head = ((rr - size / 2) / (0.4 * size)) ** 2 + ((cc - size / 2) / (0.4 * size)) ** 2 <= 1
    unit = np.where(head, 0.2 + 0.4 * cc / size, 0.0).astype(np.float32)
    return unit, head


def test_head_mask_covers_the_head_not_the_background():
    unit, head = _ramp_head()
    mask = head_mask(unit)
    assert mask.dtype == bool
    assert (mask & head).sum() >= 0.97 * head.sum()
    assert not mask[:3, :3].any() and not mask[-3:, -3:].any()
    assert not head_mask(np.zeros((32, 32), np.float32)).any()


def test_normalise_in_head_maps_head_percentiles_to_unit_range():
    unit, head = _ramp_head()
    out = normalise_in_head(unit)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert not out[~head_mask(unit)].any()                          # the background stays black
    lo, hi = np.percentile(out[head_mask(unit)], [1, 99])
    assert lo == pytest.approx(0.0, abs=1e-6) and hi == pytest.approx(1.0, abs=1e-6)
    # the head's brightest 1 % saturate, and the head's contrast is stretched
    assert (out[head] == 1.0).mean() >= 0.01
    assert np.ptp(out[head]) > 1.5 * np.ptp(unit[head])


def test_normalise_in_head_ignores_a_linear_rescale():
    unit, _ = _ramp_head()
    np.testing.assert_allclose(normalise_in_head(0.37 * unit), normalise_in_head(unit), atol=1e-5)
    np.testing.assert_allclose(normalise_in_head(unit * 1.6), normalise_in_head(unit), atol=1e-5)


def test_normalise_in_head_falls_back_to_the_frame_for_a_tiny_head():
    unit = np.zeros((64, 64), np.float32)
    unit[30:33, 30:33] = 0.5                                        # 9 px: far under 5 % of the frame
    out = normalise_in_head(unit)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert out[31, 31] > 0.9 and out[0, 0] == 0.0


def test_rank_in_head_gives_each_pixel_its_quantile_in_the_head():
    unit, head = _ramp_head()
    out = rank_in_head(unit)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() == 1.0
    assert not out[~head_mask(unit)].any()                          # background darker than the head: 0
    inside = out[head_mask(unit)]
    # a ramp's columns are equally populated near the centre: its quantiles spread evenly over (0, 1]
    assert np.median(inside) == pytest.approx(0.5, abs=0.03)
    assert np.percentile(inside, 10) < 0.15 and np.percentile(inside, 90) > 0.85
    # the order of intensities is kept: a brighter pixel never gets a lower rank
    order = np.argsort(unit[head], kind="stable")
    assert np.all(np.diff(out[head][order]) >= 0)


@pytest.mark.parametrize("curve", [lambda u: 0.37 * u, lambda u: u ** 0.45, lambda u: u ** 2.2,
                                   lambda u: np.clip(1.8 * u - 0.1, 0, 1) * 0.6 + 0.2 * u])
def test_rank_in_head_is_blind_to_an_increasing_contrast_curve(curve):
    """Window/level, gamma or a per-case scale change intensities but not their order: same input."""
    grey = phantom(5, 96)[0].astype(np.float32) / 255.0
    want = rank_in_head(grey)
    got = rank_in_head(curve(grey).astype(np.float32))
    inside = head_mask(grey) & head_mask(curve(grey).astype(np.float32))
    # only where the head mask's edge falls moves (its threshold is a share of the 99th percentile)
    assert np.abs(got - want)[inside].mean() < 0.03 and np.abs(got - want)[inside].max() < 0.05
    # the percentile normalisation, by contrast, moves with the curve's shape (not with a scale)
    moved = np.abs(normalise_in_head(curve(grey).astype(np.float32)) - normalise_in_head(grey))[inside].mean()
    assert (moved < 1e-3) == bool(np.allclose(curve(grey), 0.37 * grey))


def test_rank_in_head_tiny_head_and_flat_frame():
    unit = np.zeros((64, 64), np.float32)
    unit[30:33, 30:33] = 0.5                                        # 9 px: the whole frame ranks them
    out = rank_in_head(unit)
    assert out[31, 31] == 1.0 and out[0, 0] == 0.0
    assert not rank_in_head(np.full((16, 16), 0.3, np.float32)).any()
    assert not rank_in_head(np.zeros((16, 16), np.float32)).any()


def test_classifier_input_head_normalisation():
    grey = phantom(11, 96)[0].astype(np.int16) * 10                 # a 16-bit style slice
    head = classifier_input(grey, 32, "head")
    unit = classifier_input(grey, 32, "unit")
    assert head.shape == (32, 32) and head.dtype == np.float32
    np.testing.assert_allclose(unit, classifier_crop(grey, 32))
    np.testing.assert_allclose(head, normalise_in_head(unit), atol=1e-6)
    assert head.max() == 1.0 and head[0, 0] == 0.0 and not np.allclose(head, unit)
    # the same scan stored with another intensity scale gives the same input
    np.testing.assert_allclose(classifier_input(grey * 3, 32, "head"), head, atol=1e-4)
    np.testing.assert_allclose(classifier_input(grey.astype(np.float32) * 0.01, 32, "head"), head, atol=1e-4)
    np.testing.assert_allclose(classifier_input(grey, 32, "rank"), rank_in_head(unit), atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(unit, "zscore")
    with pytest.raises(ValueError):
        classifier_input(grey, 32, "minmax")
