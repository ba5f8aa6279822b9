"""A 3D multi-modal BraTS case: file naming conventions, reading, orientation, label numbering.

Plain library (no Streamlit). Every reader returns a :class:`Case`; bad input raises a
:class:`core.errors.InputError` subclass whose message is meant for the person who uploaded it
(:class:`CaseError` when the files cannot form one case, :class:`CorruptFile`,
:class:`UnsupportedFile`, :class:`EmptyFile`, :class:`ImageTooLarge`).

Conventions callers rely on:

* **Orientation.** Every array is reoriented to canonical RAS+ with
  ``nibabel.as_closest_canonical``: index ``(x, y, z)`` runs towards patient Right, Anterior,
  Superior; ``Case.affine`` is the canonical affine (voxel index -> world mm) and
  ``Case.spacing_mm`` the voxel size along x, y, z (mm).
* **Labels** use the BraTS 2020/2021 numbering whatever the source: 0 background, 1 NCR
  (necrotic / non-enhancing core), 2 ED (oedema), 4 ET (enhancing tumour); uint8.
  BraTS 2023 files (ET = 3) and Medical Segmentation Decathlon files (1 oedema,
  2 non-enhancing, 3 enhancing) are relabelled on reading (:data:`LABEL_MAPS`).
  Regions: WT = {1, 2, 4}, TC = {1, 4}, ET = {4} (:data:`core.config.BRATS_REGIONS`).
* **Images** keep a small on-disk dtype (uint8, int8, uint16, int16, float32); anything else
  (float64, scaled integers, int32...) becomes float32, one modality at a time, so a case never
  holds float64 copies of its modalities.

Views for display are in :mod:`core.volumes.views`, tumour regions and the comparison with the
ground truth in :mod:`core.volumes.regions`, label maps written back as NIfTI in
:mod:`core.volumes.nifti_export`.

Accepted file layouts (``.nii`` or ``.nii.gz``; directories in names are allowed):

* BraTS 2020/2021: ``<case>_flair``, ``_t1``, ``_t1ce``, ``_t2``, ``_seg``.
* BraTS 2023/2024: ``<case>-t2f`` (FLAIR), ``-t1n`` (T1), ``-t1c`` (T1ce), ``-t2w`` (T2), ``-seg``.
* Medical Segmentation Decathlon Task01: one 4D image (FLAIR, T1w, T1gd, T2w in the last axis)
  in ``imagesTr/`` (or ``imagesTs/``) and a 3D label map of the same name in ``labelsTr/``; a bare
  ``BRATS_<n>`` name is an image when 4D and a label map when 3D. nnU-Net channel files
  ``<case>_0000`` ... ``_0003`` (same channel order) are read as the Decathlon convention too.
"""
from __future__ import annotations

import io
import lzma
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from core import config
from core.errors import CaseError, CorruptFile, EmptyFile, EmptyImage, ImageTooLarge, UnsupportedFile
from core.readers.budgets import plausible_spacing
from core.readers.nifti import (
    affine_orientation,
    check_decompressed_size,
    check_voxel_type,
    read_header,
    stored_bytes,
)

__all__ = [
    "MODALITIES",
    "MODALITY_NAMES",
    "CONVENTIONS",
    "LABEL_MAPS",
    "MAX_CASE_BYTES",
    "MAX_VOLUME_VOXELS",
    "MAX_ZIP_MEMBERS",
    "GRID_TOLERANCE_MM",
    "Case",
    "identify_file",
    "read_case",
    "read_case_zip",
    "read_case_folder",
]

#: Modality keys of :attr:`Case.images`, in the channel order of the segmentation models.
MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
#: Display names of the modalities.
MODALITY_NAMES: dict[str, str] = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}
#: Source conventions recognised by :func:`identify_file`.
CONVENTIONS: tuple[str, ...] = ("brats2021", "brats2023", "decathlon")
#: Label value in the file -> project label (0 bg, 1 NCR, 2 ED, 4 ET), per source convention.
LABEL_MAPS: dict[str, dict[int, int]] = {
    "brats2021": {0: 0, 1: 1, 2: 2, 4: 4},
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 4},
    "decathlon": {0: 0, 1: 2, 2: 1, 3: 4},
}

