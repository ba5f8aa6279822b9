"""A non-MRI image set built on the fly, for calibrating and testing the input guard.

Nothing here is downloaded or committed: every image is drawn by code (seeded, deterministic)
or comes from the natural images that scikit-image ships inside its package
(``skimage.data``; only files bundled with the wheel, never the ones it would fetch).

Groups (``NonMRIImage.group``):

* ``photo``     synthetic colour scenes and the same scenes converted to grey
* ``document``  text pages, tables, forms, dark-mode text, screenshots with panels
* ``xray``      procedural chest radiographs (body, lungs, ribs, spine, heart shadow)
* ``noise``     uniform / Gaussian / salt-and-pepper / smooth noise, stripes, checkerboards
* ``blank``     constant frames, faint gradients
* ``skimage``   scikit-image's bundled natural images (``camera``, ``coins``, ``text``...)

``skimage.data.shepp_logan_phantom`` is deliberately left out: it is a synthetic *head*
phantom, and a guard that accepts it is right to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

#: Bundled scikit-image images used (names of ``skimage.data`` functions).
SKIMAGE_NAMES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
    "logo", "microaneurysms", "moon", "page", "retina", "rocket", "text",
)
#: Faces of ``skimage.data.lfw_subset`` (its first 100 images are faces, 25x25 px; upscaled), evenly spaced.
N_FACES = 12
GROUPS = ("photo", "document", "xray", "noise", "blank", "skimage")


@dataclass(frozen=True)
class NonMRIImage:
    """One non-MRI image: ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8, its group and a name."""

    name: str
    group: str
    pixels: np.ndarray


# --------------------------------------------------------------------------- drawing helpers

def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth noise in [0, 1]."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def grey(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance of an RGB uint8 image."""
    return _to_u8((rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0)


# --------------------------------------------------------------------------- groups

def photo(seed: int, size: tuple[int, int] = (192, 256)) -> np.ndarray:
    """A synthetic outdoor colour scene: sky gradient, horizon, textured ground, objects."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3), np.float32)
    horizon = int(h * rng.uniform(0.35, 0.65))
    sky_top, sky_low = rng.uniform(0.3, 1.0, 3), rng.uniform(0.5, 1.0, 3)
    t = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = sky_top * (1 - t) + sky_low * t
    ground = rng.uniform(0.1, 0.7, 3)
    texture = _smooth(rng, (h - horizon, w), rng.uniform(1, 6))[..., None]
    img[horizon:] = ground * (0.6 + 0.8 * texture)
    for _ in range(rng.integers(2, 7)):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(8, h // 3), rng.integers(8, w // 4)
        yy, xx = np.ogrid[:h, :w]
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[blob] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.02, img.shape)
    return _to_u8(np.clip(img, 0, 1))


def _words(rng: np.random.Generator, n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(list(letters), rng.integers(2, 9))) for _ in range(n))


def document(seed: int, size: tuple[int, int] = (280, 216)) -> np.ndarray:
    """A page: white paper, lines of text, sometimes a heading, a table or a form; maybe dark mode."""
    rng = np.random.default_rng(seed)
    h, w = size
    kind = seed % 5
    dark = kind == 4
    paper = int(rng.integers(225, 256)) if not dark else int(rng.integers(20, 45))
    ink = int(rng.integers(0, 60)) if not dark else int(rng.integers(190, 240))
    page = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(page)
    margin = int(rng.integers(10, 30))
    y = margin
    if kind in (1, 2):
        draw.rectangle([margin, y, w - margin, y + 14], fill=ink)
        y += 24
    while y < h - margin:
        draw.text((margin, y), _words(rng, int(rng.integers(3, 9))), fill=ink)
        y += int(rng.integers(11, 16))
        if kind == 2 and rng.random() < 0.15:
            draw.line([margin, y, w - margin, y], fill=ink)
        if kind == 3 and rng.random() < 0.2:
            draw.rectangle([margin, y, margin + int(rng.integers(40, w - 2 * margin)), y + 12], outline=ink)
            y += 16
    arr = np.asarray(page, np.float32) / 255.0
    if kind == 1:  # a "scan": slight blur, uneven illumination, noise
        arr = ndimage.gaussian_filter(arr, 0.6) * (0.9 + 0.1 * _smooth(rng, (h, w), 40)) + rng.normal(0, 0.02, (h, w))
    return _to_u8(np.clip(arr, 0, 1))


def screenshot(seed: int, size: tuple[int, int] = (200, 300)) -> np.ndarray:
    """A grey user-interface screenshot: title bar, side panel, buttons, text."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = Image.new("L", (w, h), int(rng.integers(200, 250)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, w, 18], fill=int(rng.integers(40, 120)))
    side = int(rng.integers(50, 90))
    draw.rectangle([0, 18, side, h], fill=int(rng.integers(150, 210)))
    for i in range(int(rng.integers(3, 8))):
        y = 30 + 22 * i
        draw.rectangle([side + 12, y, side + 80, y + 14], outline=20, fill=int(rng.integers(90, 230)))
        draw.text((side + 95, y + 2), _words(rng, 3), fill=10)
    return np.asarray(img)


def chest_xray(seed: int, size: int = 256) -> np.ndarray:
    """A procedural PA chest radiograph: bright soft tissue, dark lungs, ribs, spine, heart."""
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / h, (xx - w / 2) / (w / 2)
    body_half = 0.85 + rng.uniform(-0.1, 0.15) + 0.1 * y            # widens downwards
    body = (np.abs(x) < body_half) & (y > 0.02)
    img = np.where(body, 0.72, rng.uniform(0.0, 0.15))
    shoulder = (y < 0.18) & (np.abs(x) > 0.55)
    img = np.where(shoulder & body, 0.8, img)
    for side in (-1, 1):
        cx, cy = side * rng.uniform(0.40, 0.50), rng.uniform(0.45, 0.52)
        rx, ry = rng.uniform(0.26, 0.34), rng.uniform(0.30, 0.38)
        lung = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
        img = np.where(lung, 0.18 + 0.1 * _smooth(rng, (h, w), 6), img)
    spine = np.abs(x) < 0.09
    img = np.where(spine & body, 0.86, img)
    heart = ((x + 0.12) / 0.33) ** 2 + ((y - 0.66) / 0.2) ** 2 <= 1
    img = np.where(heart, np.maximum(img, 0.7), img)
    for k in range(9):                                                # ribs: bright arcs over the lungs
        y0 = 0.2 + 0.075 * k
        arc = np.abs(y - (y0 + 0.12 * x ** 2)) < 0.012
        img = np.where(arc & (np.abs(x) > 0.1) & (np.abs(x) < 0.85), img + 0.22, img)
    diaphragm = y > 0.84 + 0.05 * np.abs(x)
    img = np.where(diaphragm & body, 0.78, img)
    img = ndimage.gaussian_filter(img, 1.2) + rng.normal(0, 0.015, (h, w))
    if rng.random() < 0.5:                                            # the film marker in a corner
        img[8:22, w - 30:w - 10] = 0.97
    return _to_u8(np.clip(img, 0, 1))


def noise(seed: int, size: tuple[int, int] = (192, 192)) -> np.ndarray:
    """A noise or pattern image; the kind cycles with ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = size
    kind = seed % 6
    if kind == 0:
        arr = rng.uniform(0, 1, size)
    elif kind == 1:
        arr = np.clip(rng.normal(0.5, 0.2, size), 0, 1)
    elif kind == 2:
        arr = (rng.random(size) < 0.5).astype(np.float32)
    elif kind == 3:
        arr = _smooth(rng, size, rng.uniform(2, 10))
    elif kind == 4:
        period = int(rng.integers(6, 30))
        arr = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(w)[None, :] / period) * np.ones((h, 1))
    else:
        cell = int(rng.integers(8, 40))
        arr = ((np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2).astype(np.float32)
    return _to_u8(arr)


def blank(seed: int, size: tuple[int, int] = (160, 160)) -> np.ndarray:
    """A constant frame or a faint gradient, sometimes with a little sensor noise."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0, 1)
    arr = np.full(size, level, np.float32)
    if seed % 3 == 1:
        arr = arr + np.linspace(0, 0.015, size[1])[None, :]
    if seed % 3 == 2:
        arr = arr + rng.normal(0, 0.005, size)
    return _to_u8(np.clip(arr, 0, 1))


def skimage_images() -> Iterator[NonMRIImage]:
    """scikit-image's bundled images (a file that is not bundled is skipped, never fetched)."""
    from skimage import data as skdata
    from skimage import img_as_ubyte

    for name in SKIMAGE_NAMES:
        try:
            arr = getattr(skdata, name)()
        except Exception:  # not bundled with this version (it would need a download): skip it
            continue
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            arr = img_as_ubyte(arr.astype(np.float64) / max(float(arr.max()), 1e-9) if arr.dtype == bool
                               or arr.max() > 1 else arr)
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        yield NonMRIImage(f"skimage_{name}", "skimage", arr)
        if arr.ndim == 3:
            yield NonMRIImage(f"skimage_{name}_grey", "skimage", grey(arr))
    try:
        faces = skdata.lfw_subset()
    except Exception:
        return
    for i in np.linspace(0, min(100, len(faces)) - 1, N_FACES).astype(int):
        face = cv2.resize(np.asarray(faces[i], np.float32), (100, 100), interpolation=cv2.INTER_CUBIC)
        yield NonMRIImage(f"skimage_lfw_face_{i}", "skimage", _to_u8(np.clip(face, 0, 1)))


def non_mri_set(per_group: int = 20, seed: int = 0) -> list[NonMRIImage]:
    """The whole set: ``per_group`` images of each drawn group plus the scikit-image images."""
    out: list[NonMRIImage] = []
    for i in range(per_group):
        s = seed * 1000 + i
        scene = photo(s)
        out.append(NonMRIImage(f"photo_{i}", "photo", scene))
        out.append(NonMRIImage(f"photo_grey_{i}", "photo", grey(scene)))
        out.append(NonMRIImage(f"document_{i}", "document",
                               document(s) if i % 4 else screenshot(s)))
        out.append(NonMRIImage(f"xray_{i}", "xray", chest_xray(s)))
        out.append(NonMRIImage(f"noise_{i}", "noise", noise(s)))
        out.append(NonMRIImage(f"blank_{i}", "blank", blank(s)))
    out.extend(skimage_images())
    return out


def to_slice(item: NonMRIImage):
    """The image as the app would read it (through a PNG upload), as a :class:`core.readers.decoded.Slice`."""
    import io

    from core.readers.slice import read_slice

    buffer = io.BytesIO()
    Image.fromarray(item.pixels).save(buffer, format="PNG")
    return read_slice(buffer.getvalue(), f"{item.name}.png")
