"""Read one 2D greyscale slice from an uploaded file: PNG, JPEG, TIFF, BMP, DICOM or NIfTI.

Every reader returns a :class:`Slice` whose ``image`` is float32 in [0, 1], ready to display.
Bad input raises a :class:`core.errors.InputError` subclass with a message meant for the
person who uploaded the file; no raw decoder exception escapes :func:`read_slice`.

Conventions callers rely on:

* ``spacing_mm`` is ``(row, col)``: the height and the width of one pixel of the *returned*
  image, in millimetres, or ``None`` when the file does not state it.
* NIfTI volumes are reoriented to canonical RAS+ first; ``axis`` 0/1/2 then means
  sagittal/coronal/axial. Returned slices have superior (or anterior, for axial) at the top.
  Axial and coronal slices use the radiological convention (patient right on image left);
  sagittal slices have posterior on the left, anterior on the right. ``metadata["orientation"]``
  names the four image edges, e.g. ``"top=A bottom=P left=R right=L"``.
* DICOM: the modality LUT (rescale) is applied, then the file's first VOI window; without a
  window, a percentile window (:func:`core.imaging.preprocess.to_unit_range`). MONOCHROME1 is inverted.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.errors import (
    CorruptFile,
    EmptyFile,
    EmptyImage,
    ImageTooLarge,
    InputError,
    NeedsSliceSelection,
    NoPixelData,
    UnsupportedFile,
)
from core.imaging.preprocess import to_unit_range

#: Extensions for a Streamlit uploader ``type=`` list ("gz" lets ``.nii.gz`` through).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm", "dicom", "nii", "gz",
)

_EXTENSION_FORMATS: dict[str, str] = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".dcm": "dicom", ".dicom": "dicom", ".nii": "nifti", ".nii.gz": "nifti",
}
_FORMAT_LABELS: dict[str, str] = {
    "png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "dicom": "DICOM", "nifti": "NIfTI",
}
_SUPPORTED_TEXT = "PNG, JPEG, TIFF, BMP, DICOM (.dcm) or NIfTI (.nii / .nii.gz)"

#: Largest decompressed ``.nii.gz`` accepted (guards against gzip bombs).
MAX_DECOMPRESSED_BYTES = config.MAX_NIFTI_BYTES

_PLANES = ("sagittal", "coronal", "axial")
#: Image edges (top, bottom, left, right) of a returned NIfTI slice, per axis.
_NIFTI_EDGES = {0: ("S", "I", "P", "A"), 1: ("S", "I", "R", "L"), 2: ("A", "P", "R", "L")}

#: DICOM attributes that identify a patient, a visit or a place: kept out of ``metadata``.
IDENTIFYING_DICOM_FIELDS: tuple[str, ...] = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientAddress", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "StationName",
    "DeviceSerialNumber", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "StudyID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
)


@dataclass
class Slice:
    """One display-ready greyscale slice and what is known about it."""

    image: np.ndarray
    spacing_mm: tuple[float, float] | None
    source_format: str
    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    colourfulness: float = 0.0

    @property
    def image_uint8(self) -> np.ndarray:
        """The image as uint8 0-255."""
        return np.round(self.image * 255.0).astype(np.uint8)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))


@dataclass(frozen=True)
class SliceSource:
    """What a file holds before a slice is chosen (headers only; pixels are not decoded)."""

    kind: str
    shape: tuple[int, ...]
    n_frames: int
    source_format: str


# --------------------------------------------------------------------------- format detection

def _lower_name(name: str) -> str:
    return Path(str(name)).name.lower()


def _is_bmp(data: bytes) -> bool:
    if not data.startswith(b"BM") or len(data) < 18:
        return False
    return int.from_bytes(data[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124)


def _nifti_magic(header: bytes) -> str | None:
    """``"nifti1"``/``"nifti2"`` for a single-file NIfTI header, ``"pair"`` for .hdr/.img, else None."""
    if len(header) >= 348:
        size = header[:4]
        if size in ((348).to_bytes(4, "little"), (348).to_bytes(4, "big")):
            magic = header[344:348]
            if magic == b"n+1\x00":
                return "nifti1"
            if magic == b"ni1\x00":
                return "pair"
    if len(header) >= 540:
        size = header[:4]
        if size in ((540).to_bytes(4, "little"), (540).to_bytes(4, "big")):
            magic = header[4:8]
            if magic == b"n+2\x00":
                return "nifti2"
            if magic == b"ni2\x00":
                return "pair"
    return None


def _gunzip_head(data: bytes, n: int = 544) -> bytes:
    """First ``n`` decompressed bytes of gzip ``data``.

    Raises ``zlib.error`` if it is damaged, ``EOFError`` if it ends before ``n`` bytes without
    reaching the end of the gzip stream (truncated).
    """
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = decomp.decompress(data[:65536], n)
    if len(out) < n and not decomp.eof and len(data) <= 65536:
        raise EOFError("the compressed data ends early (truncated file)")
    return out


def detect_format(data: bytes, name: str) -> str:
    """Format of ``data``: magic bytes first, then the extension of ``name``.

    Returns one of ``"png" "jpeg" "tiff" "bmp" "dicom" "nifti"``. A gzip file is NIfTI only when
    its decompressed header is a NIfTI header. Raises :class:`EmptyFile`,
    :class:`UnsupportedFile` or (damaged gzip) :class:`CorruptFile`.
    """
    if not data:
        raise EmptyFile(f"'{name}' is empty (0 bytes). Upload the image file again.")
    lower = _lower_name(name)
    head = bytes(data[:1024])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = _gunzip_head(data)
        except (zlib.error, EOFError) as exc:
            raise CorruptFile(
                f"'{name}' is a gzip file but it is damaged and cannot be decompressed ({exc})."
            ) from exc
        kind = _nifti_magic(inner)
        if kind in ("nifti1", "nifti2"):
            return "nifti"
        if kind == "pair":
            raise UnsupportedFile(
                f"'{name}' is a NIfTI header without its image (.hdr/.img pair). "
                "Upload a single-file .nii or .nii.gz instead."
            )
        raise UnsupportedFile(
            f"'{name}' is a gzip-compressed file but not a NIfTI image. Only .nii.gz files may be "
            f"compressed; other images must be uploaded as {_SUPPORTED_TEXT}."
        )
    nifti = _nifti_magic(head)
    if nifti in ("nifti1", "nifti2"):
        return "nifti"
    if nifti == "pair":
        raise UnsupportedFile(
            f"'{name}' is a NIfTI header without its image (.hdr/.img pair). "
            "Upload a single-file .nii or .nii.gz instead."
        )
    if _is_bmp(head):
        return "bmp"
    if lower.endswith(".nii.gz"):
        return "nifti"
    ext = os.path.splitext(lower)[1]
    if ext in _EXTENSION_FORMATS:
        return _EXTENSION_FORMATS[ext]
    if ext == ".gz":
        raise UnsupportedFile(
            f"'{name}' is named .gz but is not a gzip-compressed NIfTI (.nii.gz) image."
        )
    shown = ext or "no extension"
    raise UnsupportedFile(
        f"'{name}' ({shown}) is not a file type this app reads. Upload {_SUPPORTED_TEXT}."
    )


def _check_bytes(data: bytes, name: str) -> None:
    if not data:
        raise EmptyFile(f"'{name}' is empty (0 bytes). Upload the image file again.")
    if len(data) > config.MAX_SLICE_BYTES:
        raise ImageTooLarge(
            f"'{name}' is {len(data) / 2**20:.0f} MB; the limit is "
            f"{config.MAX_SLICE_BYTES / 2**20:.0f} MB per upload."
        )


def _check_side(height: int, width: int, name: str) -> None:
    if max(height, width) > config.MAX_IMAGE_SIDE:
        raise ImageTooLarge(
            f"'{name}' is {width}x{height} pixels; the largest side accepted is "
            f"{config.MAX_IMAGE_SIDE} pixels. Downscale the image and upload it again."
        )


def _check_frame(height: int, width: int, name: str) -> None:
    """Refuse a frame with no pixels, a side over the limit or more than the pixel budget."""
    if height <= 0 or width <= 0:
        raise EmptyImage(
            f"'{name}' declares an image of {width}x{height} pixels: it holds no image. "
            "The file is damaged or was not exported correctly."
        )
    _check_side(height, width, name)
    if height * width > config.MAX_FRAME_PIXELS:
        raise ImageTooLarge(
            f"'{name}' is {width}x{height} pixels ({height * width / 2**20:.0f} MP); the limit is "
            f"{config.MAX_FRAME_PIXELS / 2**20:.0f} MP per image. Downscale it and upload it again."
        )


def _check_frames(n_frames: int, name: str) -> None:
    if n_frames > config.MAX_FRAMES:
        raise ImageTooLarge(
            f"'{name}' holds {n_frames} frames; the limit is {config.MAX_FRAMES}. "
            "Export the slices you need as separate files."
        )


def plausible_spacing(spacing: tuple[float, float] | None) -> tuple[float, float] | None:
    """``spacing`` when every value is finite and within :data:`core.config.SPACING_RANGE_MM`.

    Anything else (0, negative, 1e-300, 1e300, NaN) gives ``None``: the spacing is unknown.
    """
    if spacing is None:
        return None
    lo, hi = config.SPACING_RANGE_MM
    values = tuple(float(v) for v in spacing)
    if all(math.isfinite(v) and lo <= v <= hi for v in values):
        return values  # type: ignore[return-value]
    return None


def _spacing_checked(spacing: tuple[float, float] | None, metadata: dict[str, str]) -> tuple[float, float] | None:
    """:func:`plausible_spacing`, noting in ``metadata`` a stated spacing that was ignored."""
    checked = plausible_spacing(spacing)
    if spacing is not None and checked is None:
        lo, hi = config.SPACING_RANGE_MM
        metadata["pixel spacing"] = (
            f"ignored: {spacing[0]:g} x {spacing[1]:g} mm is outside {lo:g}-{hi:g} mm, "
            "so measurements are in pixels"
        )
    return checked


def reduction_factor(height: int, width: int) -> int:
    """Smallest integer factor that brings the longest side to :data:`config.MAX_DECODED_SIDE`."""
    return max(1, math.ceil(max(height, width) / config.MAX_DECODED_SIDE))


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks over the first two axes (float64; edge blocks partial).

    Works one band of rows at a time, so a strided view of a huge frame is never copied or cast
    whole (at most ``factor`` rows exist as float64 at once).
    """
    values = np.asarray(arr)
    if factor <= 1:
        return values.astype(np.float64)
    height, width = values.shape[:2]
    col_starts = np.arange(0, width, factor)
    col_counts = np.diff(np.append(col_starts, width)).astype(np.float64)
    col_counts = col_counts.reshape((-1,) + (1,) * (values.ndim - 2))
    out = np.empty((math.ceil(height / factor), col_starts.size) + values.shape[2:], dtype=np.float64)
    for k, top in enumerate(range(0, height, factor)):
        band = values[top:top + factor]
        sums = np.add.reduceat(band.sum(axis=0, dtype=np.float64), col_starts, axis=0)
        out[k] = sums / (col_counts * band.shape[0])
    return out