#: Largest total input (all files, compressed as uploaded; also the zip's unpacked members).
#: A real case is 30-150 MB even uncompressed (four int16 240x240x155 volumes + labels); the
#: largest legitimate input (four uncompressed float32 256³ volumes + labels) is about 290 MB.
MAX_CASE_BYTES = 500 * 2**20
#: Largest number of voxels in one 3D volume (256³; a full BraTS volume has 240·240·155 ≈ 8.9 M).
MAX_VOLUME_VOXELS = 256**3
#: Largest number of entries in a zip archive.
MAX_ZIP_MEMBERS = 2000
#: Largest distance (mm) between the corner voxels of two modalities' grids that still counts
#: as "the same grid" (after canonical reorientation).
GRID_TOLERANCE_MM = 0.1

_NII = r"\.nii(?:\.gz)?"
_BRATS2021_RE = re.compile(rf"^(?P<case>.+?)_(?P<key>flair|t1ce|t1|t2|seg){_NII}$", re.IGNORECASE)
_BRATS2023_RE = re.compile(rf"^(?P<case>.+?)-(?P<key>t2f|t1n|t1c|t2w|seg){_NII}$", re.IGNORECASE)
_NNUNET_RE = re.compile(rf"^(?P<case>.+)_(?P<key>000[0-3]){_NII}$", re.IGNORECASE)
_DECATHLON_RE = re.compile(rf"^(?P<case>brats_\d+){_NII}$", re.IGNORECASE)
_ANY_NII_RE = re.compile(rf"^(?P<case>.+?){_NII}$", re.IGNORECASE)
_KEYS_2023 = {"t2f": "flair", "t1n": "t1", "t1c": "t1ce", "t2w": "t2", "seg": "seg"}
_KEYS_NNUNET = {"0000": "flair", "0001": "t1", "0002": "t1ce", "0003": "t2"}
_DECATHLON_IMAGE_DIRS = {"imagestr", "imagests"}
_DECATHLON_LABEL_DIRS = {"labelstr", "labelsts"}
#: Key of a Decathlon file whose role (4D image or 3D label map) comes from its dimensions.
_DECATHLON_EITHER = "decathlon"
_SUFFIXES = {
    "brats2021": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
    "decathlon": {"flair": "_0000", "t1": "_0001", "t1ce": "_0002", "t2": "_0003", "seg": ""},
}
_NAMING_HELP = (
    "Name the files like BraTS 2021 (<case>_flair, _t1, _t1ce, _t2, _seg), BraTS 2023 "
    "(<case>-t2f, -t1n, -t1c, -t2w, -seg) or the Decathlon (imagesTr/<case> 4D image + "
    "labelsTr/<case>), each .nii or .nii.gz."
)


# --------------------------------------------------------------------------- the case


