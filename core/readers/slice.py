"""Read one 2D greyscale slice from an uploaded file: PNG, JPEG, TIFF, BMP, DICOM or NIfTI.

The dispatch: :func:`core.readers.detect.detect_format` names the format, then its reader
(:mod:`~core.readers.raster`, :mod:`~core.readers.dicom`, :mod:`~core.readers.nifti`) decodes it.

Every reader returns a :class:`~core.readers.decoded.Slice` whose ``image`` is float32 in [0, 1],
ready to display.
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

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import CorruptFile, ImageTooLarge, InputError
from core.readers.budgets import check_bytes
from core.readers.decoded import Slice, SliceSource
from core.readers.detect import FORMAT_LABELS, detect_format
from core.readers.dicom import dicom_source, read_dicom
from core.readers.nifti import nifti_source, read_nifti
from core.readers.raster import raster_source, read_raster


@contextmanager
def _typed_errors(name: str, fmt: str, verb: str, participle: str, hint: str = "") -> Iterator[None]:
    """Let :class:`InputError` through; turn any other decoder failure into a typed one for ``name``."""
    try:
        yield
    except InputError:
        raise
    except MemoryError as exc:
        raise ImageTooLarge(f"'{name}' is too large to {verb} in the memory available.") from exc
    except Exception as exc:
        raise CorruptFile(
            f"'{name}' could not be {participle} as {FORMAT_LABELS[fmt]}: the file looks damaged"
            f"{hint} ({type(exc).__name__}: {exc})."
        ) from exc


def inspect_slice_source(data: bytes, name: str) -> SliceSource:
    """What ``data`` holds (single image, multi-frame, 3D volume) from its headers only.

    Use it to decide whether to ask for a frame or a slice before :func:`read_slice`. Raises
    the same :class:`InputError` subclasses; truncated pixel data is only found by read_slice.
    """
    check_bytes(data, name)
    fmt = detect_format(data, name)
    with _typed_errors(name, fmt, "read", "read"):
        if fmt == "dicom":
            return dicom_source(data, name)
        if fmt == "nifti":
            return nifti_source(data, name)
        return raster_source(data, name, fmt)


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
    check_bytes(data, name)
    fmt = detect_format(data, name)
    with _typed_errors(name, fmt, "decode", "decoded", " or uses a feature this app does not support"):
        if fmt == "dicom":
            return read_dicom(data, name, frame)
        if fmt == "nifti":
            return read_nifti(data, name, axis, index)
        return read_raster(data, name, fmt, frame)


def read_slice_file(path: str | os.PathLike) -> Slice:
    """Read a file from disk with :func:`read_slice` (name = the file's name).

    OS errors (missing file, no permission) propagate unchanged: they are not upload problems.
    """
    p = Path(path)
    return read_slice(p.read_bytes(), p.name)
