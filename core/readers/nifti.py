"""NIfTI-1/2 files: the one parser (gunzip within a budget, header checks, stored voxels) that
slices and BraTS volumes share, and the reader of one 2D slice.

Only the header's bytes are decompressed until its dimensions, voxel type and size are checked;
then exactly the bytes the header announces are. Errors are :class:`core.errors.InputError`
subclasses naming the file.
"""
from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
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
    UnsupportedFile,
)
from core.readers.budgets import block_mean, note_reduction, reduction_factor, scaled_spacing, spacing_checked
from core.readers.decoded import Slice, SliceSource
from core.readers.greyscale import unit_range

#: Bytes that always hold a whole NIfTI-1 (348) or NIfTI-2 (540) header and its extension flag.
HEADER_BYTES = 544

#: The plane of a slice taken across each RAS+ axis (0: x, 1: y, 2: z); also the plane whose normal that axis is.
PLANE_OF_AXIS: tuple[str, str, str] = ("sagittal", "coronal", "axial")
#: Image edges (top, bottom, left, right) of a returned NIfTI slice, per axis.
_NIFTI_EDGES = {0: ("S", "I", "P", "A"), 1: ("S", "I", "R", "L"), 2: ("A", "P", "R", "L")}


# --------------------------------------------------------------------------- parsing (slices and volumes)

def gunzip_head(data: bytes, n: int = HEADER_BYTES) -> bytes:
    """First ``n`` decompressed bytes of gzip ``data``.

    Raises ``zlib.error`` if it is damaged, ``EOFError`` if it ends before ``n`` bytes without
    reaching the end of the gzip stream (truncated).
    """
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = decomp.decompress(data[:65536], n)
    if len(out) < n and not decomp.eof and len(data) <= 65536:
        raise EOFError("the compressed data ends early (truncated file)")
    return out


def _declares_size(header: bytes, size: int) -> bool:
    """Whether the first four bytes of ``header`` are ``size`` in either byte order."""
    return header[:4] in (size.to_bytes(4, "little"), size.to_bytes(4, "big"))


def nifti_magic(header: bytes) -> str | None:
    """``"nifti1"``/``"nifti2"`` for a single-file NIfTI header, ``"pair"`` for .hdr/.img, else None."""
    if len(header) >= 348 and _declares_size(header, 348):
        magic = header[344:348]
        if magic == b"n+1\x00":
            return "nifti1"
        if magic == b"ni1\x00":
            return "pair"
    if len(header) >= 540 and _declares_size(header, 540):
        magic = header[4:8]
        if magic == b"n+2\x00":
            return "nifti2"
        if magic == b"ni2\x00":
            return "pair"
    return None


def pair_error(name: str) -> UnsupportedFile:
    """The error for a NIfTI header stored apart from its image (a .hdr/.img pair)."""
    return UnsupportedFile(
        f"'{name}' is a NIfTI header without its image (.hdr/.img pair). "
        "Upload a single-file .nii or .nii.gz instead."
    )


@dataclass(frozen=True)
class NiftiHeader:
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


def read_header(data: bytes, name: str) -> NiftiHeader:
    """Parse the header of a single-file NIfTI (only its bytes are decompressed); nothing is checked.

    Refuses an empty file (:class:`EmptyFile`), damaged gzip or header bytes (:class:`CorruptFile`),
    a .hdr/.img pair or an Analyze header (:class:`UnsupportedFile`).
    """
    import nibabel as nib

    if not data:
        raise EmptyFile(f"'{name}' is empty (0 bytes).")
    gz = data.startswith(b"\x1f\x8b")
    try:
        head = gunzip_head(data) if gz else data[:HEADER_BYTES]
    except (zlib.error, EOFError) as exc:
        raise CorruptFile(
            f"'{name}' is a damaged or truncated gzip file and cannot be decompressed ({exc})."
        ) from exc
    kind = nifti_magic(head)
    if kind == "pair":
        raise pair_error(name)
    if kind is None:
        if len(head) >= 348 and _declares_size(head, 348) and head[344:348] == bytes(4):  # no magic at all
            raise UnsupportedFile(f"'{name}' is an Analyze image, not NIfTI; convert it to .nii.gz.")
        raise CorruptFile(f"'{name}' is named as NIfTI but has no valid NIfTI header.")
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
    return NiftiHeader(header, shape, dtype, max(offset, size + 4), gz)


def check_voxel_type(h: NiftiHeader, name: str) -> None:
    """Refuse voxels that are not plain numbers (colour or complex)."""
    if h.dtype.fields is not None or h.dtype.kind not in "uif":
        raise UnsupportedFile(f"'{name}' stores {h.dtype} voxels (colour or complex); greyscale is expected.")


