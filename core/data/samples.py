"""Procedurally generated demo inputs for the app (``sample_data/``): no real scan is used.

    python -m core.samples [--out DIR] [--seed 7]

Every file is drawn from a small analytic head phantom (numpy / scipy only) and is
deterministic for a given seed. The phantom lives in *normalised patient coordinates*: ``x``
points to the patient's right, ``y`` anteriorly, ``z`` superiorly (RAS), each in [-1, 1] over
the field of view. The same model is evaluated on a 2D plane (one slice) or on a 3D grid (a
volume), so the slices, the NIfTI volume and the BraTS-style case share one anatomy.

Tumours are irregular blobs (an ellipsoid whose boundary is perturbed by a smooth noise field),
labelled with the BraTS convention: 1 necrotic core (NCR), 2 oedema (ED), 4 enhancing tumour
(ET). Slice masks are the tumour core (labels 1 and 4), as in the figshare masks.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from core import config

#: Tissue codes of the phantom.
BG, SCALP, SKULL, CSF, GM, WM, BONE, AIR = range(8)
#: Semi-axes (x, y, z) of the head ellipsoid, in normalised coordinates.
HEAD = (0.74, 0.88, 0.80)
#: Radii (in units of the head ellipsoid) of the scalp, skull and brain surfaces.
SCALP_IN, SKULL_IN, BRAIN_OUT = 0.955, 0.90, 0.875

#: Mean intensity in [0, 1] of each tissue code, per MR contrast.
TISSUE_INTENSITY: dict[str, tuple[float, ...]] = {
    #          BG   SCALP SKULL CSF   GM    WM    BONE  AIR
    "t1":    (0.0, 0.62, 0.80, 0.10, 0.45, 0.66, 0.33, 0.02),
    "t1ce":  (0.0, 0.62, 0.80, 0.10, 0.47, 0.66, 0.38, 0.02),
    "t2":    (0.0, 0.45, 0.35, 0.95, 0.60, 0.42, 0.30, 0.02),
    "flair": (0.0, 0.40, 0.45, 0.06, 0.55, 0.42, 0.30, 0.02),
}
#: Mean intensity of each BraTS tumour label, per contrast.
TUMOUR_INTENSITY: dict[str, dict[int, float]] = {
    "t1": {1: 0.22, 2: 0.50, 4: 0.42},
    "t1ce": {1: 0.20, 2: 0.44, 4: 0.93},
    "t2": {1: 0.85, 2: 0.80, 4: 0.62},
    "flair": {1: 0.50, 2: 0.88, 4: 0.70},
}
SLICE_SIZE = 256
VOLUME_SHAPE = (128, 128, 24)
VOLUME_ZOOMS = (1.0, 1.0, 5.0)
BRATS_SHAPE = (96, 96, 72)
BRATS_CASE = "SYNTH_0001"
MODALITIES = ("flair", "t1", "t1ce", "t2")
#: Default view of the slice sample of each class, and where the plane cuts the head.
SLICE_VIEWS: dict[str, tuple[str, float]] = {
    "glioma": ("axial", 0.15),
    "meningioma": ("coronal", 0.0),
    "pituitary": ("sagittal", 0.03),
    "notumor": ("axial", 0.15),
}
DICOM_SPACING = (0.5, 0.5)
DICOM_SLOPE = 0.25


@dataclass(frozen=True)
class Grid:
    """Normalised RAS coordinates of every pixel/voxel (arrays of one shape) and the voxel size."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    step: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)


@dataclass(frozen=True)
class SyntheticSlice:
    """One rendered 2D slice: ``image`` float32 [0, 1] (H, W), BraTS ``labels``, tumour ``mask``."""

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    intracranial: np.ndarray
    view: str


# --------------------------------------------------------------------------- grids and noise

def _centres(n: int) -> np.ndarray:
    return ((np.arange(n) + 0.5) / n * 2.0 - 1.0).astype(np.float32)