@dataclass
class Case:
    """One BraTS case on a canonical RAS grid.

    ``images`` maps ``"flair" "t1" "t1ce" "t2"`` to ``(X, Y, Z)`` arrays (small on-disk dtype
    or float32); ``labels`` is ``(X, Y, Z)`` uint8 in {0, 1, 2, 4} or ``None``; ``affine`` (4, 4)
    maps voxel indices to world mm; ``spacing_mm`` is the voxel size along x, y, z.
    ``files`` maps each key (modalities, ``"seg"``, or ``"image4d"``) to the file it came
    from, and ``original_axcodes`` names the orientation the files were stored in (e.g. "LPS");
    ``original_affine`` is the input files' own affine (for writing results back in their grid,
    see :func:`core.volumes.nifti_export.labels_in_input_orientation`).
    """

    images: dict[str, np.ndarray]
    labels: np.ndarray | None
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    case_id: str
    source_convention: str
    files: dict[str, str] = field(default_factory=dict)
    original_axcodes: str = "RAS"
    original_affine: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` voxels."""
        first = next(iter(self.images.values()))
        return (int(first.shape[0]), int(first.shape[1]), int(first.shape[2]))

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))


@dataclass(frozen=True)
class _Entry:
    name: str
    case_id: str
    key: str
    convention: str


# --------------------------------------------------------------------------- file names


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).parts


def _ignored(name: str) -> bool:
    """macOS resource forks and hidden files (any path component starting with '.')."""
    return any(p == "__MACOSX" or (p.startswith(".") and p not in (".", "..")) for p in _parts(name))


def _is_nifti_name(name: str) -> bool:
    return bool(re.search(rf"{_NII}$", name, re.IGNORECASE))


def _identify(name: str) -> _Entry | None:
    parts = _parts(name)
    if not parts or _ignored(name):
        return None
    base = parts[-1]
    parent = parts[-2].lower() if len(parts) > 1 else ""
    if parent not in _DECATHLON_IMAGE_DIRS | _DECATHLON_LABEL_DIRS:
        m = _BRATS2023_RE.match(base)
        if m:
            return _Entry(name, m["case"], _KEYS_2023[m["key"].lower()], "brats2023")
        m = _BRATS2021_RE.match(base)
        if m:
            return _Entry(name, m["case"], m["key"].lower(), "brats2021")
    m = _NNUNET_RE.match(base)
    if m:
        return _Entry(name, m["case"], _KEYS_NNUNET[m["key"]], "decathlon")
    if parent in _DECATHLON_IMAGE_DIRS or parent in _DECATHLON_LABEL_DIRS:
        m = _ANY_NII_RE.match(base)
        if m:
            key = "image4d" if parent in _DECATHLON_IMAGE_DIRS else "seg"
            return _Entry(name, m["case"], key, "decathlon")
    m = _DECATHLON_RE.match(base)
    if m:
        return _Entry(name, m["case"], _DECATHLON_EITHER, "decathlon")
    return None


def identify_file(name: str) -> tuple[str, str] | None:
    """``(case_id, key)`` of a case file from its name (a path is allowed), or ``None``.

    ``key`` is a modality (``"flair" "t1" "t1ce" "t2"``), ``"seg"`` (label map),
    ``"image4d"`` (a Decathlon 4D image, from an ``imagesTr/`` folder) or ``"decathlon"``
    (a bare ``BRATS_<n>`` name: a 4D image or a label map, decided from its dimensions on
    reading). BraTS 2023 names map to the same keys (``-t2f`` -> ``"flair"``, ``-t1n`` ->
    ``"t1"``, ``-t1c`` -> ``"t1ce"``, ``-t2w`` -> ``"t2"``). Hidden files and ``__MACOSX``
    entries give ``None``.
    """
    entry = _identify(name)
    return None if entry is None else (entry.case_id, entry.key)


def _names(keys: Iterable[str]) -> str:
    return ", ".join(MODALITY_NAMES.get(k, k) for k in keys)


def _plan(names: Iterable[str]) -> tuple[str, str, list[_Entry]]:
    """Check a case's file names (no bytes read): one case, one convention, nothing missing."""
    entries: list[_Entry] = []
    unknown: list[str] = []
    for name in names:
        if _ignored(name):
            continue
        entry = _identify(name)
        if entry is None:
            unknown.append(name)
        else:
            entries.append(entry)
    if unknown:
        shown = ", ".join(f"'{n}'" for n in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise CaseError(f"These files are not recognised as part of a BraTS case: {shown}. {_NAMING_HELP}")
    if not entries:
        raise CaseError(f"No BraTS case files were found. {_NAMING_HELP}")
    case_ids = sorted({e.case_id for e in entries})
    if len(case_ids) > 1:
        shown = ", ".join(case_ids[:5]) + (" ..." if len(case_ids) > 5 else "")
        raise CaseError(f"The files belong to {len(case_ids)} different cases ({shown}); give one case at a time.")
    conventions = sorted({e.convention for e in entries})
    if len(conventions) > 1:
        raise CaseError(
            f"The files mix naming conventions ({', '.join(conventions)}); all files of a case must "
            "follow one (their label numbering differs)."
        )
    convention = conventions[0]
    seen: dict[str, str] = {}
    for e in entries:
        if e.key != _DECATHLON_EITHER and e.key in seen:
            raise CaseError(f"Two files give the same {MODALITY_NAMES.get(e.key, e.key)}: '{seen[e.key]}' and '{e.name}'.")
        seen[e.key] = e.name
    if not any(k in seen for k in ("image4d", _DECATHLON_EITHER)):
        _check_modalities(set(seen), convention)
    return case_ids[0], convention, entries


def _check_modalities(keys: set[str], convention: str) -> None:
    present = [m for m in MODALITIES if m in keys]
    missing = [m for m in MODALITIES if m not in keys]
    if not missing:
        return
    suffixes = _SUFFIXES[convention]
    hint = "Expected files: " + ", ".join(f"<case>{suffixes[m]}.nii.gz" for m in MODALITIES) + "."
    if not present:
        raise CaseError(
            f"Only a label map was given: a BraTS case needs the four MRI modalities "
            f"({_names(MODALITIES)}). {hint}"
        )
    if len(present) == 1:
        raise CaseError(
            f"Only one modality ({_names(present)}) was given: a BraTS case needs all four "
            f"({_names(MODALITIES)}). Missing: {_names(missing)}. {hint}"
        )
    noun = "modality" if len(missing) == 1 else "modalities"
    raise CaseError(f"Missing {noun}: {_names(missing)} (found {_names(present)}). {hint}")


# --------------------------------------------------------------------------- one NIfTI volume


def _spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape without trailing singleton dimensions beyond the third."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _shape_text(shape: Iterable[int]) -> str:
    """``(240, 240, 155)`` -> ``"240x240x155"``."""
    return "x".join(str(int(s)) for s in shape)


def _load(data: bytes, name: str, want: str) -> tuple[Any, tuple[int, ...]]:
    """Decode one NIfTI file into an in-memory image after checking its header.

    ``want`` is ``"3d"`` (a modality or a label map), ``"4d"`` (Decathlon image) or ``"any"``.
    The header is read first by :mod:`core.readers.nifti` (only its bytes are decompressed): the
    dimensions and the voxel count are checked here, the voxel type and the decompressed size
    there, before the data are decompressed; decompression stops at the size the header announces.
    """
    import nibabel as nib

    h = read_header(data, name)
    shape = _spatial_shape(h.shape)
    spatial = shape[:3]
    if min(shape) <= 0:
        raise EmptyImage(
            f"'{name}' declares a volume of {_shape_text(shape)} voxels: a dimension of size {min(shape)} "
            "means it holds no image. The file is damaged or was not exported correctly."
        )
    if len(shape) < 3 or min(spatial) == 1:
        flat = tuple(s for s in spatial if s != 1)
        raise CaseError(
            f"'{name}' is a {max(len(flat), 1)}D image ({_shape_text(shape)}); every file of a BraTS case must "
            "be a 3D volume."
        )
    if len(shape) > 4:
        raise CaseError(f"'{name}' is a {len(shape)}D image ({_shape_text(shape)}); a 3D volume is expected.")
    if len(shape) == 4 and want == "3d":
        raise CaseError(
            f"'{name}' is a 4D image ({_shape_text(shape)}) where one 3D modality or label map is expected."
        )
    if len(shape) == 3 and want == "4d":
        raise CaseError(
            f"'{name}' holds a single 3D volume ({_shape_text(shape)}): only one modality. The Decathlon "
            "format stores the four modalities (FLAIR, T1w, T1gd, T2w) in one 4D image."
        )
    n_voxels = int(np.prod(spatial, dtype=np.int64))
    if n_voxels > MAX_VOLUME_VOXELS:
        raise ImageTooLarge(
            f"'{name}' has {n_voxels / 1e6:.1f} M voxels per volume ({_shape_text(shape)}); the limit is "
            f"{MAX_VOLUME_VOXELS / 1e6:.1f} M (e.g. 256x256x256)."
        )
    if len(shape) == 4 and shape[3] > 8:
        raise CaseError(f"'{name}' has {shape[3]} volumes in its 4th dimension; a BraTS case has 4 modalities.")
    check_voxel_type(h, name)
    check_decompressed_size(h, name)
    raw = stored_bytes(data, h, name)
    klass = nib.Nifti2Image if h.header.sizeof_hdr == 540 else nib.Nifti1Image
    try:
        img = klass.from_bytes(raw)
    except Exception as exc:
        raise CorruptFile(f"'{name}' has a damaged NIfTI header or data ({type(exc).__name__}: {exc}).") from exc
    return img, shape


def _compact(arr: np.ndarray, slope: float | None, inter: float | None) -> np.ndarray:
    """Keep small dtypes; anything else (and scaled data) becomes float32."""
    scaled = slope is not None and (slope != 1.0 or (inter or 0.0) != 0.0)
    if scaled:
        out = arr.astype(np.float32)
        out *= np.float32(slope)
        out += np.float32(inter or 0.0)
        return out
    if arr.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.float32):
        return arr
    if arr.dtype.kind in "ui" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if -32768 <= lo and hi <= 32767:
            return arr.astype(np.int16)
    return arr.astype(np.float32)


def _unscaled(proxy: Any) -> np.ndarray:
    """Stored (unscaled) voxels of an image; a zero-copy view when it lives in a memory buffer.

    ``nibabel``'s ``get_unscaled`` copies the whole array on every call, so reading the four
    channels of a 4D Decathlon image would copy all four volumes four times.
    """
    fh = getattr(proxy, "file_like", None)
    if isinstance(fh, io.BytesIO) and getattr(proxy, "order", None) in ("F", "C"):
        try:
            return np.ndarray(proxy.shape, dtype=proxy.dtype, buffer=fh.getbuffer(),
                              offset=int(proxy.offset), order=proxy.order)
        except (TypeError, ValueError):
            pass  # buffer too short or odd layout: nibabel reads it (and reports the problem)
    return np.asanyarray(proxy.get_unscaled()) if hasattr(proxy, "get_unscaled") else np.asanyarray(proxy)


def _data(img: Any, channel: int | None = None) -> np.ndarray:
    """Voxels of an in-memory image (one channel of a 4D one), compacted; no float64 copy."""
    proxy = img.dataobj
    raw = _unscaled(proxy)
    raw = raw.reshape(_spatial_shape(raw.shape))
    if channel is not None:
        raw = raw[..., channel]
    slope = getattr(proxy, "slope", None)
    inter = getattr(proxy, "inter", None)
    if slope is None or not math.isfinite(float(slope)) or float(slope) == 0.0:
        slope, inter = None, None
    return _compact(raw, None if slope is None else float(slope), None if inter is None else float(inter))


def _canonical(arr: np.ndarray, affine: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Reorient a 3D array to RAS+ as ``nibabel.as_closest_canonical`` does; (array, affine).

    Works on the array itself (any dtype, int64 included). A non-finite or singular affine, or
    one whose voxel size is outside :data:`core.config.SPACING_RANGE_MM`, is refused.
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    ornt = affine_orientation(affine)
    if ornt is None:
        raise CaseError(f"'{name}' has a degenerate affine (no usable orientation); the volume cannot be placed in space.")
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    if plausible_spacing(spacing) is None:
        lo, hi = config.SPACING_RANGE_MM
        raise CaseError(
            f"'{name}' states a voxel size of {' x '.join(f'{s:g}' for s in spacing)} mm, outside "
            f"{lo:g}-{hi:g} mm: its affine is damaged, so volumes and distances cannot be measured."
        )
    canon = nib.orientations.apply_orientation(arr, ornt)
    canon_affine = affine @ nib.orientations.inv_ornt_aff(ornt, arr.shape)
    # an owned C-ordered copy: never a view that would keep the decoded file buffer alive
    return np.array(canon, order="C", copy=True), np.asarray(canon_affine, dtype=np.float64)


def _finite(arr: np.ndarray) -> np.ndarray:
    """``arr`` (an owned array) with NaN and infinite voxels set to 0, in place."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        np.nan_to_num(arr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return arr


def _corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    idx = np.array(np.meshgrid(*[[0, max(int(s) - 1, 0)] for s in shape[:3]], indexing="ij")).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).T


def _check_grid(ref: tuple[str, np.ndarray, np.ndarray], other: tuple[str, np.ndarray, np.ndarray]) -> None:
    (ref_name, ref_arr, ref_aff), (name, arr, aff) = ref, other
    if ref_arr.shape != arr.shape:
        raise CaseError(
            f"'{name}' has a different grid from '{ref_name}': {_shape_text(arr.shape)} voxels vs "
            f"{_shape_text(ref_arr.shape)} (after reorientation to RAS). All modalities and the label map "
            "must be co-registered on one grid."
        )
    shift = float(np.max(np.linalg.norm(_corners(arr.shape, aff) - _corners(ref_arr.shape, ref_aff), axis=1)))
    if not shift <= GRID_TOLERANCE_MM:
        raise CaseError(
            f"'{name}' is not on the same grid as '{ref_name}': their voxel positions differ by up to "
            f"{shift:.2f} mm (tolerance {GRID_TOLERANCE_MM} mm). All modalities and the label map must "
            "be co-registered with the same affine."
        )


def _label_values(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "ui" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi < 65536:
            return np.flatnonzero(np.bincount(arr.ravel(), minlength=1))
    return np.unique(arr)


def _map_labels(arr: np.ndarray, convention: str, name: str) -> np.ndarray:
    """File labels -> project labels (uint8 0/1/2/4); refuses values the convention lacks."""
    mapping = LABEL_MAPS[convention]
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise CaseError(f"Label map '{name}' contains NaN or infinite values.")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise CaseError(f"Label map '{name}' holds non-integer values; it looks like an image, not a segmentation.")
        arr = rounded
    values = _label_values(arr)
    unknown = [v for v in values.tolist() if int(v) not in mapping or v != int(v)]
    if unknown:
        shown = ", ".join(str(int(v)) if float(v).is_integer() else str(v) for v in unknown[:10])
        expected = ", ".join(str(k) for k in sorted(mapping))
        extra = ""
        if convention == "brats2021" and 3 in unknown and 4 not in values:
            extra = " Label 3 is enhancing tumour in BraTS 2023 files: name them -t2f/-t1n/-t1c/-t2w/-seg."
        raise CaseError(
            f"Label map '{name}' contains unknown label value{'s' if len(unknown) > 1 else ''} {shown}; the "
            f"{convention} convention uses {expected}.{extra}"
        )
    lut = np.zeros(256, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return np.take(lut, arr.astype(np.uint8, copy=False))


# --------------------------------------------------------------------------- readers


def _check_total(sizes: Iterable[int]) -> None:
    total = int(sum(sizes))
    if total > MAX_CASE_BYTES:
        raise ImageTooLarge(
            f"The case is {total / 2**20:.0f} MB; the limit is {MAX_CASE_BYTES / 2**20:.0f} MB. "
            "Upload one case (.nii.gz files) at a time."
        )


def read_case(files: Mapping[str, bytes]) -> Case:
    """Assemble a :class:`Case` from ``{file name: bytes}`` (e.g. uploads; names may hold folders).

    A single ``.zip`` is passed to :func:`read_case_zip`. Hidden files and ``__MACOSX`` entries
    are ignored. Refuses (typed :class:`InputError`): no files or an empty file, more than
    :data:`MAX_CASE_BYTES` in total (before anything is decompressed), names that are not
    case files, several cases, missing modalities, a 2D or 4D image where a 3D volume is
    expected, a volume over :data:`MAX_VOLUME_VOXELS` or a file that decompresses to more than
    :data:`core.config.MAX_NIFTI_BYTES`, a dimension of size 0, corrupt gzip or NIfTI data, an
    affine that is not finite or not invertible or whose voxel size is outside
    :data:`core.config.SPACING_RANGE_MM`, grids (shape or affine, after RAS reorientation) that
    differ, unknown label values. Label maps of any integer dtype (int64 included) are read;
    NaN or infinite voxels in a modality are set to 0 (background).
    """
    if not files:
        raise EmptyFile("No files were given.")
    names = [n for n in files if not _ignored(n)]
    if len(names) == 1 and names[0].lower().endswith(".zip"):
        return read_case_zip(files[names[0]])
    _check_total(len(files[n]) for n in names)
    for n in names:
        if not files[n]:
            raise EmptyFile(f"'{n}' is empty (0 bytes).")
    not_nifti = [n for n in names if not _is_nifti_name(n)]
    if not_nifti:
        raise UnsupportedFile(
            f"'{not_nifti[0]}' is not a NIfTI file: a BraTS case is read from .nii or .nii.gz files (or one .zip)."
        )
    case_id, convention, entries = _plan(names)

    # Decathlon files with a bare name: the 4D one is the image, a 3D one the label map.
    resolved: list[_Entry] = []
    for e in entries:
        if e.key == _DECATHLON_EITHER:
            shape = _declared_shape(files[e.name], e.name)
            e = _Entry(e.name, e.case_id, "image4d" if len(shape) == 4 else "seg", e.convention)
        resolved.append(e)
    by_key: dict[str, str] = {}
    for e in resolved:
        if e.key in by_key:
            what = MODALITY_NAMES.get(e.key, e.key)
            raise CaseError(f"Two files give the same {what}: '{by_key[e.key]}' and '{e.name}'.")
        by_key[e.key] = e.name
    if "image4d" not in by_key:
        _check_modalities(set(by_key), convention)
    elif any(k in by_key for k in MODALITIES):
        extra = next(by_key[k] for k in MODALITIES if k in by_key)
        raise CaseError(f"Give either the 4D Decathlon image or separate modality files, not both ('{extra}').")

    images: dict[str, np.ndarray] = {}
    grid: tuple[str, np.ndarray, np.ndarray] | None = None
    original_axcodes = "RAS"
    original_affine: np.ndarray | None = None
    if "image4d" in by_key:
        name = by_key["image4d"]
        img, shape = _load(files[name], name, "4d")
        if shape[3] != len(MODALITIES):
            raise CaseError(
                f"'{name}' has {shape[3]} volumes in its 4th dimension; the Decathlon image holds 4 "
                "(FLAIR, T1w, T1gd, T2w)."
            )
        original_axcodes = _axcodes(img.affine)
        original_affine = np.asarray(img.affine, dtype=np.float64)
        for channel, key in enumerate(MODALITIES):
            arr, aff = _canonical(_data(img, channel), img.affine, name)
            images[key] = _finite(arr)
            grid = grid or (name, arr, aff)
        del img
    else:
        for key in MODALITIES:
            name = by_key[key]
            img, _ = _load(files[name], name, "3d")
            if grid is None:
                original_axcodes = _axcodes(img.affine)
                original_affine = np.asarray(img.affine, dtype=np.float64)
            arr, aff = _canonical(_data(img), img.affine, name)
            del img
            if grid is None:
                grid = (name, arr, aff)
            else:
                _check_grid(grid, (name, arr, aff))
            images[key] = _finite(arr)
    assert grid is not None

    labels = None
    if "seg" in by_key:
        name = by_key["seg"]
        img, _ = _load(files[name], name, "3d")
        raw = np.asanyarray(img.dataobj)  # applies any scaling; label maps are small integers
        arr, aff = _canonical(raw.reshape(raw.shape[:3]), img.affine, name)
        del img, raw
        _check_grid(grid, (name, arr, aff))
        labels = _map_labels(arr, convention, name)

    affine = grid[2]
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return Case(
        images=images,
        labels=labels,
        affine=affine,
        spacing_mm=spacing,  # type: ignore[arg-type]
        case_id=case_id,
        source_convention=convention,
        files=dict(by_key),
        original_axcodes=original_axcodes,
        original_affine=original_affine,
    )


def _declared_shape(data: bytes, name: str) -> tuple[int, ...]:
    """The shape a file's header declares (only the header is decompressed)."""
    return _spatial_shape(read_header(data, name).shape)


def _axcodes(affine: np.ndarray) -> str:
    import nibabel as nib

    try:
        return "".join(str(c) for c in nib.aff2axcodes(affine))
    except Exception:  # degenerate affine: reported by _canonical
        return "unknown"


#: Zip compression methods Python's zipfile can extract: stored, deflate, bzip2, LZMA.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _unsafe_member(name: str) -> bool:
    posix = name.replace("\\", "/")
    return posix.startswith("/") or bool(re.match(r"^[A-Za-z]:", posix)) or ".." in PurePosixPath(posix).parts


def read_case_zip(data: bytes) -> Case:
    """A :class:`Case` from a zip archive holding one case (folders inside are fine).

    Only ``.nii`` / ``.nii.gz`` members are read; ``__MACOSX``, hidden files and anything else
    are ignored. Guards: archive size and the sum of the members read are both bounded by
    :data:`MAX_CASE_BYTES` (declared sizes are checked first, and reading stops at the limit
    whatever the headers claim), at most :data:`MAX_ZIP_MEMBERS` entries, absolute or ``..``
    paths and encrypted members are refused. Nothing is written to disk.
    """
    if not data:
        raise EmptyFile("The zip file is empty (0 bytes).")
    _check_total([len(data)])
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, struct.error, OverflowError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"The zip file is damaged or not a zip archive ({exc}).") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ImageTooLarge(f"The zip holds {len(infos)} entries; a case needs a handful (limit {MAX_ZIP_MEMBERS}).")
    selected: list[zipfile.ZipInfo] = []
    for info in infos:
        if _unsafe_member(info.filename):
            raise UnsupportedFile(
                f"The zip contains an unsafe path '{info.filename}' (absolute or with '..'); it is refused."
            )
        if info.is_dir() or _ignored(info.filename) or not _is_nifti_name(info.filename):
            continue
        if info.flag_bits & 0x1:
            raise UnsupportedFile(f"'{info.filename}' in the zip is encrypted; upload an unencrypted archive.")
        if info.compress_type not in _ZIP_METHODS:
            raise UnsupportedFile(
                f"'{info.filename}' in the zip uses compression method {info.compress_type}"
                f"{' (AES encryption)' if info.compress_type == 99 else ''}, which cannot be read; "
                "re-create the archive with standard (deflate) compression."
            )
        selected.append(info)
    if not selected:
        raise CaseError(f"The zip holds no NIfTI files (.nii / .nii.gz). {_NAMING_HELP}")
    _plan([i.filename for i in selected])  # one case, nothing missing: before any decompression
    _check_total(i.file_size for i in selected)
    files: dict[str, bytes] = {}
    budget = MAX_CASE_BYTES
    for info in selected:
        try:
            with archive.open(info) as fh:
                member = fh.read(budget + 1)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError,
                lzma.LZMAError, struct.error, OverflowError) as exc:
            raise CorruptFile(f"'{info.filename}' in the zip cannot be extracted ({exc}).") from exc
        budget -= len(member)
        if budget < 0:
            raise ImageTooLarge(f"The zip unpacks to more than {MAX_CASE_BYTES / 2**20:.0f} MB; the limit for one case.")
        files[info.filename] = member
    return read_case(files)


def read_case_folder(path: str | Path) -> Case:
    """A :class:`Case` from a folder (searched recursively; hidden files ignored) or a ``.zip``.

    File names are checked (one case, all modalities) before any file is read.
    """
    root = Path(path)
    if root.is_file() and root.suffix.lower() == ".zip":
        return read_case_zip(root.read_bytes())
    if not root.is_dir():
        raise CaseError(f"'{root}' is not a folder holding a BraTS case.")
    found = sorted(
        p for p in root.rglob("*")
        if p.is_file() and _is_nifti_name(p.name) and not _ignored(p.relative_to(root).as_posix())
    )
    if not found:
        raise CaseError(f"'{root}' holds no NIfTI files (.nii / .nii.gz). {_NAMING_HELP}")
    names = {p.relative_to(root).as_posix(): p for p in found}
    _plan(names)
    _check_total(p.stat().st_size for p in found)
    return read_case({name: p.read_bytes() for name, p in names.items()})