def _scaled_spacing(
    spacing: tuple[float, float] | None, before: tuple[int, int], after: tuple[int, int]
) -> tuple[float, float] | None:
    """Spacing of a reduced image: each pixel now covers ``before / after`` stored pixels."""
    if spacing is None or before == after:
        return spacing
    return (spacing[0] * before[0] / after[0], spacing[1] * before[1] / after[1])


def _note_reduction(metadata: dict[str, str], before: tuple[int, int], after: tuple[int, int]) -> None:
    if before != after:
        metadata["reduced"] = (
            f"stored {before[0]}x{before[1]}, decoded at {after[0]}x{after[1]} (largest side "
            f"{config.MAX_DECODED_SIDE} px); the pixel spacing is scaled to match"
        )


def _pick_frame(frame: int | None, n_frames: int, name: str) -> int:
    if frame is None:
        return 0
    if not 0 <= int(frame) < n_frames:
        raise InputError(
            f"Frame {frame} does not exist in '{name}': valid frames are 0 to {n_frames - 1}."
        )
    return int(frame)


# --------------------------------------------------------------------------- raster (Pillow)

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
_MODE_BITS = {"1": "1", "L": "8", "LA": "8", "P": "8 (palette)", "PA": "8 (palette)",
              "RGB": "8x3", "RGBA": "8x4", "CMYK": "8x4", "YCbCr": "8x3", "I;16": "16",
              "I;16B": "16", "I;16L": "16", "I;16N": "16", "I": "32 (integer)", "F": "32 (float)"}


