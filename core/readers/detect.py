"""Which format an upload is: magic bytes first, then the file name's extension."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

from core.errors import CorruptFile, EmptyFile, UnsupportedFile
from core.readers.nifti import gunzip_head, nifti_magic, pair_error

#: Extensions for a Streamlit uploader ``type=`` list ("gz" lets ``.nii.gz`` through).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm", "dicom", "nii", "gz",
)
#: Display name of each format :func:`detect_format` returns.
FORMAT_LABELS: dict[str, str] = {
    "png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "dicom": "DICOM", "nifti": "NIfTI",
}

_EXTENSION_FORMATS: dict[str, str] = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".dcm": "dicom", ".dicom": "dicom", ".nii": "nifti", ".nii.gz": "nifti",
}
_SUPPORTED_TEXT = "PNG, JPEG, TIFF, BMP, DICOM (.dcm) or NIfTI (.nii / .nii.gz)"


def _lower_name(name: str) -> str:
    return Path(str(name)).name.lower()


def _is_bmp(data: bytes) -> bool:
    if not data.startswith(b"BM") or len(data) < 18:
        return False
    return int.from_bytes(data[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124)


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
            inner = gunzip_head(data)
        except (zlib.error, EOFError) as exc:
            raise CorruptFile(
                f"'{name}' is a gzip file but it is damaged and cannot be decompressed ({exc})."
            ) from exc
        kind = nifti_magic(inner)
        if kind in ("nifti1", "nifti2"):
            return "nifti"
        if kind == "pair":
            raise pair_error(name)
        raise UnsupportedFile(
            f"'{name}' is a gzip-compressed file but not a NIfTI image. Only .nii.gz files may be "
            f"compressed; other images must be uploaded as {_SUPPORTED_TEXT}."
        )
    nifti = nifti_magic(head)
    if nifti in ("nifti1", "nifti2"):
        return "nifti"
    if nifti == "pair":
        raise pair_error(name)
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