def check_decompressed_size(h: NiftiHeader, name: str) -> None:
    """Refuse a file that decompresses to more than :data:`core.config.MAX_NIFTI_BYTES`."""
    limit = config.MAX_NIFTI_BYTES
    if h.n_bytes > limit:
        raise ImageTooLarge(
            f"'{name}' needs {h.n_bytes / 2**20:.0f} MB once decompressed; the limit for one "
            f"file is {limit / 2**20:.0f} MB."
        )


def stored_bytes(data: bytes, h: NiftiHeader, name: str) -> bytes:
    """The file's bytes up to the end of its voxels (call after the header's checks).

    A ``.nii.gz`` is decompressed exactly as far as the header announces, then read to the end of
    its stream so its checksum is verified. A damaged or truncated file is :class:`CorruptFile`.
    """
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
    return raw


def _description(header: Any) -> str:
    """The header's free-text ``descrip`` field (empty when absent or unreadable)."""
    try:
        raw = header["descrip"]
        raw = raw.item() if hasattr(raw, "item") else raw
        text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    except Exception:  # noqa: BLE001 - an odd header only loses its description
        return ""
    return "".join(c for c in text if c.isprintable()).strip()[:80]


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


# --------------------------------------------------------------------------- one slice

def _slice_header(data: bytes, name: str) -> NiftiHeader:
    """The header of a NIfTI upload, checked as a 2D slice or 3D volume within the budgets."""
    h = read_header(data, name)
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
    check_voxel_type(h, name)
    if max(h.shape3) > config.MAX_IMAGE_SIDE:
        raise ImageTooLarge(
            f"'{name}' has a side of {max(h.shape3)} voxels ({'x'.join(map(str, h.shape3))}); the "
            f"largest side accepted is {config.MAX_IMAGE_SIDE}."
        )
    n_voxels = int(np.prod(shape, dtype=np.int64))
    if n_voxels > config.MAX_NIFTI_VOXELS:
        raise ImageTooLarge(
            f"'{name}' holds {n_voxels / 2**20:.0f} M voxels ({shown}); the limit is "
            f"{config.MAX_NIFTI_VOXELS / 2**20:.0f} M per file."
        )
    check_decompressed_size(h, name)
    return h


def _header_affine(h: NiftiHeader) -> np.ndarray | None:
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


def _canonical_zooms(h: NiftiHeader, ornt: np.ndarray | None) -> tuple[float, float, float]:
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


def nifti_source(data: bytes, name: str) -> SliceSource:
    """A 2D image or a 3D volume, with its shape after reorientation to RAS+ (header only)."""
    h = _slice_header(data, name)
    affine = _header_affine(h)
    shape = _canonical_shape(h.shape3, None if affine is None else affine_orientation(affine))
    if 1 in shape:
        return SliceSource("image", shape, 1, "nifti")
    return SliceSource("volume", shape, 1, "nifti")


def read_nifti(data: bytes, name: str, axis: int | None, index: int | None) -> Slice:
    """Read one slice of a NIfTI image, reoriented to RAS+ and rotated for display.

    ``axis`` 0/1/2 = sagittal/coronal/axial (default 2). Rows run superior->inferior
    (axial: anterior->posterior). Axial and coronal columns run patient right->left
    (radiological); sagittal columns run posterior->anterior. ``spacing_mm`` is the voxel size
    along the returned rows and columns: axial (y, x), coronal (z, x), sagittal (z, y).
    Only the chosen slice is copied out of the decompressed file (the reorientation is a view).
    """
    import nibabel as nib

    h = _slice_header(data, name)
    affine = _header_affine(h)
    ornt = None if affine is None else affine_orientation(affine)
    shape = _canonical_shape(h.shape3, ornt)
    original_axes = "".join(nib.aff2axcodes(affine)) if ornt is not None else "unknown"
    raw = stored_bytes(data, h, name)
    volume = np.ndarray(h.shape3, dtype=h.dtype, buffer=raw, offset=h.offset, order="F")  # read-only view
    if ornt is not None:
        volume = nib.orientations.apply_orientation(volume, ornt)
    zooms = _canonical_zooms(h, ornt)
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
                f"Slice {index} does not exist along the {PLANE_OF_AXIS[axis]} axis of '{name}': valid "
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
    image = unit_range(values)
    top, bottom, left, right = _NIFTI_EDGES[axis]
    metadata = {
        "format": "NIfTI",
        "plane": PLANE_OF_AXIS[axis],
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
    description = _description(h.header)
    if description:
        metadata["description"] = description
    note_reduction(metadata, stored, decoded)
    spacing = spacing_checked((zooms[in_plane[1]], zooms[in_plane[0]]), metadata)
    return Slice(
        image=np.ascontiguousarray(image, dtype=np.float32),
        spacing_mm=scaled_spacing(spacing, stored, decoded),
        source_format="nifti", name=name, metadata=metadata, identifiers={}, colourfulness=0.0,
    )
