"""Gentle training-time augmentation on the CPU (one OpenCV affine warp per image).

Defaults follow the original work: rotation ±10°, shift and zoom 0.1, brightness 0.8-1.2,
horizontal flip. Geometric transforms are done here rather than with Keras preprocessing
layers, which are slow on the JAX GPU backend (see docs/training notes).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    shift: float = 0.1
    zoom: float = 0.1
    brightness: tuple[float, float] = (0.8, 1.2)
    hflip: bool = True


def random_affine(rng: np.random.Generator, size: tuple[int, int], cfg: AugmentConfig) -> tuple[np.ndarray, bool]:
    """A random 2x3 affine matrix for an image of ``size`` (H, W) and whether to flip."""
    h, w = size
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    scale = rng.uniform(1.0 - cfg.zoom, 1.0 + cfg.zoom)
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    matrix[0, 2] += rng.uniform(-cfg.shift, cfg.shift) * w
    matrix[1, 2] += rng.uniform(-cfg.shift, cfg.shift) * h
    return matrix, bool(cfg.hflip and rng.random() < 0.5)


def warp(image: np.ndarray, matrix: np.ndarray, flip: bool, is_mask: bool = False) -> np.ndarray:
    """Apply an affine matrix (and optional horizontal flip) to one 2D image or mask."""
    h, w = image.shape[:2]
    interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, matrix, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out[:, ::-1] if flip else out


def augment_image(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Augment one uint8 or [0, 1] float image; returns float32 in [0, 1]."""
    unit = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    matrix, flip = random_affine(rng, unit.shape[:2], cfg)
    out = warp(unit, matrix, flip) * rng.uniform(*cfg.brightness)
    return np.clip(out, 0.0, 1.0)


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Augment an image and its mask with the same geometry; brightness on the image only."""
    unit = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    matrix, flip = random_affine(rng, unit.shape[:2], cfg)
    out = np.clip(warp(unit, matrix, flip) * rng.uniform(*cfg.brightness), 0.0, 1.0)
    return out, warp(mask.astype(np.uint8), matrix, flip, is_mask=True)