def _open_raster(data: bytes, name: str, fmt: str) -> Any:
    """Open lazily (header only) and enforce the size limits before any decoding."""
    from PIL import Image, UnidentifiedImageError

    label = _FORMAT_LABELS[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:
        size = _header_size(data, fmt)
        if size is not None:
            _check_side(size[1], size[0], name)
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
    _check_frame(height, width, name)
    return img


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read straight from a PNG or BMP header, for error messages."""
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "bmp" and len(data) >= 26 and int.from_bytes(data[14:18], "little") >= 40:
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    return None


def _unit_range(values: np.ndarray) -> np.ndarray:
    """:func:`core.imaging.preprocess.to_unit_range`, made finite: huge values (e.g. 1e30 everywhere)
    can leave it a zero-width window, and 0/0 must not reach the page."""
    image = to_unit_range(values)
    if not np.isfinite(image).all():
        image = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return image.astype(np.float32, copy=False)


def _rgb_to_luminance(rgb: np.ndarray, max_value: float) -> tuple[np.ndarray, float]:
    """Rec. 601 luminance in [0, 1] and mean chroma (max-min of R, G, B) in [0, 1]."""
    rgb = rgb[..., :3].astype(np.float32) / float(max_value)
    lum = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    colourfulness = float(np.clip(chroma.mean(), 0.0, 1.0)) if chroma.size else 0.0
    return np.clip(lum, 0.0, 1.0).astype(np.float32), colourfulness


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


def _raster_source(data: bytes, name: str, fmt: str) -> SliceSource:
    img = _open_raster(data, name, fmt)
    n_frames = int(getattr(img, "n_frames", 1) or 1)
    _check_frames(n_frames, name)
    width, height = img.size
    try:
        if int(img.getexif().get(0x0112, 1)) in (5, 6, 7, 8):
            width, height = height, width
    except Exception:  # a broken EXIF block only loses the orientation hint here
        pass
    if n_frames > 1:
        return SliceSource("multiframe", (n_frames, height, width), n_frames, fmt)
    return SliceSource("image", (height, width), 1, fmt)


def _read_raster(data: bytes, name: str, fmt: str, frame: int | None) -> Slice:
    from PIL import Image, ImageOps

    label = _FORMAT_LABELS[fmt]
    img = _open_raster(data, name, fmt)
    n_frames = int(getattr(img, "n_frames", 1) or 1)
    _check_frames(n_frames, name)
    index = _pick_frame(frame, n_frames, name)
    _check_apng_seek(img, index, name)
    try:
        if index:
            img.seek(index)
            _check_frame(img.size[1], img.size[0], name)
        spacing = _tiff_spacing(img) if fmt == "tiff" else None
        orientation = int(img.getexif().get(0x0112, 1) or 1)
        mode = img.mode
        stored = (img.size[1], img.size[0])
        img = _decode_reduced(img)
        decoded = (img.size[1], img.size[0])
        spacing = _scaled_spacing(spacing, stored, decoded)
        img = ImageOps.exif_transpose(img)
        work = img.mode
        if work in ("1", "L", "LA", "La"):
            arr = np.asarray(img if work == "L" else img.convert("L"))
            image, colour = arr.astype(np.float32) / 255.0, 0.0
        elif work in ("P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
            rgb = np.asarray(img if work in ("RGB", "RGBA") else img.convert("RGB"))
            image, colour = _rgb_to_luminance(rgb, 255.0)
        elif work.startswith("I;16") or work in ("I", "F"):
            # 16-bit / 32-bit / float: robust percentile window (never uint8 here).
            image, colour = _unit_range(np.asarray(img)), 0.0
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
    _note_reduction(metadata, stored, decoded)
    spacing = _spacing_checked(spacing, metadata)
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


# --------------------------------------------------------------------------- DICOM (pydicom)

#: Transfer syntax whose whole dataset is deflated (pydicom inflates it in one go on reading).
_DEFLATED_TS = "1.2.840.10008.1.2.1.99"
#: Explicit-VR value representations with a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _file_meta(data: bytes) -> tuple[str, int]:
    """Transfer syntax UID of a DICOM file with a preamble, and where its dataset starts.

    Walks the file meta group (group 0002, always explicit VR little endian) without pydicom.
    Returns ``("", 132)`` when the group cannot be walked (pydicom then reports the problem).
    """
    pos, uid = 132, ""
    while pos + 8 <= len(data) and pos < 132 + 65536:
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            length, start = struct.unpack_from("<I", data, pos + 8)[0], pos + 12
        else:
            length, start = struct.unpack_from("<H", data, pos + 6)[0], pos + 8
        if element == 0x0010:
            uid = data[start:start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return uid, pos


def _check_inflated_size(data: bytes, start: int, name: str) -> None:
    """Refuse a deflated DICOM that inflates to more than :data:`config.MAX_DICOM_INFLATED_BYTES`.

    Inflates in bounded steps and keeps nothing, so the check itself costs a few megabytes.
    """
    limit = config.MAX_DICOM_INFLATED_BYTES
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, step = 0, 1 << 20
    view = memoryview(data)[start:]
    try:
        for offset in range(0, len(view), step):
            chunk = bytes(view[offset:offset + step])
            while chunk and not inflater.eof:
                total += len(inflater.decompress(chunk, step))
                chunk = inflater.unconsumed_tail
                if total > limit:
                    raise ImageTooLarge(
                        f"'{name}' is a deflated DICOM that inflates to more than "
                        f"{limit / 2**20:.0f} MB, the limit for one file."
                    )
            if inflater.eof:
                break
    except zlib.error as exc:
        raise CorruptFile(f"'{name}' is a deflated DICOM whose compressed data are damaged ({exc}).") from exc


def _read_dicom_dataset(data: bytes, name: str) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if has_preamble:
        uid, start = _file_meta(data)
        if uid == _DEFLATED_TS:
            _check_inflated_size(data, start, name)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except InvalidDicomError as exc:
        raise CorruptFile(f"'{name}' is not a valid DICOM file ({exc}).") from exc
    except Exception as exc:
        raise CorruptFile(
            f"'{name}' is a damaged or truncated DICOM file and cannot be read "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    if not has_preamble:
        try:
            plausible = any(k in ds for k in ("SOPClassUID", "Modality", "Rows", "PixelData"))
        except Exception:
            plausible = False
        if not plausible:
            raise CorruptFile(f"'{name}' is named as DICOM but does not contain DICOM data.")
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            from pydicom.dataset import FileMetaDataset
            from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

            implicit, little = ds.original_encoding
            meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else FileMetaDataset()
            meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else
                ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
            ds.file_meta = meta
    return ds


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _n_frames(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _functional_attr(ds: Any, frame: int, group: str, attr: str) -> Any:
    """``attr`` from the top level, else from the per-frame or shared functional groups."""
    if attr in ds:
        return ds.get(attr)
    for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(seq_name)
        if not seq:
            continue
        item = seq[frame] if seq_name.startswith("PerFrame") and frame < len(seq) else seq[0]
        sub = item.get(group)
        if sub and attr in sub[0]:
            return sub[0].get(attr)
    return None


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and not isinstance(value, str):
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) else None


def _dicom_spacing(ds: Any, frame: int) -> tuple[float, float] | None:
    value = _functional_attr(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    if value is None:
        value = ds.get("ImagerPixelSpacing")
    try:
        return (float(value[0]), float(value[1]))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width <= 1.0:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _dicom_identifiers(ds: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in IDENTIFYING_DICOM_FIELDS:
        try:
            value = ds.get(key)
        except Exception:
            continue
        if value not in (None, ""):
            out[key] = str(value)
    return out


def _dicom_source(data: bytes, name: str) -> SliceSource:
    ds = _read_dicom_dataset(data, name)
    if not _has_pixels(ds):
        raise _no_pixels(ds, name)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_frame(rows, cols, name)
    n = _n_frames(ds)
    _check_frames(n, name)
    if n > 1:
        return SliceSource("multiframe", (n, rows, cols), n, "dicom")
    return SliceSource("image", (rows, cols), 1, "dicom")


def _no_pixels(ds: Any, name: str) -> NoPixelData:
    what = str(ds.get("Modality", "") or "")
    extra = f" (modality {what})" if what else ""
    return NoPixelData(
        f"'{name}' is a DICOM file without an image in it{extra}, e.g. a report or a "
        "structured document. Upload a DICOM image instead."
    )


def _read_dicom(data: bytes, name: str, frame: int | None) -> Slice:
    from pydicom.pixels import apply_modality_lut, pixel_array

    ds = _read_dicom_dataset(data, name)
    if not _has_pixels(ds):
        raise _no_pixels(ds, name)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_frame(rows, cols, name)
    n = _n_frames(ds)
    _check_frames(n, name)
    if frame is None and n > 1:
        raise NeedsSliceSelection(
            f"'{name}' is a multi-frame DICOM with {n} frames ({rows}x{cols}); choose a frame.",
            (n, rows, cols),
        )
    index = _pick_frame(frame, n, name)
    ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
    try:
        raw = pixel_array(ds, index=index if n > 1 else None)
    except Exception as exc:
        ts_text = f"{ts.name} ({ts})" if ts is not None else "an unknown transfer syntax"
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if ts is not None and getattr(ts, "is_compressed", False):
            if "missing dependencies" in str(exc) or isinstance(exc, NotImplementedError):
                raise UnsupportedFile(
                    f"'{name}' stores its pixels compressed with {ts_text}, which this app "
                    "cannot decode. Export it uncompressed (Explicit VR Little Endian) and retry."
                ) from exc
            raise CorruptFile(
                f"'{name}' stores its pixels compressed with {ts_text}, but they could not be "
                f"decoded: the data are damaged or use an unsupported variant ({detail})."
            ) from exc
        raise CorruptFile(
            f"'{name}' has pixel data that cannot be decoded (transfer syntax {ts_text}): "
            f"the file is damaged or truncated ({detail})."
        ) from exc
    if n > 1 and raw.ndim >= 3 and raw.shape[0] == n and raw.shape[0] != rows:
        raw = raw[index]
    if raw.ndim not in (2, 3) or 0 in raw.shape:
        raise CorruptFile(f"'{name}' decodes to pixel data of shape {raw.shape}, not an image.")
    original_dtype, integer = str(raw.dtype), raw.dtype.kind in "ui"
    stored = (int(raw.shape[0]), int(raw.shape[1]))
    raw = _reduce_dicom(raw, "ModalityLUTSequence" in ds)
    decoded = (int(raw.shape[0]), int(raw.shape[1]))
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    bits = int(ds.get("BitsStored", 8) or 8)
    metadata: dict[str, str] = {"format": "DICOM"}
    for key in ("Modality", "SeriesDescription", "MagneticFieldStrength", "SliceThickness"):
        if ds.get(key) not in (None, ""):
            metadata[key] = str(ds.get(key))
    metadata.update({
        "bits stored": str(bits),
        "photometric interpretation": photometric or "unknown",
        "original dtype": original_dtype,
        "transfer syntax": ts.name if ts is not None else "unknown",
    })
    if n > 1:
        metadata["frame"] = f"{index} of {n}"
    _note_reduction(metadata, stored, decoded)
    colour = 0.0
    if raw.ndim == 3:  # colour (the decoder returns (rows, cols, samples))
        finite = raw if integer else raw[np.isfinite(raw)]
        max_value = float(2 ** min(bits, 32) - 1) if integer else max(float(finite.max()) if finite.size else 1.0, 1.0)
        image, colour = _rgb_to_luminance(raw, max_value)
        metadata["window"] = "none (colour image, converted to luminance)"
    else:
        values, rescaled = _dicom_modality(ds, raw, index, apply_modality_lut)
        if rescaled:
            metadata["rescale"] = rescaled
        center = _first(_functional_attr(ds, index, "FrameVOILUTSequence", "WindowCenter"))
        width = _first(_functional_attr(ds, index, "FrameVOILUTSequence", "WindowWidth"))
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if center is not None and width is not None and width > 0:
            image = _window(values, center, width, function)
            metadata["window"] = f"center {center:g}, width {width:g}" + (
                f" ({function.lower()})" if function != "LINEAR" else "")
        else:
            image = to_unit_range(values if values.dtype != np.uint8 else values.astype(np.float32))
            metadata["window"] = "percentile 0.5-99.5"
        if photometric == "MONOCHROME1":
            image = 1.0 - image
            metadata["inverted"] = "yes (MONOCHROME1)"
    image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    metadata["shape"] = f"{image.shape[0]}x{image.shape[1]}"
    spacing = _spacing_checked(_dicom_spacing(ds, index), metadata)
    return Slice(
        image=np.ascontiguousarray(image), spacing_mm=_scaled_spacing(spacing, stored, decoded),
        source_format="dicom", name=name, metadata=metadata,
        identifiers=_dicom_identifiers(ds), colourfulness=colour,
    )


def _reduce_dicom(raw: np.ndarray, has_lut: bool) -> np.ndarray:
    """A frame with its longest side at most :data:`config.MAX_DECODED_SIDE`.

    Blocks are averaged; with a modality LUT (which indexes by stored value) every n-th pixel is
    kept instead, so the values stay integers.
    """
    factor = reduction_factor(int(raw.shape[0]), int(raw.shape[1]))
    if factor == 1:
        return raw
    if has_lut:
        return np.ascontiguousarray(raw[::factor, ::factor])
    return block_mean(raw, factor)


def _dicom_modality(ds: Any, raw: np.ndarray, frame: int, apply_modality_lut: Any) -> tuple[np.ndarray, str]:
    """Apply the modality LUT or rescale slope/intercept; returns values and a description."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(raw, ds), dtype=np.float64), "modality LUT"
    slope = _first(_functional_attr(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_functional_attr(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    if slope == 1.0 and intercept == 0.0:
        return raw.astype(np.float64), ""
    return raw.astype(np.float64) * slope + intercept, f"slope {slope:g}, intercept {intercept:g}"


# --------------------------------------------------------------------------- NIfTI (nibabel)

@dataclass(frozen=True)
class _NiftiHeader:
    """What a NIfTI header declares: the nibabel header, data shape, dtype and data offset."""

    header: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    gz: bool

    @property
    def shape3(self) -> tuple[int, int, int]:
        """The first three dimensions, padded with 1 (a 2D image is one slice thick)."""
        padded = tuple(self.shape[:3]) + (1,) * max(0, 3 - len(self.shape))
        return (padded[0], padded[1], padded[2])

    @property
    def n_bytes(self) -> int:
        """Bytes of the file up to the end of the voxel data."""
        return self.offset + int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _nifti_header(data: bytes, name: str) -> _NiftiHeader:
    """Parse and check the header (only its bytes are decompressed); nothing else is read."""
    import nibabel as nib

    gz = data.startswith(b"\x1f\x8b")
    try:
        head = _gunzip_head(data) if gz else data[:544]
    except (zlib.error, EOFError) as exc:
        raise CorruptFile(
            f"'{name}' is a damaged or truncated gzip file and cannot be decompressed ({exc})."
        ) from exc
    kind = _nifti_magic(head)
    if kind is None:
        raise CorruptFile(f"'{name}' is named as NIfTI but has no valid NIfTI header.")
    if kind == "pair":
        raise UnsupportedFile(
            f"'{name}' is a NIfTI header without its image (.hdr/.img pair). "
            "Upload a single-file .nii or .nii.gz instead."
        )
    klass, size = (nib.Nifti1Header, 348) if kind == "nifti1" else (nib.Nifti2Header, 540)
    try:
        header = klass.from_fileobj(io.BytesIO(head[:size]))
        shape = tuple(int(s) for s in header.get_data_shape())
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
    except Exception as exc:
        raise CorruptFile(
            f"'{name}' has a damaged NIfTI header ({type(exc).__name__}: {exc})."
        ) from exc
    parsed = _NiftiHeader(header, shape, dtype, max(offset, size + 4), gz)
    _check_nifti(parsed, name)
    return parsed


def _check_nifti(h: _NiftiHeader, name: str) -> None:
    """The header's budgets and dimensions, before any voxel is decompressed."""
    shape = h.shape
    shown = "x".join(map(str, shape))
    if len(shape) < 2:
        raise InputError(f"'{name}' holds a {len(shape)}D NIfTI array; a 2D slice or 3D volume is expected.")
    if min(shape) <= 0:
        raise EmptyImage(
            f"'{name}' declares a NIfTI image of {shown} voxels: a dimension of size "
            f"{min(shape)} means it holds no image. The file is damaged or was not exported correctly."
        )
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise InputError(
            f"'{name}' is a {len(shape)}D NIfTI image ({shown}), e.g. a "
            "time series or several modalities in one file. Upload a single-modality 3D volume "
            "or a 2D slice."
        )
    if h.dtype.fields is not None or h.dtype.kind not in "uif":
        raise UnsupportedFile(f"'{name}' stores {h.dtype} voxels (colour or complex); greyscale is expected.")
    _check_volume_sides(h.shape3, name)
    n_voxels = int(np.prod(shape, dtype=np.int64))
    if n_voxels > config.MAX_NIFTI_VOXELS:
        raise ImageTooLarge(
            f"'{name}' holds {n_voxels / 2**20:.0f} M voxels ({shown}); the limit is "
            f"{config.MAX_NIFTI_VOXELS / 2**20:.0f} M per file."
        )
    if h.n_bytes > MAX_DECOMPRESSED_BYTES:
        raise ImageTooLarge(
            f"'{name}' needs {h.n_bytes / 2**20:.0f} MB once decompressed; the limit for one "
            f"volume is {MAX_DECOMPRESSED_BYTES / 2**20:.0f} MB."
        )


def _nifti_voxels(data: bytes, h: _NiftiHeader, name: str) -> np.ndarray:
    """A read-only ``(X, Y, Z)`` view of the stored voxels; decompresses exactly what is needed."""
    raw = data
    if h.gz:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                raw = fh.read(h.n_bytes)
                fh.read(1 << 20)  # reach the end of the stream, so its checksum is verified
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptFile(
                f"'{name}' is a damaged or truncated gzip file and cannot be decompressed ({exc})."
            ) from exc
    if len(raw) < h.n_bytes:
        raise CorruptFile(
            f"'{name}' is truncated: its header announces {'x'.join(map(str, h.shape))} "
            f"{h.dtype} voxels ({h.n_bytes} bytes) but the file holds {len(raw)}."
        )
    return np.ndarray(h.shape3, dtype=h.dtype, buffer=raw, offset=h.offset, order="F")


def affine_orientation(affine: np.ndarray) -> np.ndarray | None:
    """``nibabel.io_orientation`` of ``affine``, or ``None`` when it has no usable orientation.

    Non-finite values, a singular matrix or an SVD that does not converge all give ``None``.
    """
    import nibabel as nib

    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        return None
    try:
        ornt = nib.io_orientation(matrix)
    except (np.linalg.LinAlgError, ValueError, ArithmeticError):
        return None
    return None if np.isnan(ornt).any() else ornt


def _nifti_affine(h: _NiftiHeader) -> np.ndarray | None:
    try:
        return np.asarray(h.header.get_best_affine(), dtype=np.float64)
    except Exception:  # a damaged qform/sform only loses the orientation
        return None


def _canonical_shape(shape3: tuple[int, int, int], ornt: np.ndarray | None) -> tuple[int, int, int]:
    """Shape of the volume after reorientation to RAS+ (as stored when ``ornt`` is None)."""
    if ornt is None:
        return shape3
    out = [0, 0, 0]
    for axis, (target, _flip) in enumerate(ornt):
        out[int(target)] = shape3[axis]
    return (out[0], out[1], out[2])


def _nifti_zooms(h: _NiftiHeader, ornt: np.ndarray | None) -> tuple[float, float, float]:
    """Voxel size along the canonical axes (NaN where the header's value is unusable)."""
    try:
        zooms = [float(z) for z in h.header.get_zooms()[:3]]
    except Exception:
        zooms = [math.nan] * 3
    zooms += [1.0] * (3 - len(zooms))
    if ornt is None:
        return (zooms[0], zooms[1], zooms[2])
    out = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(ornt):
        out[int(target)] = zooms[axis]
    return (out[0], out[1], out[2])


def _nifti_source(data: bytes, name: str) -> SliceSource:
    h = _nifti_header(data, name)
    affine = _nifti_affine(h)
    shape = _canonical_shape(h.shape3, None if affine is None else affine_orientation(affine))
    if 1 in shape:
        return SliceSource("image", shape, 1, "nifti")
    return SliceSource("volume", shape, 1, "nifti")


def _check_volume_sides(shape: tuple[int, ...], name: str) -> None:
    if max(shape) > config.MAX_IMAGE_SIDE:
        raise ImageTooLarge(
            f"'{name}' has a side of {max(shape)} voxels ({'x'.join(map(str, shape))}); the "
            f"largest side accepted is {config.MAX_IMAGE_SIDE}."
        )


def _read_nifti(data: bytes, name: str, axis: int | None, index: int | None) -> Slice:
    """Read one slice of a NIfTI image, reoriented to RAS+ and rotated for display.

    ``axis`` 0/1/2 = sagittal/coronal/axial (default 2). Rows run superior->inferior
    (axial: anterior->posterior). Axial and coronal columns run patient right->left
    (radiological); sagittal columns run posterior->anterior. ``spacing_mm`` is the voxel size
    along the returned rows and columns: axial (y, x), coronal (z, x), sagittal (z, y).
    Only the chosen slice is copied out of the decompressed file (the reorientation is a view).
    """
    import nibabel as nib

    h = _nifti_header(data, name)
    affine = _nifti_affine(h)
    ornt = None if affine is None else affine_orientation(affine)
    shape = _canonical_shape(h.shape3, ornt)
    original_axes = "".join(nib.aff2axcodes(affine)) if ornt is not None else "unknown"
    volume = _nifti_voxels(data, h, name)
    if ornt is not None:
        volume = nib.orientations.apply_orientation(volume, ornt)
    zooms = _nifti_zooms(h, ornt)
    if 1 in shape:
        axis = shape.index(1) if shape.count(1) == 1 or shape[2] != 1 else 2
        index = 0
    else:
        if axis is None:
            axis = 2
        if axis not in (0, 1, 2):
            raise InputError(f"Axis {axis} is not valid: use 0 (sagittal), 1 (coronal) or 2 (axial).")
        if index is None:
            raise NeedsSliceSelection(
                f"This NIfTI file is a 3D volume ({'x'.join(map(str, shape))}); "
                "choose a plane and a slice.",
                shape,
            )
        if not 0 <= int(index) < shape[axis]:
            raise InputError(
                f"Slice {index} does not exist along the {_PLANES[axis]} axis of '{name}': valid "
                f"slices are 0 to {shape[axis] - 1}."
            )
        index = int(index)
    slicer: list[Any] = [slice(None)] * 3
    slicer[axis] = index
    display = np.rot90(volume[tuple(slicer)])
    if axis in (1, 2):
        display = np.fliplr(display)
    stored = (int(display.shape[0]), int(display.shape[1]))
    values = block_mean(display, reduction_factor(*stored)).astype(np.float32)
    decoded = (int(values.shape[0]), int(values.shape[1]))
    slope, inter = h.header.get_slope_inter()
    if slope is not None and math.isfinite(slope) and slope != 0:
        values = values * np.float32(slope) + np.float32(inter if inter is not None and math.isfinite(inter) else 0.0)
    in_plane = [a for a in range(3) if a != axis]  # (first, second) = (display col, display row)
    image = _unit_range(values)
    top, bottom, left, right = _NIFTI_EDGES[axis]
    metadata = {
        "format": "NIfTI",
        "plane": _PLANES[axis],
        "axis": str(axis),
        "slice": f"{index} of {shape[axis]}",
        "orientation": f"top={top} bottom={bottom} left={left} right={right}"
        + (" (radiological)" if axis in (1, 2) else ""),
        "original orientation": original_axes,
        "canonical shape": "x".join(map(str, shape)),
        "original dtype": str(h.dtype.newbyteorder("=")),
        "window": "slice percentile 0.5-99.5",
        "shape": f"{image.shape[0]}x{image.shape[1]}",
    }
    if ornt is None:
        metadata["orientation"] = "unknown (affine cannot be interpreted; shown as stored)"
    _note_reduction(metadata, stored, decoded)
    spacing = _spacing_checked((zooms[in_plane[1]], zooms[in_plane[0]]), metadata)
    return Slice(
        image=np.ascontiguousarray(image, dtype=np.float32),
        spacing_mm=_scaled_spacing(spacing, stored, decoded),
        source_format="nifti", name=name, metadata=metadata, identifiers={}, colourfulness=0.0,
    )


# --------------------------------------------------------------------------- public API

def inspect_slice_source(data: bytes, name: str) -> SliceSource:
    """What ``data`` holds (single image, multi-frame, 3D volume) from its headers only.

    Use it to decide whether to ask for a frame or a slice before :func:`read_slice`. Raises
    the same :class:`InputError` subclasses; truncated pixel data is only found by read_slice.
    """
    _check_bytes(data, name)
    fmt = detect_format(data, name)
    try:
        if fmt == "dicom":
            return _dicom_source(data, name)
        if fmt == "nifti":
            return _nifti_source(data, name)
        return _raster_source(data, name, fmt)
    except InputError:
        raise
    except MemoryError as exc:
        raise ImageTooLarge(f"'{name}' is too large to read in the memory available.") from exc
    except Exception as exc:
        raise CorruptFile(
            f"'{name}' could not be read as {_FORMAT_LABELS[fmt]}: the file looks damaged "
            f"({type(exc).__name__}: {exc})."
        ) from exc


def read_slice(
    data: bytes,
    name: str,
    *,
    frame: int | None = None,
    axis: int | None = None,
    index: int | None = None,
) -> Slice:
    """Decode one 2D greyscale slice from the bytes of an uploaded file called ``name``.

    ``frame`` picks a page of a multi-page TIFF (default 0) or a frame of a multi-frame DICOM
    (required when it has more than one). ``axis``/``index`` pick a NIfTI slice (see the module
    docstring for orientation). Raises only :class:`core.errors.InputError` subclasses for bad
    input, including :class:`NeedsSliceSelection` when a frame or slice must be chosen.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    _check_bytes(data, name)
    fmt = detect_format(data, name)
    try:
        if fmt == "dicom":
            return _read_dicom(data, name, frame)
        if fmt == "nifti":
            return _read_nifti(data, name, axis, index)
        return _read_raster(data, name, fmt, frame)
    except InputError:
        raise
    except MemoryError as exc:
        raise ImageTooLarge(f"'{name}' is too large to decode in the memory available.") from exc
    except Exception as exc:
        raise CorruptFile(
            f"'{name}' could not be decoded as {_FORMAT_LABELS[fmt]}: the file looks damaged "
            f"or uses a feature this app does not support ({type(exc).__name__}: {exc})."
        ) from exc


def read_slice_file(path: str | os.PathLike) -> Slice:
    """Read a file from disk with :func:`read_slice` (name = the file's name).

    OS errors (missing file, no permission) propagate unchanged: they are not upload problems.
    """
    p = Path(path)
    return read_slice(p.read_bytes(), p.name)
