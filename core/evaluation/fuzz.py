"""Fuzz the upload readers with malformed inputs, each in a worker with a time and memory limit.

    python -m core.fuzz --n 10000 [--seed 0] [--timeout 10] [--memory-mb 2048]
    python -m core.fuzz --seed 0 --only 1234 --save repro/     # rerun one input, keep its files

Inputs are generated in memory from a seed (input ``i`` of seed ``s`` is always the same): random
bytes under every extension; truncations, bit flips and overwrites of valid PNG / JPEG / TIFF /
BMP / DICOM / NIfTI files; absurd headers (sizes, spacings, dtypes, affines, frame counts);
extreme shapes and 1-bit / 16-bit / float / RGBA / palette images; batch zips (bombs, nested,
encrypted, unknown compression, lying sizes, path traversal, thousands of entries); BraTS cases
as files and as zips with one file damaged. Each input goes through the slice reader
(:func:`core.readers.slice.inspect_slice_source` and :func:`core.readers.slice.read_slice`, then the cheap steps that
once crashed on odd slices: :func:`core.imaging.preprocess.brain_bbox` and :mod:`core.imaging.morphology` on a mask
with the read spacing), zips through :func:`core.slices.batch.expand_uploads`, cases through
:func:`core.volumes.case.read_case` / :func:`~core.volumes.case.read_case_zip`. No model runs.

Every input runs in a forked worker with an address-space limit (``RLIMIT_AS``) and a timeout,
so a hang or a blow-up is counted, not fatal. Outcomes: *typed* (an :class:`InputError` with its
message), *accepted* (the output passed the checks: finite, 2D, non-empty float32 in [0, 1],
sides within :data:`core.config.MAX_DECODED_SIDE`, plausible spacing), *untyped* (any other
exception, an invalid output, a ``MemoryError`` or a dead worker), *hang* (over the timeout).
The last line is ``RESULT typed=... accepted=... untyped=... hangs=... max_seconds=...
max_rss_mb=... n=...``; ``max_rss_mb`` is the worker's peak resident memory, libraries included.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import select
import signal
import struct
import sys
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import config
from core.errors import InputError

#: Extensions random bytes are uploaded under ("" = no extension).
EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom",
                               ".nii", ".nii.gz", ".gz", ".zip", ".txt", "")
#: Values that break naive size arithmetic.
EXTREME_SIDES: tuple[int, ...] = (0, 1, 2, 3, 1023, 1024, 1025, 4097, 8191, 8192, 8193, 32767, 65535)
ABSURD_FLOATS: tuple[float, ...] = (0.0, -1.0, 1e-300, 1e-30, 1e-4, 1e300, 1e30, float("nan"),
                                    float("inf"), -float("inf"), 3.4e38, 1e-45)

Rng = np.random.Generator


@dataclass
class FuzzInput:
    """One generated input: what to call (``target``), with which files, and how it was made."""

    target: str  # "slice", "batch", "case" or "case_zip"
    files: list[tuple[str, bytes]]
    description: str
    options: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- valid seed files


def _pil(image: Any, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _picture(rng: Rng, height: int, width: int) -> np.ndarray:
    """A bright disc on a dark background with noise: enough structure for every reader."""
    rows, cols = np.mgrid[0:height, 0:width]
    disc = ((rows - height / 2) ** 2 + (cols - width / 2) ** 2) < (min(height, width) / 2.5) ** 2
    return np.clip(disc * 180 + rng.normal(30, 20, (height, width)), 0, 255).astype(np.uint8)


def _side(rng: Rng) -> tuple[int, int]:
    return int(rng.integers(8, 80)), int(rng.integers(8, 80))


def png_file(rng: Rng, mode: str = "L") -> bytes:
    """A valid PNG in ``mode`` (L, I;16, RGB, RGBA, P, 1, LA)."""
    from PIL import Image

    h, w = _side(rng)
    grey = _picture(rng, h, w)
    if mode == "I;16":
        return _pil(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")
    return _pil(Image.fromarray(grey).convert(mode), "PNG")


def jpeg_file(rng: Rng, mode: str = "L") -> bytes:
    from PIL import Image

    h, w = _side(rng)
    return _pil(Image.fromarray(_picture(rng, h, w)).convert(mode), "JPEG", quality=int(rng.integers(5, 95)))


def tiff_file(rng: Rng, kind: str = "L") -> bytes:
    """A TIFF: 8-bit with resolution, 16-bit, float or two pages."""
    from PIL import Image

    h, w = _side(rng)
    grey = _picture(rng, h, w)
    if kind == "I;16":
        return _pil(Image.fromarray(grey.astype(np.uint16) * 200), "TIFF")
    if kind == "F":
        return _pil(Image.fromarray(grey.astype(np.float32) / 7.0), "TIFF")
    if kind == "pages":
        return _pil(Image.fromarray(grey), "TIFF", save_all=True, append_images=[Image.fromarray(255 - grey)])
    return _pil(Image.fromarray(grey), "TIFF", resolution_unit=3, x_resolution=20.0, y_resolution=10.0)


def bmp_file(rng: Rng) -> bytes:
    from PIL import Image

    h, w = _side(rng)
    return _pil(Image.fromarray(_picture(rng, h, w)).convert("RGB"), "BMP")


def apng_file(rng: Rng) -> bytes:
    from PIL import Image

    h, w = _side(rng)
    frames = [Image.fromarray(_picture(rng, h, w)) for _ in range(3)]
    return _pil(frames[0], "PNG", save_all=True, append_images=frames[1:])


def dicom_file(rng: Rng, pixels: np.ndarray | None = None, *, deflated: bool = False,
               private_bytes: int = 0, **attrs: Any) -> bytes:
    """A valid MR DICOM (uint16 MONOCHROME2 unless ``attrs`` say otherwise) with identifiers."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    if pixels is None:
        h, w = _side(rng)
        pixels = _picture(rng, h, w).astype(np.uint16) * 10
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "MR", "Fuzz^Patient", "FUZZ-1"
    arr = np.asarray(pixels)
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8 * arr.dtype.itemsize
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, int(arr.dtype.kind == "i")
    if arr.ndim == 3:
        ds.NumberOfFrames = int(arr.shape[0])
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = arr.tobytes()
    if private_bytes:
        ds.add_new(0x00091010, "OB", bytes(private_bytes))
    for key, value in attrs.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def nifti_file(rng: Rng, shape: tuple[int, ...] | None = None, dtype: Any = np.int16, *, gz: bool = False,
               version: int = 1, affine: np.ndarray | None = None, slope: float | None = None) -> bytes:
    import nibabel as nib

    shape = shape or (int(rng.integers(4, 24)), int(rng.integers(4, 24)), int(rng.integers(2, 12)))
    data = (rng.random(shape) * 1000).astype(dtype)
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    image = klass(data, np.diag([0.9, 1.1, 3.0, 1.0]) if affine is None else affine, dtype=np.dtype(dtype))
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=1) if gz else raw