def plane_grid(size: int, view: str, offset: float = 0.0) -> Grid:
    """A ``size``² display plane: axial/coronal radiological (patient right on the left),
    axial anterior at the top, coronal/sagittal superior at the top, sagittal anterior right."""
    down, right = _centres(size)[::-1][:, None], _centres(size)[None, :]
    fixed = np.full((size, size), offset, dtype=np.float32)
    rows, cols = np.broadcast_to(down, (size, size)), np.broadcast_to(right, (size, size))
    step = (2.0 / size, 2.0 / size)
    if view == "axial":
        return Grid(x=-cols.copy(), y=rows.copy(), z=fixed, step=step)
    if view == "coronal":
        return Grid(x=-cols.copy(), y=fixed, z=rows.copy(), step=step)
    if view == "sagittal":
        return Grid(x=fixed, y=cols.copy(), z=rows.copy(), step=step)
    raise ValueError(f"unknown view {view!r}: use axial, coronal or sagittal")


def volume_grid(shape: Sequence[int]) -> Grid:
    """A canonical RAS ``(X, Y, Z)`` grid spanning [-1, 1] along each axis."""
    x, y, z = np.meshgrid(*(_centres(int(n)) for n in shape), indexing="ij")
    return Grid(x=x, y=y, z=z, step=tuple(2.0 / int(n) for n in shape))


