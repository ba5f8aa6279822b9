"""Upload files built in memory for the reader and pipeline tests: a minimal MR DICOM and a NIfTI."""
from __future__ import annotations

import gzip
from io import BytesIO

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def make_dicom(pixels: np.ndarray | None, *, preamble: bool = True, **attrs) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesDescription = "T1 axial"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-12345"
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "General Hospital"
    if pixels is not None:
        arr = np.asarray(pixels, dtype=np.uint16)
        ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        if arr.ndim == 3:
            ds.NumberOfFrames = int(arr.shape[0])
        ds.PixelData = arr.tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    if not preamble:
        data = data[132:]  # drop the 128-byte preamble and "DICM": a bare dataset stream
    return data


def make_nifti(data: np.ndarray, affine: np.ndarray, *, gz: bool = False) -> bytes:
    raw = nib.Nifti1Image(data, affine).to_bytes()
    return gzip.compress(raw) if gz else raw