#: Valid seed files: name -> builder returning ``(file name, bytes)``.
SEEDS: dict[str, Callable[[Rng], tuple[str, bytes]]] = {
    "png_grey": lambda r: ("seed.png", png_file(r, "L")),
    "png_16bit": lambda r: ("seed.png", png_file(r, "I;16")),
    "png_rgba": lambda r: ("seed.png", png_file(r, "RGBA")),
    "png_palette": lambda r: ("seed.png", png_file(r, "P")),
    "png_1bit": lambda r: ("seed.png", png_file(r, "1")),
    "png_grey_alpha": lambda r: ("seed.png", png_file(r, "LA")),
    "apng": lambda r: ("seed.png", apng_file(r)),
    "jpeg_grey": lambda r: ("seed.jpg", jpeg_file(r, "L")),
    "jpeg_rgb": lambda r: ("seed.jpeg", jpeg_file(r, "RGB")),
    "jpeg_cmyk": lambda r: ("seed.jpg", jpeg_file(r, "CMYK")),
    "tiff_resolution": lambda r: ("seed.tif", tiff_file(r, "L")),
    "tiff_16bit": lambda r: ("seed.tiff", tiff_file(r, "I;16")),
    "tiff_float": lambda r: ("seed.tif", tiff_file(r, "F")),
    "tiff_pages": lambda r: ("seed.tif", tiff_file(r, "pages")),
    "bmp": lambda r: ("seed.bmp", bmp_file(r)),
    "dicom": lambda r: ("seed.dcm", dicom_file(r)),
    "dicom_window": lambda r: ("seed.dcm", dicom_file(r, RescaleSlope=2, RescaleIntercept=-100,
                                                      WindowCenter=400, WindowWidth=800)),
    "dicom_monochrome1": lambda r: ("seed.dcm", dicom_file(r, PhotometricInterpretation="MONOCHROME1")),
    "dicom_multiframe": lambda r: ("seed.dcm", dicom_file(r, (r.random((3, 12, 10)) * 900).astype(np.uint16))),
    "dicom_signed": lambda r: ("seed.dcm", dicom_file(r, (r.normal(0, 300, (20, 16))).astype(np.int16))),
    "dicom_deflated": lambda r: ("seed.dcm", dicom_file(r, deflated=True)),
    "nifti_3d": lambda r: ("seed.nii", nifti_file(r)),
    "nifti_gz": lambda r: ("seed.nii.gz", nifti_file(r, gz=True)),
    "nifti_float": lambda r: ("seed.nii", nifti_file(r, dtype=np.float32)),
    "nifti_scaled": lambda r: ("seed.nii.gz", nifti_file(r, dtype=np.uint8, gz=True, slope=0.5)),
    "nifti_2d": lambda r: ("seed.nii", nifti_file(r, shape=(int(r.integers(4, 40)), int(r.integers(4, 40))))),
    "nifti2": lambda r: ("seed.nii", nifti_file(r, version=2)),
    "nifti_oblique": lambda r: ("seed.nii", nifti_file(r, affine=np.array(
        [[0.7, 0.7, 0, 0], [-0.7, 0.7, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]))),
}


# --------------------------------------------------------------------------- mutations


def mutate(data: bytes, rng: Rng) -> tuple[bytes, str]:
    """One random damage to ``data``: truncation, bit flips, overwrite, insertion, deletion, zeroing."""
    raw = bytearray(data)
    n = len(raw)
    kind = str(rng.choice(["truncate", "flip", "overwrite", "insert", "delete", "zero_tail", "flip_header"]))
    if n == 0:
        return bytes(rng.integers(0, 256, 16, dtype=np.uint8)), "random (empty seed)"
    if kind == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(raw[:cut]), f"truncated to {cut} of {n} bytes"
    if kind in ("flip", "flip_header"):
        span = min(n, 600) if kind == "flip_header" else n
        count = int(rng.integers(1, 17))
        spots = rng.integers(0, span, count)
        for spot in spots:
            raw[int(spot)] ^= 1 << int(rng.integers(0, 8))
        return bytes(raw), f"{count} bit flips in the first {span} bytes"
    if kind == "overwrite":
        at, length = int(rng.integers(0, n)), int(rng.integers(1, 64))
        raw[at:at + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        return bytes(raw), f"{length} random bytes written at {at}"
    if kind == "insert":
        at, length = int(rng.integers(0, n)), int(rng.integers(1, 256))
        return bytes(raw[:at]) + rng.integers(0, 256, length, dtype=np.uint8).tobytes() + bytes(raw[at:]), \
            f"{length} random bytes inserted at {at}"
    if kind == "delete":
        at, length = int(rng.integers(0, n)), int(rng.integers(1, 256))
        return bytes(raw[:at] + raw[at + length:]), f"{length} bytes deleted at {at}"
    at = int(rng.integers(0, n))
    return bytes(raw[:at]) + bytes(n - at), f"zeroed from byte {at}"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_header(width: int, height: int, depth: int, colour: int, rows: int = 4) -> bytes:
    """A PNG whose IHDR declares anything (checksums valid) with a few rows of zeros as data."""
    ihdr = struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour, 0, 0, 0)
    row = bytes(1 + min(max(width, 1), 8192) * 8 // 8)
    idat = zlib.compress(row * rows)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, compressed row by row (about 8 KB for 8192 x 8192)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x55" * ((width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int, components: int | None = None) -> bytes:
    """A few-hundred-byte JPEG whose frame header claims ``width`` x ``height``."""
    from PIL import Image

    data = bytearray(_pil(Image.new("L", (8, 8), 90), "JPEG", quality=1))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    if components is not None:
        data[sof + 9] = components & 0xFF
    return bytes(data)


def bmp_with_header(rng: Rng, width: int, height: int, bits: int) -> bytes:
    raw = bytearray(bmp_file(rng))
    raw[18:26] = struct.pack("<ii", max(min(width, 2**31 - 1), -(2**31)), max(min(height, 2**31 - 1), -(2**31)))
    raw[28:30] = struct.pack("<H", bits & 0xFFFF)
    return bytes(raw)


def tiff_with_tag(data: bytes, tag: int, value: int) -> bytes:
    """``data`` (a little-endian TIFF) with the first IFD's one-value SHORT/LONG ``tag`` rewritten."""
    raw = bytearray(data)
    if raw[:2] != b"II":
        return bytes(raw)
    ifd = struct.unpack_from("<I", raw, 4)[0]
    count = struct.unpack_from("<H", raw, ifd)[0]
    for k in range(count):
        at = ifd + 2 + 12 * k
        entry_tag, kind, n = struct.unpack_from("<HHI", raw, at)
        if entry_tag == tag and n == 1:
            if kind == 3:
                struct.pack_into("<H", raw, at + 8, value & 0xFFFF)
            elif kind == 4:
                struct.pack_into("<I", raw, at + 8, value & 0xFFFFFFFF)
    return bytes(raw)


#: NIfTI-1 header fields: name -> (byte offset, struct format).
NIFTI1_FIELDS: dict[str, tuple[int, str]] = {
    "dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"), "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"), "sform_code": (254, "<h"), "quatern": (256, "<6f"),
    "srow": (280, "<12f"), "magic": (344, "<4s"),
}