def smooth_noise(shape: tuple[int, ...], sigma: float, step: Sequence[float],
                 rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise, zero mean and unit std; ``sigma`` in normalised units."""
    white = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(white, [sigma / s for s in step], mode="wrap", truncate=3.0)
    return (field - field.mean()) / (field.std() + 1e-8)


def _radius(grid: Grid, centre: Sequence[float], axes: Sequence[float]) -> np.ndarray:
    """Ellipsoidal radius (1 on the surface) of every grid point."""
    return np.sqrt(((grid.x - centre[0]) / axes[0]) ** 2 + ((grid.y - centre[1]) / axes[1]) ** 2
                   + ((grid.z - centre[2]) / axes[2]) ** 2)


# --------------------------------------------------------------------------- anatomy

def skull_base(y: np.ndarray) -> np.ndarray:
    """Height ``z`` of the cranial floor along ``y``: high anterior fossa, sella dip, deep posterior fossa."""
    base = -0.58 + 0.22 / (1.0 + np.exp(-(y - 0.35) / 0.05))
    base = base - 0.20 / (1.0 + np.exp((y + 0.2) / 0.06))
    return base - 0.07 * np.exp(-(((y - 0.12) / 0.07) ** 2))


def _cortex_depth(grid: Grid, r: np.ndarray) -> np.ndarray:
    """Rough distance below the brain surface (convexity, medial surface, cranial floor)."""
    head_scale = min(HEAD)
    convexity = (BRAIN_OUT - r) * head_scale
    medial = np.where(grid.z > 0.12, np.abs(grid.x) - 0.012, 1.0)
    floor = grid.z - skull_base(grid.y) - 0.025
    return np.minimum(np.minimum(convexity, medial), floor)


def head_tissues(grid: Grid, rng: np.random.Generator, skull: bool = True) -> np.ndarray:
    """Tissue code of every grid point; ``skull=False`` gives a skull-stripped (BraTS-like) head."""
    r = _radius(grid, (0.0, 0.0, 0.0), HEAD)
    folds = smooth_noise(grid.shape, 0.03, grid.step, rng)
    tissues = np.zeros(grid.shape, dtype=np.uint8)
    if skull:
        tissues[r < 1.0] = SCALP
        tissues[r < SCALP_IN] = SKULL
        tissues[(r < SKULL_IN) & (grid.z <= skull_base(grid.y))] = BONE
        sinus = _radius(grid, (0.0, 0.2, -0.74), (0.12, 0.1, 0.05)) < 1
        tissues[sinus & (r < SKULL_IN)] = AIR
    intracranial = (r < SKULL_IN) & (grid.z > skull_base(grid.y))
    tissues[intracranial] = CSF
    depth = _cortex_depth(grid, r)
    brain = intracranial & (depth > 0)
    sulci = brain & _zero_crossings(folds) & (depth < 0.09)
    tissues[brain] = WM
    tissues[brain & _near(~brain | sulci, 0.035, grid.step)] = GM
    tissues[sulci] = CSF
    _deep_structures(grid, tissues, intracranial, _zero_crossings(folds))
    return tissues


def _zero_crossings(field: np.ndarray) -> np.ndarray:
    """One-voxel-thick lines (surfaces in 3D) where ``field`` changes sign: sulci and folia."""
    positive = field > 0
    return positive & ndimage.binary_dilation(~positive)


def _near(mask: np.ndarray, distance: float, step: Sequence[float]) -> np.ndarray:
    """Points within ``distance`` (normalised units) of ``mask``."""
    return ndimage.distance_transform_edt(~mask, sampling=step) < distance


def _deep_structures(grid: Grid, tissues: np.ndarray, intracranial: np.ndarray,
                     folia: np.ndarray) -> None:
    """Cerebellum, brainstem, corpus callosum, deep grey nuclei and lateral ventricles, in place."""
    cerebellum = (_radius(grid, (0.0, -0.5, -0.47), (0.48, 0.3, 0.2)) < 1) & intracranial
    tissues[cerebellum] = GM
    tissues[cerebellum & folia] = CSF
    stem = _radius(grid, (0.0, -0.1, -0.55), (0.13, 0.12, 0.38)) < 1
    tissues[stem & (_radius(grid, (0, 0, 0), HEAD) < SKULL_IN * 0.97)] = WM
    callosum = _radius(grid, (0.0, -0.03, 0.1), (0.25, 0.38, 0.1)) < 1
    tissues[callosum] = WM
    for side in (-1.0, 1.0):
        tissues[_radius(grid, (0.21 * side, -0.02, -0.04), (0.09, 0.15, 0.1)) < 1] = GM
        tissues[_radius(grid, (0.11 * side, -0.02, 0.08), (0.085, 0.33, 0.11)) < 1] = CSF


# --------------------------------------------------------------------------- tumours

def tumour_blob(grid: Grid, centre: Sequence[float], radii: Sequence[float],
                rng: np.random.Generator, roughness: float = 0.25) -> np.ndarray:
    """An irregular solid blob: an ellipsoid with a noise-perturbed boundary, one piece, no holes."""
    e = _radius(grid, centre, radii)
    noise = smooth_noise(grid.shape, 0.35 * float(min(radii)), grid.step, rng)
    blob = (e + roughness * noise < 1.0) & (e < 1.3)
    return _largest_component(blob)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, n + 1))
    keep = 1 + int(np.argmax(sizes))
    box = ndimage.find_objects(labelled)[keep - 1]
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = ndimage.binary_fill_holes(labelled[box] == keep)
    return out


def glioma_labels(grid: Grid, tissues: np.ndarray, rng: np.random.Generator,
                  centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """BraTS labels of a ring-enhancing glioma: NCR centre, ET rim (≥ 1 voxel), ED shell (1.5x)."""
    parenchyma = np.isin(tissues, (GM, WM))
    inside = np.isin(tissues, (CSF, GM, WM))
    core = tumour_blob(grid, centre, radii, rng) & ndimage.binary_erosion(inside, iterations=2)
    depth = ndimage.distance_transform_edt(core, sampling=grid.step)
    rim = max(0.3 * float(min(radii)), 1.5 * max(grid.step[:2]))
    oedema = tumour_blob(grid, centre, [1.5 * r for r in radii], rng, roughness=0.35)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    labels[oedema & parenchyma] = 2
    labels[core] = 4
    labels[depth > rim] = 1
    return labels


def extra_axial_labels(grid: Grid, tissues: np.ndarray, rng: np.random.Generator,
                       centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Label 4 for a homogeneous enhancing blob clipped by the inner skull (meningioma, pituitary)."""
    intracranial = np.isin(tissues, (CSF, GM, WM))
    blob = tumour_blob(grid, centre, radii, rng, roughness=0.12) & intracranial
    return np.where(_largest_component(blob), 4, 0).astype(np.uint8)


def _convexity_point(angle_deg: float) -> tuple[float, float, float]:
    """Point on the inner skull in the coronal plane y=0, ``angle_deg`` from the vertex towards +x."""
    a = np.deg2rad(angle_deg)
    dx, dz = float(np.sin(a)), float(np.cos(a))
    t = SKULL_IN / np.hypot(dx / HEAD[0], dz / HEAD[2])
    return (dx * t, 0.0, dz * t)


# --------------------------------------------------------------------------- rendering

def render(tissues: np.ndarray, labels: np.ndarray, contrast: str, grid: Grid,
           rng: np.random.Generator, heterogeneity: float = 0.0, noise: float = 0.012,
           stripped: bool = False) -> np.ndarray:
    """Float32 [0, 1] image of a contrast: tissue means, texture, bias field, blur, Rician noise."""
    image = np.asarray(TISSUE_INTENSITY[contrast], dtype=np.float32)[tissues]
    for label, value in TUMOUR_INTENSITY[contrast].items():
        image[labels == label] = value
    head = tissues != BG
    texture = 0.035 * smooth_noise(grid.shape, 0.02, grid.step, rng)
    tumour = 0.0 * texture
    if heterogeneity:
        tumour = heterogeneity * smooth_noise(grid.shape, 0.03, grid.step, rng) * (labels > 0)
    bias = bias_field(grid, rng)
    image = (image + head * texture + tumour) * bias
    image = ndimage.gaussian_filter(image, [0.008 / s for s in grid.step])
    if noise:
        real = image + noise * rng.standard_normal(grid.shape, dtype=np.float32)
        image = np.hypot(real, noise * rng.standard_normal(grid.shape, dtype=np.float32))
    if stripped:
        image = np.where(head, np.maximum(image, 0.01), 0.0)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def bias_field(grid: Grid, rng: np.random.Generator, strength: float = 0.07) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field ``1 ± strength``: a few random low-frequency waves."""
    field = np.zeros(grid.shape, dtype=np.float32)
    for _ in range(3):
        kx, ky, kz = (np.pi * rng.uniform(-0.6, 0.6, size=3)).astype(np.float32)
        field += np.cos(kx * grid.x + ky * grid.y + kz * grid.z + np.float32(rng.uniform(0, 2 * np.pi)))
    return 1.0 + strength * field / 3.0


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *keys]))


def synthetic_brain_slice(kind: str | None = "glioma", view: str | None = None,
                          size: int = SLICE_SIZE, seed: int = 7,
                          contrast: str = "t1ce") -> SyntheticSlice:
    """A synthetic post-contrast T1 slice with a class-typical tumour (``None``/"notumor": none).

    ``view`` defaults to the class's usual plane (:data:`SLICE_VIEWS`).
    """
    cls = kind or config.NO_TUMOUR_CLASS
    if cls not in SLICE_VIEWS:
        raise ValueError(f"unknown class {kind!r}: use one of {sorted(SLICE_VIEWS)}")
    default_view, offset = SLICE_VIEWS[cls]
    grid = plane_grid(size, view or default_view, offset if view in (None, default_view) else 0.0)
    rng = _rng(seed, config.CLASS_NAMES.index(cls))
    tissues = head_tissues(grid, rng)
    labels, heterogeneity = _slice_tumour(cls, grid, tissues, rng)
    image = render(tissues, labels, contrast, grid, rng, heterogeneity=heterogeneity)
    return SyntheticSlice(image=image, labels=labels, mask=np.isin(labels, (1, 4)),
                          intracranial=np.isin(tissues, (CSF, GM, WM)), view=view or default_view)


def _on_plane(grid: Grid, centre: Sequence[float]) -> tuple[float, ...]:
    """``centre`` moved onto a 2D grid's plane (its constant coordinate); unchanged for volumes."""
    out = [float(c) for c in centre]
    if grid.x.ndim == 2:
        for axis, coord in enumerate((grid.x, grid.y, grid.z)):
            if float(coord.min()) == float(coord.max()):
                out[axis] = float(coord.flat[0])
    return tuple(out)


def _slice_tumour(cls: str, grid: Grid, tissues: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """BraTS labels and intensity heterogeneity of the tumour of class ``cls`` on this grid."""
    if cls == "glioma":
        centre = _on_plane(grid, (-0.3, 0.12, 0.15))
        return glioma_labels(grid, tissues, rng, centre, (0.22, 0.24, 0.22)), 0.09
    if cls == "meningioma":
        cx, _, cz = _convexity_point(-55.0)
        centre = _on_plane(grid, (cx * 0.97, 0.0, cz * 0.97))
        return extra_axial_labels(grid, tissues, rng, centre, (0.17, 0.17, 0.15)), 0.02
    if cls == "pituitary":
        sella = float(skull_base(np.float32(0.12)))
        centre = _on_plane(grid, (0.0, 0.12, sella + 0.045))
        return extra_axial_labels(grid, tissues, rng, centre, (0.075, 0.08, 0.065)), 0.02
    return np.zeros(grid.shape, dtype=np.uint8), 0.0


def synthetic_volume(shape: Sequence[int] = VOLUME_SHAPE, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A T1ce head volume (RAS ``(X, Y, Z)``, float32 [0, 1]) with a glioma in the middle slices,
    and its BraTS label map."""
    grid = volume_grid(shape)
    rng = _rng(seed, 10)
    tissues = head_tissues(grid, rng)
    labels = glioma_labels(grid, tissues, rng, (-0.32, 0.12, 0.1), (0.22, 0.24, 0.24))
    return render(tissues, labels, "t1ce", grid, rng, heterogeneity=0.09), labels


def synthetic_brats_case(shape: Sequence[int] = BRATS_SHAPE, seed: int = 7) -> dict[str, np.ndarray]:
    """A skull-stripped four-modality case: ``flair t1 t1ce t2`` (int16, 0 outside the brain) and
    ``seg`` (uint8 BraTS labels 0/1/2/4), canonical RAS ``(X, Y, Z)``."""
    grid = volume_grid(shape)
    rng = _rng(seed, 20)
    tissues = head_tissues(grid, rng, skull=False)
    labels = glioma_labels(grid, tissues, rng, (0.3, 0.1, 0.15), (0.2, 0.22, 0.24))
    case: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        image = render(tissues, labels, modality, grid, rng, heterogeneity=0.06, noise=0.01, stripped=True)
        case[modality] = np.round(image * 1000.0).astype(np.int16)
    case["seg"] = labels
    return case


# --------------------------------------------------------------------------- writers

def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.round(np.clip(image, 0, 1) * 255.0).astype(np.uint8)).save(path, format="PNG")


def _write_mask(path: Path, mask: np.ndarray) -> None:
    _write_png(path, mask.astype(np.float32))


def _uid(seed: int, what: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["core.samples", str(seed), what]))


def _write_dicom(path: Path, image: np.ndarray, seed: int, description: str) -> None:
    """Uncompressed MR DICOM (explicit VR little endian) of ``image`` with fake identifiers."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

    sop = _uid(seed, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    _dicom_identity(ds, seed, sop, description)
    _dicom_pixels(ds, image)
    ds.save_as(path, enforce_file_format=True)


def _dicom_identity(ds, seed: int, sop: str, description: str) -> None:
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.SeriesInstanceUID = _uid(seed, "series")
    ds.FrameOfReferenceUID = _uid(seed, "frame")
    ds.PatientName = "SYNTHETIC^PATIENT"
    ds.PatientID = "SYNTH-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "000000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "SYNTH"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.Modality = "MR"
    ds.Manufacturer = "synthetic phantom (core.data.samples)"
    ds.SeriesDescription = description
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
    ds.MRAcquisitionType = "2D"
    ds.MagneticFieldStrength = 1.5
    ds.BurnedInAnnotation = "NO"


def _dicom_pixels(ds, image: np.ndarray) -> None:
    """Coronal geometry, 12-bit stored values, rescale (slope) and a VOI window covering the range."""
    rows, cols = image.shape
    stored = np.round(np.clip(image, 0, 1) * 4000.0).astype(np.uint16)
    ds.ImageOrientationPatient = [-1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [cols * DICOM_SPACING[1] / 2, 0.0, rows * DICOM_SPACING[0] / 2]
    ds.PixelSpacing = list(DICOM_SPACING)
    ds.SliceThickness = 5.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = DICOM_SLOPE, 0.0, "US"
    ds.WindowCenter, ds.WindowWidth = 500.0, 1000.0
    ds.PixelData = stored.tobytes()


def ras_affine(shape: Sequence[int], zooms: Sequence[float]) -> np.ndarray:
    """Diagonal RAS affine with the given voxel size (mm), centred on the volume."""
    affine = np.diag([*map(float, zooms), 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * z for n, z in zip(shape, zooms)]
    return affine


def _write_nifti(path: Path, array: np.ndarray, zooms: Sequence[float]) -> None:
    import nibabel as nib

    affine = ras_affine(array.shape, zooms)
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


# --------------------------------------------------------------------------- generate

def _entry(name: str, kind: str, description: str, cls: str | None,
           spacing: Sequence[float] | None, mask: str | None) -> dict:
    return {"name": name, "kind": kind, "description": description, "class": cls,
            "spacing_mm": list(spacing) if spacing is not None else None, "mask": mask,
            "synthetic": True}


def _slice_files(out: Path, seed: int) -> list[dict]:
    entries = []
    specs = [
        ("glioma", "synthetic_glioma_axial.png",
         "Synthetic axial T1 post-contrast slice: heterogeneous ring-enhancing glioma with a "
         "necrotic centre in the left hemisphere."),
        ("meningioma", "synthetic_meningioma_coronal.dcm",
         "Synthetic coronal T1 post-contrast DICOM (0.5 mm pixels, fake patient): bright "
         "homogeneous extra-axial meningioma against the skull."),
        ("pituitary", "synthetic_pituitary_sagittal.png",
         "Synthetic sagittal T1 post-contrast slice: small bright pituitary mass in the sella."),
        ("notumor", "synthetic_no_tumour_axial.png",
         "Synthetic axial T1 post-contrast slice without a tumour."),
    ]
    for cls, name, description in specs:
        sample = synthetic_brain_slice(cls, seed=seed)
        mask_name = None
        if name.endswith(".dcm"):
            _write_dicom(out / name, sample.image, seed, "SYNTHETIC T1 post-contrast coronal")
        else:
            _write_png(out / name, sample.image)
        if sample.mask.any():
            mask_name = name.rsplit(".", 1)[0] + "_mask.png"
            _write_mask(out / mask_name, sample.mask)
        spacing = DICOM_SPACING if name.endswith(".dcm") else None
        entries.append(_entry(name, "slice", description, cls, spacing, mask_name))
    return entries


def _volume_file(out: Path, seed: int) -> dict:
    name = "synthetic_volume_axial.nii.gz"
    image, _ = synthetic_volume(VOLUME_SHAPE, seed)
    _write_nifti(out / name, np.round(image * 1000.0).astype(np.int16), VOLUME_ZOOMS)
    description = (f"Synthetic 3D T1 post-contrast NIfTI, {'x'.join(map(str, VOLUME_SHAPE))} voxels of "
                   "1x1x5 mm (RAS): a glioma in the middle axial slices; choose a plane and a slice.")
    return _entry(name, "volume", description, "glioma", VOLUME_ZOOMS[:2], None)


def _brats_files(out: Path, seed: int) -> dict:
    folder = out / "synthetic_brats" / BRATS_CASE
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in synthetic_brats_case(BRATS_SHAPE, seed).items():
        _write_nifti(folder / f"{BRATS_CASE}_{key}.nii.gz", array, (1.0, 1.0, 1.0))
    description = (f"Synthetic skull-stripped BraTS-style case ({'x'.join(map(str, BRATS_SHAPE))}, 1 mm): "
                   "FLAIR, T1, T1ce, T2 and a label map (1 NCR, 2 ED, 4 ET).")
    return _entry(f"synthetic_brats/{BRATS_CASE}", "brats_case", description, "glioma", (1.0, 1.0), None)


def generate(out_dir: Path = config.SAMPLE_DIR, seed: int = 7) -> list[dict]:
    """Write every sample and ``manifest.json`` into ``out_dir``; returns the manifest entries."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = _slice_files(out, seed) + [_volume_file(out, seed), _brats_files(out, seed)]
    manifest = {"generated_by": "python -m core.samples", "seed": int(seed), "files": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m core.samples [--out DIR] [--seed N]``."""
    parser = argparse.ArgumentParser(description="Generate the synthetic demo inputs.")
    parser.add_argument("--out", type=Path, default=config.SAMPLE_DIR, help="output folder")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    entries = generate(args.out, args.seed)
    total = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"wrote {len(entries)} samples to {args.out} ({total / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
