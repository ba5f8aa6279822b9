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


# --------------------------------------------------------------------------- acquisition shortcuts


@dataclass(frozen=True)
class AcquisitionConfig:
    """Augmentation aimed at what differs between scanners, sequences and file pipelines rather
    than between tumours: windowing, contrast curve, coil bias field, noise, sharpness, JPEG
    compression, resolution, framing, and whether the skull is shown."""

    rotation_deg: float = 15.0
    shift: float = 0.08
    zoom: tuple[float, float] = (0.85, 1.15)
    hflip: bool = True
    window_low: float = 0.12          # window/level: raise the black point by up to this
    window_high: float = 0.2          # ... and lower the white point by up to this
    gamma: tuple[float, float] = (0.6, 1.6)
    invert_p: float = 0.0             # T1 <-> T2-like contrast flips are not realistic; off
    bias_p: float = 0.5
    bias_amplitude: float = 0.3       # multiplicative field between 1 - a and 1 + a
    noise_p: float = 0.4
    noise_sigma: float = 0.05
    blur_p: float = 0.25
    sharpen_p: float = 0.2
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    lowres_p: float = 0.25
    lowres_scale: tuple[float, float] = (0.35, 0.9)
    skull_strip_p: float = 0.2        # keep only an eroded head mask (looks skull-stripped)


def _bias_field(rng: np.random.Generator, shape: tuple[int, int], amplitude: float) -> np.ndarray:
    """A smooth multiplicative field: a random 4x4 grid upsampled bicubically."""
    grid = rng.uniform(1.0 - amplitude, 1.0 + amplitude, size=(4, 4)).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _jpeg(unit: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.round(unit * 255.0).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0 if ok else unit


def _strip_skull(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero everything outside the head mask eroded by 6-12 % of the image side."""
    from core.imaging.preprocess import head_mask

    mask = head_mask(unit).astype(np.uint8)
    radius = max(1, int(round(rng.uniform(0.06, 0.12) * unit.shape[0])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    inner = cv2.erode(mask, kernel)
    return unit * inner if inner.sum() > 0.1 * mask.sum() else unit


def _acquisition_intensity(x: np.ndarray, rng: np.random.Generator, cfg: AcquisitionConfig) -> np.ndarray:
    """Everything but the geometry: skull, windowing, contrast curve, bias, resolution, sharpness, noise, JPEG."""
    h, w = x.shape
    if rng.random() < cfg.skull_strip_p:
        x = _strip_skull(x, rng)
    lo = rng.uniform(0.0, cfg.window_low)
    hi = 1.0 - rng.uniform(0.0, cfg.window_high)
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    x = x ** float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1]))))
    if rng.random() < cfg.bias_p:
        x = x * _bias_field(rng, (h, w), cfg.bias_amplitude)
    if rng.random() < cfg.lowres_p:
        scale = rng.uniform(*cfg.lowres_scale)
        small = cv2.resize(x, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.blur_p:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.3))
    elif rng.random() < cfg.sharpen_p:
        x = cv2.addWeighted(x, 1.6, cv2.GaussianBlur(x, (0, 0), 1.0), -0.6, 0.0)
    if rng.random() < cfg.noise_p:
        x = x + rng.normal(0.0, rng.uniform(0.005, cfg.noise_sigma), x.shape).astype(np.float32) * (x > 0.02)
    x = np.clip(x, 0.0, 1.0)
    if rng.random() < cfg.jpeg_p:
        x = _jpeg(x, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return x


def _acquisition_geometry(rng: np.random.Generator, shape: tuple[int, int], cfg: AcquisitionConfig
                          ) -> tuple[np.ndarray, bool]:
    h, w = shape
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-cfg.rotation_deg, cfg.rotation_deg),
                                     rng.uniform(*cfg.zoom))
    matrix[0, 2] += rng.uniform(-cfg.shift, cfg.shift) * w
    matrix[1, 2] += rng.uniform(-cfg.shift, cfg.shift) * h
    return matrix, bool(cfg.hflip and rng.random() < 0.5)


def thick_slices(image: np.ndarray, factor: float) -> np.ndarray:
    """A re-sliced (coronal or sagittal) view of a volume acquired in thick axial slices: each run of
    ``factor`` rows averaged (the slice profile), then linearly interpolated back to the row count, as
    resampling to 1 mm does. Rows are the superior-inferior axis of a display-oriented slice; float32
    in [0, 1]."""
    x = _unit(image)
    h, w = x.shape
    rows = max(4, int(round(h / max(float(factor), 1.0))))
    return cv2.resize(cv2.resize(x, (w, rows), interpolation=cv2.INTER_AREA), (w, h),
                      interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def augment_acquisition(image: np.ndarray, rng: np.random.Generator,
                        cfg: AcquisitionConfig = AcquisitionConfig()) -> np.ndarray:
    """Augment one cropped uint8 or [0, 1] slice against acquisition shortcuts; float32 in [0, 1]."""
    x = _acquisition_intensity(_unit(image), rng, cfg)
    matrix, flip = _acquisition_geometry(rng, x.shape, cfg)
    return np.clip(warp(x, matrix, flip), 0.0, 1.0).astype(np.float32)


def augment_acquisition_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                             cfg: AcquisitionConfig = AcquisitionConfig()) -> tuple[np.ndarray, np.ndarray]:
    """:func:`augment_acquisition` of an image and the same geometry applied to its mask (uint8 0/1)."""
    x = _acquisition_intensity(_unit(image), rng, cfg)
    matrix, flip = _acquisition_geometry(rng, x.shape, cfg)
    return (np.clip(warp(x, matrix, flip), 0.0, 1.0).astype(np.float32),
            warp(np.asarray(mask).astype(np.uint8), matrix, flip, is_mask=True))