def nifti_with(data: bytes, **fields: Any) -> bytes:
    """An uncompressed NIfTI-1 file with header ``fields`` (see :data:`NIFTI1_FIELDS`) rewritten."""
    raw = bytearray(data)
    for key, value in fields.items():
        offset, fmt = NIFTI1_FIELDS[key]
        values = value if isinstance(value, (tuple, list)) else (value,)
        if fmt.endswith("f"):  # out-of-range floats become +-inf, as a float32 header would hold them
            with np.errstate(over="ignore"):
                values = [float(np.float32(v)) for v in values]
        struct.pack_into(fmt, raw, offset, *values)
    return bytes(raw)


_BOMBS: dict[int, bytes] = {}


def zeros_deflated(n_bytes: int) -> bytes:
    """``n_bytes`` zeros as a raw deflate stream, built in 1 MB steps and cached (2 GiB takes seconds)."""
    if n_bytes not in _BOMBS:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        _BOMBS[n_bytes] = _stream_zeros(comp, n_bytes) + comp.flush()
    return _BOMBS[n_bytes]


_NIFTI_BOMBS: dict[tuple[tuple[int, int, int], str], bytes] = {}


def nifti_gzip_bomb(shape: tuple[int, int, int], dtype: Any) -> bytes:
    """A ``.nii.gz`` of zeros with a valid header for ``shape``: tiny file, large decompression (cached)."""
    import nibabel as nib

    key = (shape, np.dtype(dtype).str)
    if key not in _NIFTI_BOMBS:
        header = nib.Nifti1Header()
        header.set_data_shape(shape)
        header.set_data_dtype(dtype)
        header.set_zooms((1.0, 1.0, 1.0))
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        n_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        _NIFTI_BOMBS[key] = comp.compress(header.binaryblock + bytes(4)) + _stream_zeros(comp, n_bytes) + comp.flush()
    return _NIFTI_BOMBS[key]


def _stream_zeros(comp: Any, n_bytes: int) -> bytes:
    """Feed ``n_bytes`` zeros to ``comp`` in 1 MB steps; the compressed output so far."""
    chunk = bytes(1 << 20)
    parts = [comp.compress(chunk) for _ in range(n_bytes >> 20)]
    parts.append(comp.compress(bytes(n_bytes & ((1 << 20) - 1))))
    return b"".join(parts)


# --------------------------------------------------------------------------- families of inputs


def random_bytes(rng: Rng) -> FuzzInput:
    ext = str(rng.choice(EXTENSIONS))
    n = int(rng.choice([0, 1, 4, 16, 132, 348, 544, 1000, 4096]))
    data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    if n and rng.random() < 0.5:  # a real magic number in front of the noise
        magic = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"\x1f\x8b",
                 b"PK\x03\x04", bytes(128) + b"DICM", (348).to_bytes(4, "little")]
        data = magic[int(rng.integers(0, len(magic)))] + data
    return FuzzInput("batch" if ext == ".zip" else "slice", [(f"random{ext}", data)],
                     f"{len(data)} random bytes named random{ext}")


def _slice_options(rng: Rng) -> dict[str, int]:
    options: dict[str, int] = {}
    if rng.random() < 0.2:
        options["frame"] = int(rng.choice([0, 1, 2, -1, 10**6]))
    if rng.random() < 0.3:
        options["axis"] = int(rng.choice([0, 1, 2, 3, -1]))
        options["index"] = int(rng.choice([0, 1, 2, 5, -1, 10**6]))
    return options


def mutated_seed(rng: Rng) -> FuzzInput:
    seed = str(rng.choice(sorted(SEEDS)))
    name, data = SEEDS[seed](rng)
    how = "valid"
    for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):
        data, step = mutate(data, rng)
        how = step if how == "valid" else f"{how}; {step}"
    if rng.random() < 0.1:  # a file under the wrong name
        name = f"renamed{rng.choice(EXTENSIONS)}"
    return FuzzInput("slice", [(name, data)], f"{seed} {how} as {name}", _slice_options(rng))


def _pick(rng: Rng, values: tuple[Any, ...]) -> Any:
    return values[int(rng.integers(0, len(values)))]


def absurd_raster(rng: Rng) -> FuzzInput:
    kind = str(rng.choice(["png", "jpeg", "bmp", "tiff"]))
    w, h = _pick(rng, EXTREME_SIDES), _pick(rng, EXTREME_SIDES)
    if kind == "png":
        depth, colour = int(rng.choice([1, 2, 4, 8, 16, 3, 32])), int(rng.choice([0, 2, 3, 4, 6, 1, 7]))
        return FuzzInput("slice", [("absurd.png", png_with_header(w, h, depth, colour))],
                         f"PNG IHDR {w}x{h} depth {depth} colour type {colour}")
    if kind == "jpeg":
        comps = None if rng.random() < 0.7 else int(rng.choice([0, 2, 4, 255]))
        return FuzzInput("slice", [("absurd.jpg", jpeg_declaring(w, h, comps))],
                         f"JPEG SOF {w}x{h} components {comps}")
    if kind == "bmp":
        sign = -1 if rng.random() < 0.3 else 1
        bits = int(rng.choice([1, 4, 8, 16, 24, 32, 0, 7, 64]))
        return FuzzInput("slice", [("absurd.bmp", bmp_with_header(rng, w, sign * h, bits))],
                         f"BMP header {w}x{sign * h} {bits} bits")
    tag = int(rng.choice([256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 339]))
    value = int(rng.choice([0, 1, 2, 3, 5, 7, 8, 16, 32, 64, 65535, 2**31 - 1, w, h]))
    seed = str(rng.choice(["L", "I;16", "F"]))
    return FuzzInput("slice", [("absurd.tif", tiff_with_tag(tiff_file(rng, seed), tag, value))],
                     f"TIFF ({seed}) tag {tag} = {value}")


