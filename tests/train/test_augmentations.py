"""core.train.augment: the classic training augmentation (random_affine, warp, augment_image, augment_pair)
and the mask half of augment_acquisition_pair. augment_acquisition itself is in test_augment.py."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.train.augment import (AcquisitionConfig, AugmentConfig, augment_acquisition, augment_acquisition_pair,
                                augment_image, augment_pair, random_affine, warp)
from synthetic_images import phantom

#: No geometry, no brightness change: augment_image must then return the image (as [0, 1] floats).
STILL = AugmentConfig(rotation_deg=0.0, shift=0.0, zoom=0.0, brightness=(1.0, 1.0), hflip=False)
#: Acquisition augmentation with every intensity step off (geometry only).
GEOMETRY_ONLY = AcquisitionConfig(window_low=0.0, window_high=0.0, gamma=(1.0, 1.0), bias_p=0.0, noise_p=0.0,
                                  blur_p=0.0, sharpen_p=0.0, jpeg_p=0.0, lowres_p=0.0, skull_strip_p=0.0)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    image, lesion = phantom(4, 64)
    return image, lesion


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


# ----------------------------------------------------------------------------- random_affine and warp
def test_random_affine_stays_within_the_configured_ranges():
    cfg = AugmentConfig()
    h, w = 60, 80
    centre = np.array([w / 2, h / 2, 1.0])
    flips = 0
    for seed in range(200):
        matrix, flip = random_affine(np.random.default_rng(seed), (h, w), cfg)
        assert matrix.shape == (2, 3)
        scale = np.hypot(matrix[0, 0], matrix[0, 1])
        angle = np.degrees(np.arctan2(matrix[0, 1], matrix[0, 0]))
        assert 0.9 - 1e-9 <= scale <= 1.1 + 1e-9 and abs(angle) <= 10 + 1e-9
        moved = matrix @ centre - centre[:2]                         # the rotation is about the centre
        assert abs(moved[0]) <= 0.1 * w + 1e-9 and abs(moved[1]) <= 0.1 * h + 1e-9
        flips += flip
    assert 60 <= flips <= 140                                        # about half the draws flip


def test_random_affine_with_everything_off_is_the_identity():
    matrix, flip = random_affine(np.random.default_rng(3), (32, 32), STILL)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    assert flip is False


def test_warp_identity_flip_and_nearest_for_masks():
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    np.testing.assert_array_equal(warp(image, identity, False), image)
    np.testing.assert_array_equal(warp(image, identity, True), image[:, ::-1])
    shifted = warp(image, np.array([[1.0, 0, 1], [0, 1.0, 0]]), False)  # one pixel right, black border
    np.testing.assert_array_equal(shifted[:, 1:], image[:, :-1])
    assert not shifted[:, 0].any()
    labels = np.zeros((32, 32), np.uint8)
    labels[8:20, 10:24] = 3
    turned = warp(labels, np.array([[0.97, 0.26, -3.2], [-0.26, 0.97, 5.1]]), False, is_mask=True)
    assert set(np.unique(turned)) <= {0, 3}                          # no blended label values


# ----------------------------------------------------------------------------- augment_image
def test_augment_image_shape_dtype_range_and_change(pair):
    image, _ = pair
    out = augment_image(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - image / 255.0).mean() > 0.01


def test_augment_image_is_reproducible_per_seed(pair):
    image, _ = pair
    a = augment_image(image, np.random.default_rng(11))
    np.testing.assert_array_equal(a, augment_image(image, np.random.default_rng(11)))
    assert not np.array_equal(a, augment_image(image, np.random.default_rng(12)))
    outs = {augment_image(image, np.random.default_rng(s)).tobytes() for s in range(20)}
    assert len(outs) == 20


def test_augment_image_treats_uint8_and_unit_floats_alike(pair):
    image, _ = pair
    np.testing.assert_allclose(augment_image(image, np.random.default_rng(5)),
                               augment_image(image.astype(np.float32) / 255.0, np.random.default_rng(5)), atol=1e-6)


def test_augment_image_with_everything_off_returns_the_image(pair):
    image, _ = pair
    np.testing.assert_allclose(augment_image(image, np.random.default_rng(1), STILL), image / 255.0, atol=1e-6)


def test_augment_image_brightness_scales_and_clips(pair):
    image, _ = pair
    out = augment_image(image, np.random.default_rng(1), replace(STILL, brightness=(1.5, 1.5)))
    np.testing.assert_allclose(out, np.clip(image / 255.0 * 1.5, 0, 1), atol=1e-6)
    assert out.max() == 1.0                                          # the lesion (210) saturates


def test_augment_image_flip_alone_mirrors_or_keeps(pair):
    image, _ = pair
    unit = image / 255.0
    outs = [augment_image(image, np.random.default_rng(s), replace(STILL, hflip=True)) for s in range(12)]
    mirrored = [np.allclose(o, unit[:, ::-1], atol=1e-6) for o in outs]
    kept = [np.allclose(o, unit, atol=1e-6) for o in outs]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


# ----------------------------------------------------------------------------- augment_pair
def test_augment_pair_image_matches_augment_image_for_the_same_seed(pair):
    image, lesion = pair
    for seed in range(5):
        out, _ = augment_pair(image, lesion, np.random.default_rng(seed))
        np.testing.assert_array_equal(out, augment_image(image, np.random.default_rng(seed)))


def test_augment_pair_keeps_the_mask_binary_and_on_the_lesion(pair):
    _, lesion = pair
    drawing = lesion.astype(np.uint8) * 255                          # the image is the mask itself
    for seed in range(20):
        out, mask = augment_pair(drawing, lesion, np.random.default_rng(seed))
        assert mask.shape == lesion.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert 0.7 * lesion.sum() <= mask.sum() <= 1.3 * lesion.sum()   # zoom ±10 %: area within about ±21 %
        assert iou(out > 0.4, mask) > 0.85                         # the warped image and mask coincide


def test_augment_pair_mask_moves_with_a_flip(pair):
    image, lesion = pair
    cfg = replace(STILL, hflip=True)
    for seed in range(8):
        out, mask = augment_pair(image, lesion, np.random.default_rng(seed), cfg)
        flipped = np.allclose(out, image[:, ::-1] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(mask, (lesion[:, ::-1] if flipped else lesion).astype(np.uint8))


# ----------------------------------------------------------------------------- augment_acquisition_pair
def test_acquisition_pair_image_matches_augment_acquisition(pair):
    image, lesion = pair
    for seed in range(5):
        out, _ = augment_acquisition_pair(image, lesion, np.random.default_rng(seed))
        np.testing.assert_array_equal(out, augment_acquisition(image, np.random.default_rng(seed)))
        assert out.dtype == np.float32 and out.shape == image.shape


def test_acquisition_pair_mask_follows_the_geometry(pair):
    _, lesion = pair
    drawing = lesion.astype(np.uint8) * 255
    for seed in range(20):
        out, mask = augment_acquisition_pair(drawing, lesion, np.random.default_rng(seed), GEOMETRY_ONLY)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert 0.6 * lesion.sum() <= mask.sum() <= 1.4 * lesion.sum()    # zoom 0.85–1.15
        assert iou(out > 0.5, mask) > 0.85
