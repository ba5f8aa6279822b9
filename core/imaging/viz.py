"""Overlays: greyscale slices and masks or heat-maps in, ``(H, W, 3)`` uint8 RGB arrays out."""
from __future__ import annotations

import cv2
import numpy as np

from core.imaging.preprocess import to_uint8

GREEN = (0, 200, 0)
RED = (230, 30, 30)
#: The expert's outline drawn over a model's overlay.
EXPERT_COLOUR = (255, 210, 0)
CLASS_COLOURS = {"glioma": "#d62728", "meningioma": "#ff7f0e", "notumor": "#2ca02c", "pituitary": "#1f77b4"}


def grey_to_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` greyscale of any dtype → ``(H, W, 3)`` uint8."""
    grey = to_uint8(image)
    return np.repeat(grey[..., None], 3, axis=2)


def contour_pixels(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Boolean ``(H, W)`` outline of a binary mask, ``thickness`` pixels wide."""
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return (m - cv2.erode(m, kernel, iterations=max(1, thickness))).astype(bool)


def overlay_mask(image: np.ndarray, mask: np.ndarray, style: str = "fill", opacity: float = 0.4,
                 colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """Draw a mask over a greyscale slice: ``"fill"`` (green blend, as originally) or ``"contour"`` (red).

    Returns ``(H, W, 3)`` uint8. ``opacity`` in [0, 1] is the blend weight of the colour.
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    rgb = grey_to_rgb(image).astype(np.float32)
    colour = np.asarray(colour or (GREEN if style == "fill" else RED), dtype=np.float32)
    region = mask.astype(bool) if style == "fill" else contour_pixels(mask, max(1, round(min(mask.shape) / 200)))
    alpha = float(np.clip(opacity, 0.0, 1.0)) if style == "fill" else max(0.6, float(opacity))
    rgb[region] = (1 - alpha) * rgb[region] + alpha * colour
    return np.clip(rgb, 0, 255).astype(np.uint8)


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = EXPERT_COLOUR) -> np.ndarray:
    """A copy of an ``(H, W, 3)`` uint8 image with the outline of ``mask`` drawn opaque in ``colour``."""
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {rgb.shape[:2]} differ in size")
    out = np.array(rgb, dtype=np.uint8, copy=True)
    out[contour_pixels(mask, max(1, round(min(mask.shape) / 200)))] = colour
    return out


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat-map (JET colours) over a greyscale slice; ``(H, W, 3)`` uint8."""
    heat8 = np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).astype(np.float32)
    base = grey_to_rgb(image).astype(np.float32)
    weight = float(np.clip(opacity, 0, 1)) * np.clip(heat, 0, 1)[..., None] ** 0.5
    return np.clip((1 - weight) * base + weight * colour, 0, 255).astype(np.uint8)
