"""Label maps as ``.nii.gz`` bytes, in the canonical grid or back on the input files' grid."""
from __future__ import annotations

import gzip

import numpy as np

from core.volumes.case import Case

__all__ = ["save_labels_nifti", "labels_in_input_orientation", "prediction_nifti"]


def save_labels_nifti(labels: np.ndarray, affine: np.ndarray) -> bytes:
    """``.nii.gz`` bytes of a 3D label map (uint8) with the given affine (sform and qform).

    Values must be integers in 0..255 (the project's labels are 0, 1, 2, 4).
    """
    import nibabel as nib

    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise ValueError(f"A label map must be 3D, got shape {arr.shape}.")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("Label values must lie in 0..255.")
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"The affine must be 4x4, got {aff.shape}.")
    img = nib.Nifti1Image(arr.astype(np.uint8, copy=False), aff)
    img.set_data_dtype(np.uint8)
    img.header.set_xyzt_units("mm")
    img.set_sform(aff, code=1)
    img.set_qform(aff, code=1)
    img.header["intent_name"] = b"BraTS labels"
    return gzip.compress(img.to_bytes(), compresslevel=6)


def labels_in_input_orientation(labels: np.ndarray, case: Case) -> tuple[np.ndarray, np.ndarray]:
    """A canonical label map put back on the input files' voxel grid: ``(array, affine)``.

    Undoes the RAS reorientation of :func:`read_case` (axis flips and permutations only), so
    the array lines up voxel for voxel with the uploaded modalities and the affine is theirs.
    Without a recorded input affine the canonical array and affine are returned.
    """
    import nibabel as nib

    arr = np.asarray(labels)
    if arr.shape != case.shape:
        raise ValueError(f"The label map {arr.shape} does not match the case {case.shape}.")
    if case.original_affine is None:
        return arr, np.asarray(case.affine, dtype=np.float64)
    transform = nib.orientations.ornt_transform(nib.io_orientation(case.affine),
                                                nib.io_orientation(case.original_affine))
    back = nib.Nifti1Image(arr, case.affine).as_reoriented(transform)
    return np.ascontiguousarray(np.asanyarray(back.dataobj)), np.asarray(back.affine, dtype=np.float64)


def prediction_nifti(labels: np.ndarray, case: Case) -> bytes:
    """``.nii.gz`` bytes of a predicted label map on the input's grid, with the input's affine."""
    return save_labels_nifti(*labels_in_input_orientation(labels, case))
