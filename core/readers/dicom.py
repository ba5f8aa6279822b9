"""DICOM slices (pydicom): deflated files bounded before inflating, the modality LUT and VOI window
applied, patient identifiers kept apart from the metadata."""
from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np

from core import config
from core.errors import CorruptFile, ImageTooLarge, NeedsSliceSelection, NoPixelData, UnsupportedFile
from core.imaging.preprocess import to_unit_range
from core.readers.budgets import (
    block_mean,
    check_frame,
    check_frames,
    note_reduction,
    pick_frame,
    reduction_factor,
    scaled_spacing,
    spacing_checked,
)
from core.readers.decoded import Slice, SliceSource
from core.readers.greyscale import rgb_to_luminance

#: DICOM attributes that identify a patient, a visit or a place: kept out of ``metadata``.
IDENTIFYING_DICOM_FIELDS: tuple[str, ...] = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientAddress", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "StationName",
    "DeviceSerialNumber", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "StudyID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
)
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


#: Header fields that state the sequence (read by :mod:`core.slices.stated`); none identifies a person.
ACQUISITION_FIELDS: tuple[str, ...] = ("ProtocolName", "SequenceName", "RepetitionTime", "EchoTime",
                                       "InversionTime", "ContrastBolusAgent")


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


def _image_dataset(data: bytes, name: str) -> tuple[Any, int, int, int]:
    """The dataset of a DICOM image with its rows, columns and frame count, each within the budgets."""
    ds = _read_dicom_dataset(data, name)
    if not _has_pixels(ds):
        raise _no_pixels(ds, name)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    check_frame(rows, cols, name)
    n = _n_frames(ds)
    check_frames(n, name)
    return ds, rows, cols, n


def dicom_source(data: bytes, name: str) -> SliceSource:
    """One image or a multi-frame file, with its ``(rows, cols)`` (no pixel is decoded)."""
    ds, rows, cols, n = _image_dataset(data, name)
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


def read_dicom(data: bytes, name: str, frame: int | None) -> Slice:
    """Frame ``frame`` of a DICOM image: modality LUT, then the file's VOI window (else a percentile
    window); MONOCHROME1 inverted, colour as luminance. Patient identifiers go to ``identifiers``."""
    from pydicom.pixels import apply_modality_lut, pixel_array

    ds, rows, cols, n = _image_dataset(data, name)
    if frame is None and n > 1:
        raise NeedsSliceSelection(
            f"'{name}' is a multi-frame DICOM with {n} frames ({rows}x{cols}); choose a frame.",
            (n, rows, cols),
        )
    index = pick_frame(frame, n, name)
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
    for key in ("Modality", "SeriesDescription", "MagneticFieldStrength", "SliceThickness", *ACQUISITION_FIELDS):
        if ds.get(key) not in (None, ""):
            metadata[key] = str(ds.get(key))
    orientation = _functional_attr(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
    if orientation is not None:
        try:
            metadata["ImageOrientationPatient"] = ",".join(f"{float(v):.4g}" for v in orientation)
        except (TypeError, ValueError):
            pass
    metadata.update({
        "bits stored": str(bits),
        "photometric interpretation": photometric or "unknown",
        "original dtype": original_dtype,
        "transfer syntax": ts.name if ts is not None else "unknown",
    })
    if n > 1:
        metadata["frame"] = f"{index} of {n}"
    note_reduction(metadata, stored, decoded)
    colour = 0.0
    if raw.ndim == 3:  # colour (the decoder returns (rows, cols, samples))
        finite = raw if integer else raw[np.isfinite(raw)]
        max_value = float(2 ** min(bits, 32) - 1) if integer else max(float(finite.max()) if finite.size else 1.0, 1.0)
        image, colour = rgb_to_luminance(raw, max_value)
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
    spacing = spacing_checked(_dicom_spacing(ds, index), metadata)
    return Slice(
        image=np.ascontiguousarray(image), spacing_mm=scaled_spacing(spacing, stored, decoded),
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
