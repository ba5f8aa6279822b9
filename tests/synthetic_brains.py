"""Synthetic axial 'slices' and the copies near-duplicate detection must find (generated here, never real data)."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import ellipse


def brain(seed: int, size: int = 256) -> np.ndarray:
    """A procedural axial 'slice': scalp ring, textured brain, two ventricles, an off-centre tumour.

    The tumour is always on the right, so the image is clearly not left-right symmetric.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    cy, cx = size / 2 + rng.uniform(-8, 8), size / 2 + rng.uniform(-8, 8)
    ry, rx = size * rng.uniform(0.36, 0.44), size * rng.uniform(0.28, 0.36)
    rot = rng.uniform(-0.3, 0.3)
    img[ellipse(cy, cx, ry, rx, (size, size), rotation=rot)] = 0.85
    inner = ellipse(cy, cx, ry - 8, rx - 8, (size, size), rotation=rot)
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    img[inner] = 0.45 + 0.9 * texture[inner]
    for side in (-1, 1):
        img[ellipse(cy + rng.uniform(-15, 15), cx + side * rng.uniform(6, 16), rng.uniform(10, 22),
                    rng.uniform(4, 8), (size, size), rotation=rng.uniform(-0.5, 0.5))] = 0.1
    img[ellipse(cy + rng.uniform(-30, 30), cx + rng.uniform(20, 40), rng.uniform(8, 18),
                rng.uniform(8, 18), (size, size))] = 1.0
    return np.clip(ndimage.gaussian_filter(img, 1.0) * 255, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int = 70) -> np.ndarray:
    """``img`` after a JPEG round trip at ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def reencoded(img: np.ndarray) -> np.ndarray:
    """Resized to 0.8x, 12 grey levels brighter, JPEG quality 70."""
    h, w = img.shape
    small = cv2.resize(img, (int(w * 0.8), int(h * 0.8)), interpolation=cv2.INTER_AREA)
    return jpeg(np.clip(small.astype(np.int16) + 12, 0, 255).astype(np.uint8), 70)


def shifted(img: np.ndarray, dy: int = 10, dx: int = -6) -> np.ndarray:
    """``img`` moved by ``(dy, dx)`` pixels, the uncovered edge black."""
    out = np.zeros_like(img)
    out[max(dy, 0):img.shape[0] + min(dy, 0), max(dx, 0):img.shape[1] + min(dx, 0)] = \
        img[max(-dy, 0):img.shape[0] - max(dy, 0), max(-dx, 0):img.shape[1] - max(dx, 0)]
    return out


def gamma(img: np.ndarray, g: float = 0.6) -> np.ndarray:
    """A non-linear contrast change of a uint8 image."""
    return np.round(255 * (img / 255.0) ** g).astype(np.uint8)
