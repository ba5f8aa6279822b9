"""core.readers.nifti: the NIfTI header parser, budgets and decompression shared by slices and volumes."""
from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from core import config
from core.errors import CorruptFile, EmptyFile, ImageTooLarge, UnsupportedFile
from core.readers.nifti import (
    check_decompressed_size,
    check_voxel_type,
    nifti_magic,
    read_header,
    stored_bytes,
)


def nifti(gz: bool = False, dtype=np.int16, shape=(6, 5, 4)) -> bytes:
    raw = nib.Nifti1Image(np.arange(np.prod(shape)).reshape(shape).astype(dtype), np.eye(4)).to_bytes()
    return gzip.compress(raw) if gz else raw


def with_magic(data: bytes, magic: bytes) -> bytes:
    return data[:344] + magic + data[348:]


@pytest.mark.parametrize("gz", [False, True])
def test_header_shape_dtype_offset_and_stored_voxels(gz):
    data = nifti(gz)
    h = read_header(data, "v.nii")
    assert (h.shape, h.shape3, h.dtype, h.offset, h.gz) == ((6, 5, 4), (6, 5, 4), np.dtype("<i2"), 352, gz)
    raw = stored_bytes(data, h, "v.nii")
    assert len(raw) >= h.n_bytes == 352 + 6 * 5 * 4 * 2
    voxels = np.ndarray(h.shape3, dtype=h.dtype, buffer=raw, offset=h.offset, order="F")
    np.testing.assert_array_equal(voxels, np.arange(120).reshape(6, 5, 4))


def test_magic_kinds():
    data = nifti()
    assert nifti_magic(data) == "nifti1"
    assert nifti_magic(with_magic(data, b"ni1\x00")) == "pair"
    assert nifti_magic(with_magic(data, b"xxxx")) is None
    assert nifti_magic(with_magic(data, bytes(4))) is None
    assert nifti_magic(b"\x00" * 10) is None


def test_refusals_name_the_file():
    data = nifti()
    with pytest.raises(EmptyFile, match="'v.nii' is empty"):
        read_header(b"", "v.nii")
    with pytest.raises(UnsupportedFile, match=r"\.hdr/\.img pair"):
        read_header(with_magic(data, b"ni1\x00"), "v.nii")
    with pytest.raises(UnsupportedFile, match="Analyze"):
        read_header(with_magic(data, bytes(4)), "v.nii")  # Analyze 7.5: no magic
    with pytest.raises(CorruptFile, match="no valid NIfTI header"):
        read_header(with_magic(data, b"xxxx"), "v.nii")  # a damaged magic
    with pytest.raises(CorruptFile, match="no valid NIfTI header"):
        read_header(b"not a header" * 50, "v.nii")
    with pytest.raises(CorruptFile, match="gzip"):
        read_header(nifti(gz=True)[:20], "v.nii.gz")
    with pytest.raises(CorruptFile, match="damaged NIfTI header"):
        read_header(data[:40] + struct.pack("<h", 9) + data[42:], "v.nii")  # dim[0] = 9


def test_voxel_type_and_decompressed_size_budgets(monkeypatch):
    complex_header = read_header(nifti(dtype=np.complex64), "c.nii")
    with pytest.raises(UnsupportedFile, match="complex64"):
        check_voxel_type(complex_header, "c.nii")
    h = read_header(nifti(), "v.nii")
    check_voxel_type(h, "v.nii")
    check_decompressed_size(h, "v.nii")
    monkeypatch.setattr(config, "MAX_NIFTI_BYTES", h.n_bytes - 1)
    with pytest.raises(ImageTooLarge, match="once decompressed"):
        check_decompressed_size(h, "v.nii")


def test_truncated_and_damaged_data():
    data = nifti()
    h = read_header(data, "v.nii")
    with pytest.raises(CorruptFile, match="is truncated"):
        stored_bytes(data[:-10], h, "v.nii")
    packed = bytearray(nifti(gz=True))
    packed[-8] ^= 0xFF  # CRC-32 of the gzip trailer
    with pytest.raises(CorruptFile, match="cannot be decompressed"):
        stored_bytes(bytes(packed), read_header(bytes(packed), "v.nii.gz"), "v.nii.gz")