def absurd_dicom(rng: Rng) -> FuzzInput:
    attrs: dict[str, Any] = {}
    pixels = None
    for _ in range(int(rng.integers(1, 4))):
        key = str(rng.choice(["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit",
                              "SamplesPerPixel", "PhotometricInterpretation", "PixelSpacing", "RescaleSlope",
                              "RescaleIntercept", "WindowWidth", "WindowCenter", "PixelRepresentation",
                              "VOILUTFunction", "PlanarConfiguration"]))
        if key in ("Rows", "Columns"):
            attrs[key] = int(_pick(rng, EXTREME_SIDES))
        elif key == "NumberOfFrames":
            attrs[key] = str(rng.choice(["0", "-1", "2", "3", "1000000", "abc", "1.5"]))
        elif key in ("BitsAllocated", "BitsStored", "HighBit"):
            attrs[key] = int(rng.choice([0, 1, 7, 8, 12, 15, 16, 32, 64, 255]))
        elif key == "SamplesPerPixel":
            attrs[key] = int(rng.choice([0, 2, 3, 4, 255]))
        elif key == "PhotometricInterpretation":
            attrs[key] = str(rng.choice(["RGB", "YBR_FULL", "PALETTE COLOR", "MONOCHROME1", "", "XYZ"]))
        elif key == "PixelSpacing":
            value = _pick(rng, ABSURD_FLOATS)
            attrs[key] = [f"{value:g}", f"{_pick(rng, ABSURD_FLOATS):g}"] if rng.random() < 0.8 else [f"{value:g}"]
        elif key in ("RescaleSlope", "RescaleIntercept", "WindowWidth", "WindowCenter"):
            attrs[key] = f"{_pick(rng, ABSURD_FLOATS):g}"
        elif key == "VOILUTFunction":
            attrs[key] = str(rng.choice(["SIGMOID", "LINEAR_EXACT", "BOGUS"]))
        else:
            attrs[key] = int(rng.choice([0, 1, 2, 65535]))
    variant = str(rng.choice(["plain", "plain", "float", "rgb", "private", "deflated_private", "huge_frame"]))
    private = 0
    deflated = False
    if variant == "float":
        pixels = rng.normal(0, 1, (16, 12)).astype(np.float32)
    elif variant == "rgb":
        pixels = (rng.random((10, 14)) * 255).astype(np.uint8)
        attrs.update(SamplesPerPixel=3, PhotometricInterpretation="RGB", Columns=14, Rows=10,
                     PlanarConfiguration=0, BitsAllocated=8, BitsStored=8, HighBit=7)
        pixels = np.repeat(pixels, 3).reshape(10, 14 * 3)
    elif variant == "private":
        private = int(rng.choice([1 << 20, 8 << 20, 40 << 20]))
    elif variant == "deflated_private":
        deflated, private = True, int(rng.choice([1 << 20, 300 << 20, 600 << 20]))
    elif variant == "huge_frame":
        side = int(rng.choice([1500, 3000]))
        pixels = np.zeros((side, side // 2), np.uint16)
        pixels[side // 4:side // 2, side // 8:side // 4] = 900
    try:
        data = _dicom_with_private(rng, pixels, deflated, private, attrs)
    except Exception as exc:  # pydicom refused to write this combination: damage a valid file instead
        data = mutate(dicom_file(rng), rng)[0]
        attrs = {"unwritable": f"{type(exc).__name__}"}
    return FuzzInput("slice", [("absurd.dcm", data)], f"DICOM {variant} private={private} {attrs}",
                     _slice_options(rng))


def _dicom_with_private(rng: Rng, pixels: np.ndarray | None, deflated: bool, private: int,
                        attrs: dict[str, Any]) -> bytes:
    if deflated and private > (8 << 20):
        # the dataset, sync-flushed, then a cached deflate stream of zeros: one valid deflate stream
        small = dicom_file(rng, pixels, deflated=True, **attrs)
        plain = dicom_file(rng, pixels, **attrs)
        element = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, private)
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        head = comp.compress(plain[_dataset_start(plain):] + element) + comp.flush(zlib.Z_SYNC_FLUSH)
        return small[:_dataset_start(small)] + head + zeros_deflated(private)
    return dicom_file(rng, pixels, deflated=deflated, private_bytes=private, **attrs)


def _dataset_start(data: bytes) -> int:
    from core.readers.dicom import _file_meta

    return _file_meta(data)[1]


def absurd_nifti(rng: Rng) -> FuzzInput:
    base = nifti_file(rng, dtype=str(rng.choice(["int16", "uint8", "float32", "float64", "int64"])))
    fields: dict[str, Any] = {}
    for _ in range(int(rng.integers(1, 4))):
        key = str(rng.choice(["dim", "dim", "datatype", "bitpix", "pixdim", "vox_offset", "scl_slope",
                              "scl_inter", "sform", "qform", "magic"]))
        if key == "dim":
            ndim = int(rng.choice([0, 1, 2, 3, 4, 5, 7, 8, -1]))
            sides = [int(_pick(rng, EXTREME_SIDES + (-1, -32768))) if rng.random() < 0.5 else int(rng.integers(1, 9))
                     for _ in range(7)]
            fields["dim"] = [ndim] + [max(min(s, 32767), -32768) for s in sides]
        elif key == "datatype":
            fields["datatype"] = int(rng.choice([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280,
                                                 1536, 1792, 2048, 2304, 999, -1]))
        elif key == "bitpix":
            fields["bitpix"] = int(rng.choice([0, 1, 8, 16, 64, 999]))
        elif key == "pixdim":
            fields["pixdim"] = [float(_pick(rng, ABSURD_FLOATS)) if rng.random() < 0.5 else 1.0 for _ in range(8)]
        elif key == "vox_offset":
            fields["vox_offset"] = float(rng.choice([0.0, 1.0, 351.0, 352.0, 1e9, float("nan"), -5.0]))
        elif key in ("scl_slope", "scl_inter"):
            fields[key] = float(_pick(rng, ABSURD_FLOATS))
        elif key == "sform":
            fields["sform_code"] = int(rng.choice([1, 2, 4, -3]))
            fields["srow"] = [float(_pick(rng, ABSURD_FLOATS)) if rng.random() < 0.4 else float(rng.normal())
                              for _ in range(12)]
        elif key == "qform":
            fields["qform_code"] = int(rng.choice([1, 2, 7]))
            fields["quatern"] = [float(_pick(rng, ABSURD_FLOATS)) if rng.random() < 0.5 else 0.5 for _ in range(6)]
        else:
            fields["magic"] = bytes(rng.choice([b"n+1\x00", b"ni1\x00", b"n+2\x00", b"xxxx"]))
    data = nifti_with(base, **fields)
    gz = rng.random() < 0.4
    name = "absurd.nii.gz" if gz else "absurd.nii"
    return FuzzInput("slice", [(name, gzip.compress(data, 1) if gz else data)],
                     f"NIfTI header {fields} gz={gz}", _slice_options(rng))


def extreme_image(rng: Rng) -> FuzzInput:
    """Valid but extreme: one-pixel and one-row images, large images that must be decoded reduced, bombs."""
    from PIL import Image

    kind = str(rng.choice(["thin", "thin", "thin", "big_png", "big_jpeg_declared", "big_jpeg", "big_tiff",
                           "nifti_bomb", "nifti_wide", "constant", "float_extremes"]))
    if kind == "thin":
        h, w = _pick(rng, (1, 2, 1, 5, 1025)), _pick(rng, (1, 3, 1, 2000, 1))
        mode = str(rng.choice(["L", "I;16", "RGBA", "P", "1", "F"]))
        ext = ".tif" if mode == "F" else str(rng.choice([".png", ".tif", ".bmp"]))
        fmt = {".png": "PNG", ".tif": "TIFF", ".bmp": "BMP"}[ext]
        arr = (rng.random((h, w)) * 255).astype(np.uint8)
        img = Image.fromarray(arr.astype(np.float32)) if mode == "F" else (
            Image.fromarray(arr.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(arr).convert(mode))
        if fmt == "BMP" and img.mode not in ("1", "L", "P", "RGB", "RGBA"):
            img = img.convert("L")
        return FuzzInput("slice", [(f"thin{ext}", _pil(img, fmt))], f"{w}x{h} {img.mode} {fmt}")
    if kind == "big_png":
        side = int(rng.choice([2049, 4096, 8192]))
        return FuzzInput("slice", [("big.png", blank_png(side, side))], f"valid 1-bit PNG {side}x{side}")
    if kind == "big_jpeg_declared":
        return FuzzInput("slice", [("bomb.jpg", jpeg_declaring(8192, 8192))], "JPEG of 300 bytes declaring 8192x8192")
    if kind == "big_jpeg":
        arr = np.tile(_picture(rng, 64, 64), (40, 48))
        return FuzzInput("slice", [("big.jpg", _pil(Image.fromarray(arr), "JPEG", quality=30))], "valid JPEG 3072x2560")
    if kind == "big_tiff":
        arr = np.tile(_picture(rng, 64, 64).astype(np.uint16) * 100, (48, 40))
        return FuzzInput("slice", [("big.tif", _pil(Image.fromarray(arr), "TIFF", compression="tiff_deflate",
                                                     resolution_unit=3, x_resolution=40.0, y_resolution=40.0))],
                         "valid 16-bit TIFF 3072x2560")
    if kind == "nifti_bomb":
        shape, dtype = ((8192, 8192, 3), np.uint8) if rng.random() < 0.5 else ((4096, 4096, 6), np.float32)
        return FuzzInput("slice", [("bomb.nii.gz", nifti_gzip_bomb(shape, dtype))],
                         f"NIfTI gzip bomb {shape} {np.dtype(dtype)}", {"axis": int(rng.integers(0, 3)), "index": 1})
    if kind == "nifti_wide":
        shape = (int(rng.choice([1, 3000])), int(rng.choice([1, 2500])), int(rng.choice([1, 2])))
        return FuzzInput("slice", [("wide.nii", nifti_file(rng, shape=shape, dtype=np.uint8))],
                         f"NIfTI {shape}", {"axis": 2, "index": 0})
    if kind == "constant":
        value = float(rng.choice([0.0, 1.0, 65535.0]))
        return FuzzInput("slice", [("flat.dcm", dicom_file(rng, np.full((16, 16), value, np.uint16)))],
                         f"constant DICOM {value:g}")
    arr = rng.normal(0, 1, (20, 20)).astype(np.float32)
    arr[rng.integers(0, 20, 5), rng.integers(0, 20, 5)] = rng.choice([np.nan, np.inf, -np.inf, 3.4e38], 5)
    return FuzzInput("slice", [("extremes.tif", _pil(Image.fromarray(arr), "TIFF"))], "float TIFF with NaN/inf")


# --------------------------------------------------------------------------- zips


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_zip(data: bytes, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """Rewrite a field of every local and central header (e.g. flags, method, sizes)."""
    raw = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = raw.find(signature)
        while at >= 0:
            if at + offset + struct.calcsize(fmt) <= len(raw):
                struct.pack_into(fmt, raw, at + offset, value)
            at = raw.find(signature, at + 4)
    return bytes(raw)


_ZIP_BOMBS: dict[tuple[int, str], bytes] = {}


def bomb_zip(n_bytes: int, name: str = "zeros.png") -> bytes:
    """A zip with one deflated member of ``n_bytes`` zeros (about 1 KB per MB; cached)."""
    if (n_bytes, name) in _ZIP_BOMBS:
        return _ZIP_BOMBS[(n_bytes, name)]
    body = zeros_deflated(n_bytes)
    crc, chunk = 0, bytes(1 << 20)
    for _ in range(n_bytes >> 20):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(bytes(n_bytes & ((1 << 20) - 1)), crc)
    encoded = name.encode()
    size32 = min(n_bytes, 0xFFFFFFFF)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size32, len(encoded), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(body), size32,
                          len(encoded), 0, 0, 0, 0, 0, 0)
    cd_offset = len(local) + len(encoded) + len(body)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(encoded), cd_offset, 0)
    _ZIP_BOMBS[(n_bytes, name)] = local + encoded + body + central + encoded + end
    return _ZIP_BOMBS[(n_bytes, name)]


def batch_zip(rng: Rng) -> FuzzInput:
    kind = str(rng.choice(["plain", "plain", "traversal", "nested", "encrypted", "method", "liar", "damaged",
                           "bomb", "many", "dirs_hidden", "stored"]))
    count = int(rng.integers(1, 5))
    members = []
    for k in range(count):
        seed = str(rng.choice(sorted(SEEDS)))
        name, data = SEEDS[seed](rng)
        if rng.random() < 0.3:
            data = mutate(data, rng)[0]
        members.append((f"scans/{k}_{name}", data))
    what = kind
    if kind == "traversal":
        members = [(str(rng.choice(["../../etc/passwd.png", "/abs/slice.png", "C:\\win\\slice.png", "a/../../b.dcm",
                                    "ü/名前.png", "x" * 300 + ".png"])), d) for _, d in members]
    elif kind == "nested":
        members.append(("inner.zip", _zip(members)))
    elif kind == "dirs_hidden":
        members += [("__MACOSX/._a.png", b"junk"), (".hidden.png", b"x"), ("folder/", b"")]
    elif kind == "many":
        members = [(f"{k}.png", b"x") for k in range(int(rng.choice([50, 2500])))]
        what = f"many ({len(members)} entries)"
    data = _zip(members, zipfile.ZIP_STORED if kind == "stored" else zipfile.ZIP_DEFLATED)
    if kind == "encrypted":
        data = patch_zip(data, 6, 8, "<H", 0x1)
    elif kind == "method":
        method = int(rng.choice([99, 1, 6, 9, 14, 93, 98, 12]))
        data = patch_zip(data, 8, 10, "<H", method)
        what = f"compression method {method}"
    elif kind == "liar":
        size = int(rng.choice([0, 10, 2**31, 2**32 - 1]))
        data = patch_zip(data, 22, 24, "<I", size)
        what = f"declared sizes {size}"
    elif kind == "damaged":
        data, how = mutate(data, rng)
        what = f"damaged zip ({how})"
    elif kind == "bomb":
        n_bytes = int(rng.choice([300 << 20, 2 << 30]))
        data = bomb_zip(n_bytes)
        what = f"zip bomb ({len(data)} bytes, one member of {n_bytes >> 20} MB)"
    return FuzzInput("batch", [("batch.zip", data)], f"batch zip: {what}")


# --------------------------------------------------------------------------- BraTS cases


_CASE_SUFFIXES = {"brats2021": ("_flair", "_t1", "_t1ce", "_t2", "_seg"),
                  "brats2023": ("-t2f", "-t1n", "-t1c", "-t2w", "-seg")}


def case_files(rng: Rng, *, label_dtype: Any = np.uint8, image_dtype: Any = np.int16,
               convention: str = "brats2021") -> dict[str, bytes]:
    """A small valid four-modality case with labels, as ``{file name: .nii.gz bytes}``."""
    import nibabel as nib

    shape = (int(rng.integers(6, 14)), int(rng.integers(6, 14)), int(rng.integers(4, 10)))
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    labels = rng.choice([0, 0, 0, 1, 2, 4 if convention == "brats2021" else 3], size=shape).astype(label_dtype)
    out: dict[str, bytes] = {}
    for suffix in _CASE_SUFFIXES[convention][:4]:
        image = (rng.random(shape) * 500).astype(image_dtype)
        out[f"case1{suffix}.nii.gz"] = gzip.compress(nib.Nifti1Image(image, affine, dtype=image.dtype).to_bytes(), 1)
    seg = nib.Nifti1Image(labels, affine, dtype=labels.dtype).to_bytes()
    out[f"case1{_CASE_SUFFIXES[convention][4]}.nii.gz"] = gzip.compress(seg, 1)
    return out


def brats_case(rng: Rng) -> FuzzInput:
    kind = str(rng.choice(["valid", "int64_labels", "float64_images", "nan_voxel", "nan_sform", "zero_dim",
                           "mutated", "mutated", "header", "missing", "bomb", "brats2023"]))
    files = case_files(rng, label_dtype=np.int64 if kind == "int64_labels" else np.uint8,
                       image_dtype=np.float64 if kind in ("float64_images", "nan_voxel") else np.int16,
                       convention="brats2023" if kind == "brats2023" else "brats2021")
    names = sorted(n for n in files if kind != "nan_voxel" or "seg" not in n)
    victim = names[int(rng.integers(0, len(names)))]
    what = kind
    raw = gzip.decompress(files[victim])
    if kind == "nan_voxel":
        import nibabel as nib

        image = nib.Nifti1Image.from_bytes(raw)
        values = np.asarray(image.dataobj).copy()
        values.flat[int(rng.integers(0, values.size))] = float(rng.choice([np.nan, np.inf]))
        files[victim] = gzip.compress(nib.Nifti1Image(values, image.affine, dtype=values.dtype).to_bytes(), 1)
    elif kind == "nan_sform":
        files[victim] = gzip.compress(nifti_with(raw, sform_code=1, qform_code=0, srow=[float("nan")] * 12), 1)
    elif kind == "zero_dim":
        dims = list(struct.unpack_from("<8h", raw, 40))
        dims[int(rng.integers(1, 4))] = 0
        files[victim] = gzip.compress(nifti_with(raw, dim=dims), 1)
    elif kind == "mutated":
        damaged, how = mutate(files[victim] if rng.random() < 0.5 else raw, rng)
        files[victim] = damaged
        what = f"{victim} {how}"
    elif kind == "header":
        files[victim] = gzip.compress(absurd_header_bytes(rng, raw), 1)
        what = f"{victim} absurd header"
    elif kind == "missing":
        del files[victim]
    elif kind == "bomb":
        files[victim] = nifti_gzip_bomb((256, 256, 256), np.float32)
        what = f"{victim} gzip bomb 256^3 float32"
    return FuzzInput("case", sorted(files.items()), f"BraTS case: {what} ({victim})")


def absurd_header_bytes(rng: Rng, raw: bytes) -> bytes:
    key = str(rng.choice(["pixdim", "srow", "scl_slope", "datatype", "vox_offset"]))
    value: Any
    if key == "pixdim":
        value = [float(_pick(rng, ABSURD_FLOATS)) for _ in range(8)]
    elif key == "srow":
        value = [float(_pick(rng, ABSURD_FLOATS)) for _ in range(12)]
    elif key == "datatype":
        value = int(rng.choice([0, 128, 2304, 999]))
    else:
        value = float(_pick(rng, ABSURD_FLOATS))
    fields = {key: value}
    if key == "srow":
        fields["sform_code"] = 1
    return nifti_with(raw, **fields)


def brats_case_zip(rng: Rng) -> FuzzInput:
    inner = brats_case(rng)
    kind = str(rng.choice(["plain", "plain", "encrypted", "method", "traversal", "bomb", "damaged"]))
    members = [(f"upload/{name}", data) for name, data in inner.files]
    if kind == "traversal":
        members[0] = ("../" + members[0][0], members[0][1])
    data = _zip(members)
    if kind == "encrypted":
        data = patch_zip(data, 6, 8, "<H", 0x1)
    elif kind == "method":
        data = patch_zip(data, 8, 10, "<H", 99)
    elif kind == "damaged":
        data = mutate(data, rng)[0]
    elif kind == "bomb":
        data = bomb_zip(600 << 20, "upload/case1_flair.nii")
    return FuzzInput("case_zip", [("case.zip", data)], f"BraTS zip ({kind}) of {inner.description}")


#: Families of inputs and their weights in a run.
FAMILIES: dict[str, tuple[Callable[[Rng], FuzzInput], float]] = {
    "random_bytes": (random_bytes, 0.10),
    "mutated_seed": (mutated_seed, 0.36),
    "absurd_raster": (absurd_raster, 0.07),
    "absurd_dicom": (absurd_dicom, 0.07),
    "absurd_nifti": (absurd_nifti, 0.07),
    "extreme_image": (extreme_image, 0.06),
    "batch_zip": (batch_zip, 0.12),
    "brats_case": (brats_case, 0.10),
    "brats_case_zip": (brats_case_zip, 0.05),
}


def make_input(seed: int, i: int) -> FuzzInput:
    """Input ``i`` of a run seeded with ``seed`` (the same every time)."""
    rng = np.random.default_rng([seed, i])
    names = list(FAMILIES)
    weights = np.array([FAMILIES[n][1] for n in names])
    family = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    inp = FAMILIES[family][0](rng)
    inp.description = f"#{i} {family}: {inp.description}"
    return inp


# --------------------------------------------------------------------------- running one input


class InvalidOutput(AssertionError):
    """A reader accepted an input but returned something the app cannot use."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise InvalidOutput(what)


def check_slice(s: Any) -> None:
    """An accepted slice: finite, 2D, non-empty float32 in [0, 1], within the decoded-size budget;
    then the cheap steps that once crashed on odd slices (head box, small components, measures)."""
    from core.readers.budgets import plausible_spacing
    from core.readers.decoded import Slice
    from core.imaging.morphology import keep_largest_component, measure_mask, remove_small_components
    from core.imaging.preprocess import brain_bbox, head_mask

    _require(isinstance(s, Slice), f"not a Slice: {type(s).__name__}")
    image = s.image
    _require(isinstance(image, np.ndarray) and image.dtype == np.float32, f"image dtype {getattr(image, 'dtype', None)}")
    _require(image.ndim == 2 and image.size > 0, f"image shape {image.shape}")
    _require(max(image.shape) <= config.MAX_DECODED_SIDE, f"image {image.shape} over the decoded-size budget")
    _require(bool(np.isfinite(image).all()), "non-finite pixels")
    _require(float(image.min()) >= 0.0 and float(image.max()) <= 1.0, "pixels outside [0, 1]")
    _require(s.spacing_mm is None or plausible_spacing(s.spacing_mm) == tuple(s.spacing_mm),
             f"spacing {s.spacing_mm}")
    box = brain_bbox(image)
    _require(0 <= box.top < box.bottom <= image.shape[0] and 0 <= box.left < box.right <= image.shape[1],
             f"head box {box}")
    # a mask shaped like a segmentation (smooth, one region), not the raw threshold of a noisy image
    mask = remove_small_components(head_mask(image, 0.5), 10.0, s.spacing_mm)
    if mask.any():
        features = measure_mask(keep_largest_component(mask), s.spacing_mm)
        for key, value in features.to_dict().items():
            if isinstance(value, float):
                _require(np.isfinite(value), f"measurement {key} = {value}")


def read_like_the_app(data: bytes, name: str, options: dict[str, int]) -> Any:
    """Header inspection, then the slice the Analyse or Batch page would read (the middle slice or
    frame when one must be chosen). Both calls must fail typed or succeed."""
    from core.errors import NeedsSliceSelection
    from core.readers.slice import inspect_slice_source, read_slice

    source = None
    try:
        source = inspect_slice_source(data, name)
    except InputError:
        pass  # read_slice runs anyway: it must refuse the file too, typed
    try:
        return read_slice(data, name, **options)
    except NeedsSliceSelection:
        if source is None:
            raise
    if source.kind == "volume":
        return read_slice(data, name, axis=2, index=source.shape[2] // 2)
    return read_slice(data, name, frame=source.n_frames // 2)


def check_case(case: Any) -> None:
    """An accepted case: four same-shape 3D modalities, labels in {0, 1, 2, 4}, plausible spacing,
    finite voxels and window presets, a displayable slice."""
    from core.readers.budgets import plausible_spacing
    from core.volumes.case import MODALITIES
    from core.volumes.views import slice_view, window_presets

    _require(sorted(case.images) == sorted(MODALITIES), f"modalities {sorted(case.images)}")
    shape = case.shape
    _require(len(shape) == 3 and min(shape) > 0, f"shape {shape}")
    for key, image in case.images.items():
        _require(image.shape == shape, f"{key} shape {image.shape} vs {shape}")
        _require(image.dtype.kind != "f" or bool(np.isfinite(image).all()), f"{key} has non-finite voxels")
        for lo, hi in window_presets(image).values():
            _require(np.isfinite([lo, hi]).all() and hi > lo, f"{key} window ({lo}, {hi})")
    if case.labels is not None:
        _require(case.labels.shape == shape and case.labels.dtype == np.uint8, "label map shape or dtype")
        _require(set(np.unique(case.labels).tolist()) <= {0, 1, 2, 4}, "label values")
    _require(plausible_spacing(case.spacing_mm) is not None, f"spacing {case.spacing_mm}")
    _require(bool(np.isfinite(case.affine).all()), "affine")
    _require(slice_view(case.images["flair"], "axial", shape[2] // 2).ndim == 2, "slice view")


def run_one(inp: FuzzInput) -> dict[str, Any]:
    """Run one input in this process: ``{"status", "error", "message", "seconds"}``."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            status = _run_target(inp)
            out = {"status": status, "error": "", "message": ""}
        except InputError as exc:
            out = {"status": "typed", "error": type(exc).__name__, "message": str(exc)[:300]}
            if _caused_by_memory(exc):
                out.update(status="untyped", error=f"MemoryError (as {type(exc).__name__})")
        except Exception as exc:  # the harness counts it; that is its purpose
            out = {"status": "untyped", "error": f"{type(exc).__module__}.{type(exc).__name__}",
                   "message": str(exc)[:300]}
    out["seconds"] = time.perf_counter() - start
    return out


def _caused_by_memory(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _run_target(inp: FuzzInput) -> str:
    """``"accepted"`` or ``"typed"``; anything untyped propagates."""
    if inp.target == "slice":
        name, data = inp.files[0]
        check_slice(read_like_the_app(data, name, inp.options))
        return "accepted"
    if inp.target == "batch":
        from core.slices.batch import expand_uploads

        items, problems = expand_uploads(inp.files)
        for row in problems:
            _require(row.status == "error" and isinstance(row.message, str) and bool(row.message), f"row {row}")
        accepted = False
        for item in items[:8]:
            try:
                check_slice(read_like_the_app(item.data, _base_name(item.name), {}))
                accepted = True
            except InputError:
                pass
        return "accepted" if accepted else "typed"
    from core.volumes.case import read_case, read_case_zip

    case = read_case(dict(inp.files)) if inp.target == "case" else read_case_zip(inp.files[0][1])
    check_case(case)
    return "accepted"


def _base_name(name: str) -> str:
    """The file name without folders, as the batch reads a zip member."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- isolation


def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_isolated(inp: FuzzInput, timeout: float, memory_mb: int, quiet: bool = True) -> dict[str, Any]:
    """:func:`run_one` in a forked worker limited to ``memory_mb`` more address space and ``timeout`` s.

    Adds ``rss_mb`` (the worker's peak resident memory) and ``wall`` (seconds, fork included).
    """
    import resource

    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # worker
        os.close(read_fd)
        if quiet:  # libtiff and libjpeg print to the C stderr about the damaged files made here
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
        try:
            limit = _vm_size() + memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            out = run_one(inp)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never raised
            out = {"status": "untyped", "error": type(exc).__name__, "message": str(exc)[:300], "seconds": 0.0}
        payload = json.dumps(out).encode()
        while payload:
            payload = payload[os.write(write_fd, payload):]
        os._exit(0)
    os.close(write_fd)
    chunks, hung = [], False
    while True:
        remaining = timeout - (time.monotonic() - start)
        ready = select.select([read_fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
        if not ready:
            hung = True
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - start
    rss_mb = usage.ru_maxrss / 1024
    if hung:
        return {"status": "hang", "error": "", "message": "", "seconds": wall, "wall": wall, "rss_mb": rss_mb}
    try:
        out = json.loads(b"".join(chunks))
    except ValueError:
        reason = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        out = {"status": "untyped", "error": f"WorkerDied ({reason})", "message": "", "seconds": wall}
    out.update(wall=wall, rss_mb=rss_mb)
    return out


# --------------------------------------------------------------------------- the command


@dataclass
class Tally:
    """Counts and extremes over a run."""

    counts: dict[str, int] = field(default_factory=lambda: {"typed": 0, "accepted": 0, "untyped": 0, "hang": 0})
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    slowest: list[tuple[float, float, str]] = field(default_factory=list)

    def add(self, inp: FuzzInput, out: dict[str, Any]) -> None:
        status = out["status"]
        self.counts[status] += 1
        self.seconds.append(float(out.get("wall", out["seconds"])))
        self.rss_mb.append(float(out.get("rss_mb", 0.0)))
        self.slowest = sorted(self.slowest + [(self.seconds[-1], self.rss_mb[-1], inp.description[:160])])[-5:]
        if status == "typed":
            kind = out["error"] or "batch rows only (every file refused)"
            self.errors[kind] = self.errors.get(kind, 0) + 1
        if status in ("untyped", "hang"):
            self.failures.append(f"{status.upper()} {out.get('error', '')}: {out.get('message', '')!r} <- "
                                 f"{inp.description[:400]}")


def _save(inp: FuzzInput, folder: Path, index: int) -> None:
    target = folder / f"input_{index}"
    target.mkdir(parents=True, exist_ok=True)
    for k, (name, data) in enumerate(inp.files):
        (target / f"{k}_{_base_name(name)}").write_bytes(data)
    (target / "description.txt").write_text(f"{inp.target} {inp.options}\n{inp.description}\n")


def _quiet() -> None:
    """Silence the libraries' warnings and log lines about the damaged files this makes on purpose."""
    import logging

    warnings.simplefilter("ignore")
    for name in ("nibabel", "pydicom", "PIL"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of inputs (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input before it counts as a hang")
    parser.add_argument("--memory-mb", type=int, default=2048,
                        help="address space a worker may add before allocations fail (default 2048)")
    parser.add_argument("--only", type=int, action="append", help="run only input N (repeatable)")
    parser.add_argument("--save", type=Path, help="write the files of untyped and hanging inputs here")
    parser.add_argument("--progress", type=int, default=500, help="print a line every N inputs (0: never)")
    args = parser.parse_args(argv)
    _quiet()

    import core.slices.batch  # noqa: F401 - import once in the parent so each fork starts warm
    import core.volumes.case  # noqa: F401
    import core.readers.slice  # noqa: F401

    idle = run_isolated(FuzzInput("slice", [("idle.png", png_file(np.random.default_rng(0)))], "idle"),
                        args.timeout, args.memory_mb)
    indices = args.only or list(range(args.n))
    tally = Tally()
    started = time.monotonic()
    for done, i in enumerate(indices, 1):
        inp = make_input(args.seed, i)
        out = run_isolated(inp, args.timeout, args.memory_mb)
        tally.add(inp, out)
        if out["status"] in ("untyped", "hang") and args.save:
            _save(inp, args.save, i)
        if args.only:
            print(f"#{i} {out['status']} {out.get('error', '')} {out.get('message', '')[:200]!r} "
                  f"{out['wall']:.2f}s {out['rss_mb']:.0f} MB -- {inp.description[:300]}")
        elif args.progress and done % args.progress == 0:
            print(f"... {done}/{len(indices)} in {time.monotonic() - started:.0f}s {tally.counts}", flush=True)
    _report(tally, idle, time.monotonic() - started, len(indices))
    return 1 if tally.counts["untyped"] or tally.counts["hang"] else 0


def _report(tally: Tally, idle: dict[str, Any], elapsed: float, n: int) -> None:
    seconds, rss = np.array(tally.seconds or [0.0]), np.array(tally.rss_mb or [0.0])
    print(f"inputs {n} in {elapsed:.0f} s; worker idle peak {idle['rss_mb']:.0f} MB (libraries, shared with the parent)")
    print("typed errors by class: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.errors.items(), key=lambda kv: -kv[1])))
    print(f"time per input: median {np.median(seconds):.3f} s, p99 {np.percentile(seconds, 99):.3f} s, "
          f"max {seconds.max():.2f} s")
    print(f"peak memory per input: median {np.median(rss):.0f} MB, max {rss.max():.0f} MB "
          f"(max growth over an idle worker {rss.max() - idle['rss_mb']:.0f} MB)")
    for wall, peak, what in reversed(tally.slowest):
        print(f"slow: {wall:.2f} s, {peak:.0f} MB -- {what}")
    for line in tally.failures[:50]:
        print(line)
    c = tally.counts
    print(f"RESULT typed={c['typed']} accepted={c['accepted']} untyped={c['untyped']} hangs={c['hang']} "
          f"max_seconds={seconds.max():.2f} max_rss_mb={rss.max():.0f} n={n}")


if __name__ == "__main__":
    sys.exit(main())
