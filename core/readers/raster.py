"""PNG, JPEG, TIFF and BMP slices (Pillow): size limits checked from the header before any decoding,
large images decoded reduced, EXIF orientation applied, colour converted to luminance."""
from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np

from core import config
from core.errors import CorruptFile, ImageTooLarge, InputError, UnsupportedFile
from core.readers.budgets import (
    check_frame,
    check_frames,
    check_side,
    note_reduction,
    pick_frame,
    reduction_factor,
    scaled_spacing,
    spacing_checked,
)
from core.readers.decoded import Slice, SliceSource
from core.readers.detect import FORMAT_LABELS
from core.readers.greyscale import rgb_to_luminance, unit_range

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
_MODE_BITS = {"1": "1", "L": "8", "LA": "8", "P": "8 (palette)", "PA": "8 (palette)",
              "RGB": "8x3", "RGBA": "8x4", "CMYK": "8x4", "YCbCr": "8x3", "I;16": "16",
              "I;16B": "16", "I;16L": "16", "I;16N": "16", "I": "32 (integer)", "F": "32 (float)"}


def _open_raster(data: bytes, name: str, fmt: str) -> Any:
    """Open lazily (header only) and enforce the size limits before any decoding."""
    from PIL import Image, UnidentifiedImageError

    label = FORMAT_LABELS[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:
        size = _header_size(data, fmt)
        if size is not None:
            check_side(size[1], size[0], name)
        raise ImageTooLarge(
            f"'{name}' is too large to open safely ({exc}). The largest side accepted is "
            f"{config.MAX_IMAGE_SIDE} pixels."
        ) from exc
    except UnidentifiedImageError as exc:
        raise CorruptFile(
            f"'{name}' does not contain valid {label} data: it is damaged or not really a "
            f"{label} file."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptFile(f"'{name}' is a damaged {label} file: {exc}.") from exc
    width, height = img.size
    check_frame(height, width, name)
    return img


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read straight from a PNG or BMP header, for error messages."""
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "bmp" and len(data) >= 26 and int.from_bytes(data[14:18], "little") >= 40:
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    return None


def _tiff_spacing(img: Any) -> tuple[float, float] | None:
    """(row, col) spacing from TIFF resolution tags when the unit is inch or cm.

    72 and 96 dpi are the defaults many programs write without meaning them, so are ignored.
    """
    tags = getattr(img, "tag_v2", None)
    if tags is None or 282 not in tags or 283 not in tags:
        return None
    unit = int(tags.get(296, 2))
    try:
        xres, yres = float(tags[282]), float(tags[283])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if xres <= 0 or yres <= 0 or not np.isfinite([xres, yres]).all():
        return None
    if unit == 2:
        if xres in (72.0, 96.0) and yres in (72.0, 96.0):
            return None
        mm = 25.4
    elif unit == 3:
        mm = 10.0
    else:
        return None
    return (mm / yres, mm / xres)


def raster_source(data: bytes, name: str, fmt: str) -> SliceSource:
    """One image or a multi-page file, with its displayed ``(H, W)`` (header and EXIF only)."""
    img = _open_raster(data, name, fmt)
    n_frames = int(getattr(img, "n_frames", 1) or 1)
    check_frames(n_frames, name)
    width, height = img.size
    try:
        if int(img.getexif().get(0x0112, 1)) in (5, 6, 7, 8):
            width, height = height, width
    except Exception:  # a broken EXIF block only loses the orientation hint here
        pass
    if n_frames > 1:
        return SliceSource("multiframe", (n_frames, height, width), n_frames, fmt)
    return SliceSource("image", (height, width), 1, fmt)


def read_raster(data: bytes, name: str, fmt: str, frame: int | None) -> Slice:
    """Page ``frame`` (default 0) of a PNG, JPEG, TIFF or BMP as greyscale, EXIF orientation applied."""
    from PIL import ImageOps

    label = FORMAT_LABELS[fmt]
    img = _open_raster(data, name, fmt)
    n_frames = int(getattr(img, "n_frames", 1) or 1)
    check_frames(n_frames, name)
    index = pick_frame(frame, n_frames, name)
    _check_apng_seek(img, index, name)
    try:
        if index:
            img.seek(index)
            check_frame(img.size[1], img.size[0], name)
        spacing = _tiff_spacing(img) if fmt == "tiff" else None
        orientation = int(img.getexif().get(0x0112, 1) or 1)
        mode = img.mode
        stored = (img.size[1], img.size[0])
        img = _decode_reduced(img)
        decoded = (img.size[1], img.size[0])
        spacing = scaled_spacing(spacing, stored, decoded)
        img = ImageOps.exif_transpose(img)
        work = img.mode
        if work in ("1", "L", "LA", "La"):
            arr = np.asarray(img if work == "L" else img.convert("L"))
            image, colour = arr.astype(np.float32) / 255.0, 0.0
        elif work in ("P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
            rgb = np.asarray(img if work in ("RGB", "RGBA") else img.convert("RGB"))
            image, colour = rgb_to_luminance(rgb, 255.0)
        elif work.startswith("I;16") or work in ("I", "F"):
            # 16-bit / 32-bit / float: robust percentile window (never uint8 here).
            image, colour = unit_range(np.asarray(img)), 0.0
        else:
            raise UnsupportedFile(
                f"'{name}' uses the {label} pixel mode '{mode}', which this app cannot read."
            )
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptFile(
            f"'{name}' is a damaged or truncated {label} file and cannot be decoded ({exc})."
        ) from exc
    if spacing is not None and orientation in (5, 6, 7, 8):
        spacing = (spacing[1], spacing[0])
    metadata = {
        "format": label,
        "bit depth": _MODE_BITS.get(mode, mode),
        "mode": mode,
        "original dtype": _raster_dtype(mode),
        "shape": f"{image.shape[0]}x{image.shape[1]}",
    }
    note_reduction(metadata, stored, decoded)
    spacing = spacing_checked(spacing, metadata)
    if n_frames > 1:
        metadata["frame"] = f"{index} of {n_frames}"
    if orientation != 1:
        metadata["EXIF orientation applied"] = str(orientation)
    if mode.startswith("I") or mode == "F":
        metadata["window"] = "percentile 0.5-99.5"
    if "A" in mode:
        metadata["alpha channel"] = "ignored"
    return Slice(
        image=np.ascontiguousarray(image, dtype=np.float32), spacing_mm=spacing,
        source_format=fmt, name=name, metadata=metadata, identifiers={}, colourfulness=colour,
    )


def _check_apng_seek(img: Any, index: int, name: str) -> None:
    """Frame ``index`` of an animated PNG is reached by decoding every frame before it: bound that."""
    width, height = img.size
    if img.format == "PNG" and index > 0 and (index + 1) * width * height > config.MAX_FRAME_PIXELS:
        raise ImageTooLarge(
            f"'{name}' is an animated PNG: showing frame {index} means decoding {index + 1} frames of "
            f"{width}x{height} pixels, more than the {config.MAX_FRAME_PIXELS / 2**20:.0f} MP budget. "
            "Export that frame as its own file."
        )


#: Modes Pillow cannot ``reduce`` and the mode each is converted to first.
_REDUCIBLE_MODES = {"1": "L", "P": "RGB", "PA": "RGBA"}


def _decode_reduced(img: Any) -> Any:
    """Decode ``img`` with its longest side at most :data:`config.MAX_DECODED_SIDE`.

    JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (``draft``), so the full-size image never
    exists; other formats are decoded, then averaged over blocks (``reduce``).
    """
    width, height = img.size
    factor = reduction_factor(height, width)
    if factor > 1 and img.format in ("JPEG", "MPO"):
        img.draft(img.mode, (math.ceil(width / factor), math.ceil(height / factor)))
    img.load()
    factor = reduction_factor(img.size[1], img.size[0])
    if factor == 1:
        return img
    target = _REDUCIBLE_MODES.get(img.mode, "I" if img.mode.startswith("I;16") else img.mode)
    if img.mode == "P" and "transparency" in img.info:
        target = "RGBA"
    if target != img.mode:
        img = img.convert(target)
    return img.reduce(factor)


def _raster_dtype(mode: str) -> str:
    if mode.startswith("I;16"):
        return "uint16"
    return {"I": "int32", "F": "float32"}.get(mode, "uint8")
