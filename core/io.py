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
  window, a percentile window (:func:`core.preprocess.to_unit_range`). MONOCHROME1 is inverted.
"""
from __future__ import annotations

import gzip
import io
import os
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
    ImageTooLarge,
    InputError,
    NeedsSliceSelection,
    NoPixelData,
    UnsupportedFile,
)
from core.preprocess import to_unit_range

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
MAX_DECOMPRESSED_BYTES = 2 * config.MAX_SLICE_BYTES

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
    _check_side(height, width, name)
    return img


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read straight from a PNG or BMP header, for error messages."""
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "bmp" and len(data) >= 26 and int.from_bytes(data[14:18], "little") >= 40:
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    return None


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
    index = _pick_frame(frame, n_frames, name)
    try:
        if index:
            img.seek(index)
        spacing = _tiff_spacing(img) if fmt == "tiff" else None
        orientation = int(img.getexif().get(0x0112, 1) or 1)
        img.load()
        img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode in ("1", "L", "LA", "La"):
            arr = np.asarray(img if mode == "L" else img.convert("L"))
            image, colour = arr.astype(np.float32) / 255.0, 0.0
        elif mode in ("P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
            rgb = np.asarray(img if mode in ("RGB", "RGBA") else img.convert("RGB"))
            image, colour = _rgb_to_luminance(rgb, 255.0)
        elif mode.startswith("I;16") or mode in ("I", "F"):
            # 16-bit / 32-bit / float: robust percentile window (never uint8 here).
            image, colour = to_unit_range(np.asarray(img)), 0.0
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


def _raster_dtype(mode: str) -> str:
    if mode.startswith("I;16"):
        return "uint16"
    return {"I": "int32", "F": "float32"}.get(mode, "uint8")


# --------------------------------------------------------------------------- DICOM (pydicom)

def _read_dicom_dataset(data: bytes, name: str) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
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
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    if row > 0 and col > 0 and np.isfinite([row, col]).all():
        return (row, col)
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
    _check_side(rows, cols, name)
    n = _n_frames(ds)
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
    _check_side(rows, cols, name)
    n = _n_frames(ds)
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
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsStored", 8) or 8)
    metadata: dict[str, str] = {"format": "DICOM"}
    for key in ("Modality", "SeriesDescription", "MagneticFieldStrength", "SliceThickness"):
        if ds.get(key) not in (None, ""):
            metadata[key] = str(ds.get(key))
    metadata.update({
        "bits stored": str(bits),
        "photometric interpretation": photometric or "unknown",
        "original dtype": str(raw.dtype),
        "transfer syntax": ts.name if ts is not None else "unknown",
    })
    if n > 1:
        metadata["frame"] = f"{index} of {n}"
    colour = 0.0
    if samples >= 3 or raw.ndim == 3:
        max_value = float(2 ** bits - 1) if raw.dtype.kind in "ui" else max(float(raw.max()), 1.0)
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
    return Slice(
        image=np.ascontiguousarray(image), spacing_mm=_dicom_spacing(ds, index),
        source_format="dicom", name=name, metadata=metadata,
        identifiers=_dicom_identifiers(ds), colourfulness=colour,
    )


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

def _nifti_bytes(data: bytes, name: str) -> bytes:
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFile(
            f"'{name}' is a damaged or truncated gzip file and cannot be decompressed ({exc})."
        ) from exc
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise ImageTooLarge(
            f"'{name}' decompresses to more than {MAX_DECOMPRESSED_BYTES / 2**20:.0f} MB, "
            "the limit for one volume."
        )
    return out


def _load_nifti(data: bytes, name: str) -> Any:
    import nibabel as nib

    raw = _nifti_bytes(data, name)
    kind = _nifti_magic(raw[:544])
    if kind is None:
        raise CorruptFile(f"'{name}' is named as NIfTI but has no valid NIfTI header.")
    if kind == "pair":
        raise UnsupportedFile(
            f"'{name}' is a NIfTI header without its image (.hdr/.img pair). "
            "Upload a single-file .nii or .nii.gz instead."
        )
    klass = nib.Nifti1Image if kind == "nifti1" else nib.Nifti2Image
    try:
        img = klass.from_bytes(raw)
    except Exception as exc:
        raise CorruptFile(
            f"'{name}' has a damaged NIfTI header or truncated data ({type(exc).__name__}: {exc})."
        ) from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise InputError(
            f"'{name}' is a {len(shape)}D NIfTI image ({'x'.join(map(str, shape))}), e.g. a "
            "time series or several modalities in one file. Upload a single-modality 3D volume "
            "or a 2D slice."
        )
    if len(shape) < 2:
        raise InputError(f"'{name}' holds a {len(shape)}D NIfTI array; a 2D slice or 3D volume is expected.")
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise UnsupportedFile(f"'{name}' stores {dtype} voxels (colour or complex); greyscale is expected.")
    return img


def _canonical_shape(img: Any) -> tuple[tuple[int, int, int], np.ndarray | None]:
    """Shape of the volume after reorientation to RAS+, and the orientation (None if unknown)."""
    import nibabel as nib

    shape = tuple(int(s) for s in img.shape[:3]) + (1,) * max(0, 3 - len(img.shape))
    ornt = nib.io_orientation(img.affine)
    if np.isnan(ornt).any():
        return shape, None
    out = [0, 0, 0]
    for axis, (target, _flip) in enumerate(ornt):
        out[int(target)] = shape[axis]
    return (out[0], out[1], out[2]), ornt


def _nifti_source(data: bytes, name: str) -> SliceSource:
    img = _load_nifti(data, name)
    shape, _ = _canonical_shape(img)
    _check_volume_sides(shape, name)
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
    """
    import nibabel as nib

    img = _load_nifti(data, name)
    shape, ornt = _canonical_shape(img)
    _check_volume_sides(shape, name)
    original_axes = "".join(nib.aff2axcodes(img.affine)) if ornt is not None else "unknown"
    if img.ndim != 3:
        arr = np.asanyarray(img.dataobj).reshape(tuple(img.shape[:3]) + (1,) * max(0, 3 - img.ndim))
        img = nib.Nifti1Image(arr, img.affine)
    if ornt is not None:
        img = nib.as_closest_canonical(img)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
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
    plane = np.asanyarray(img.dataobj[tuple(slicer)])
    dtype = str(plane.dtype)
    display = np.rot90(plane)
    if axis in (1, 2):
        display = np.fliplr(display)
    in_plane = [a for a in range(3) if a != axis]  # (first, second) = (display col, display row)
    row_zoom, col_zoom = zooms[in_plane[1]], zooms[in_plane[0]]
    valid = row_zoom > 0 and col_zoom > 0 and bool(np.isfinite([row_zoom, col_zoom]).all())
    spacing = (row_zoom, col_zoom) if valid else None
    image = to_unit_range(np.asarray(display, dtype=np.float32))
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
        "original dtype": dtype,
        "window": "slice percentile 0.5-99.5",
        "shape": f"{image.shape[0]}x{image.shape[1]}",
    }
    if ornt is None:
        metadata["orientation"] = "unknown (affine cannot be interpreted; shown as stored)"
    return Slice(
        image=np.ascontiguousarray(image, dtype=np.float32), spacing_mm=spacing,
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
