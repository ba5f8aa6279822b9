"""Slices from several public sources, labelled by class, sequence, plane, patient and split.

The classifier, the sequence/plane model and the external benchmark all draw on the same
catalogue, so every one of them agrees on which patients are trained on, validated on and
held out:

* ``fourclass`` — ``brain_mri_4class/Training`` (4 classes; sequence and plane unknown). A
  stratified 85/15 train/val split (seed 42, as the original members). Images that copy a
  held-out figshare slice (the figshare dataset is one of its parts) are left out of multi-source
  training. The members' 4-class initialisation did see them, so the figshare test split below
  leaves out every held-out slice with a copy in Training.
* ``tcga_lgg`` — axial pre-contrast T1, FLAIR and post-contrast T1 of lower-grade gliomas
  (another scanner population). Folds 1-2 train, fold 3 validation, fold 4 held out.
  A slice is ``glioma`` when its mask has at least :data:`MIN_TUMOUR_PX` pixels, ``notumor``
  when it has none; glancing edges in between are left out. Where the dataset filled a volume's
  missing sequence with a copy of its FLAIR, that copy is left out (:func:`tcga_substitutes`).
* ``brats`` — BraTS 2021 cases, all four sequences, re-sliced axially, coronally and
  sagittally. The case split is the shipped BraTS model's (``split_cases`` in its card). A slice
  is ``glioma`` when its whole-tumour area is at least :data:`MIN_TUMOUR_MM2`, ``notumor`` when
  it holds no label voxel and enough brain (:data:`MIN_BRAIN_FRACTION` of the case's largest
  slice in that plane); everything in between is left out.
* ``figshare`` — T1-CE slices in three planes with expert masks (3 tumour classes) and planes
  labelled by eye per series (:data:`FIGSHARE_PLANES_FILE`): folds 1-2 train and fold 3
  validation (for the sequence/plane model and the lesion detector: the 4-class set already holds
  these slices for the classifier); the fold the shipped segmenter held out is the test split,
  minus the slices any 4-class Training image copies (found with :func:`fourclass_hash_index`).

Arrays are the classifier's brain-cropped, square-padded inputs stored as uint8 and the tumour
masks cropped alike (bit-packed), cached under :data:`core.config.CACHE_DIR`.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from core import config
from core.data.datasets import DatasetError, list_classification, list_segmentation, read_grey, stratified_split
from core.data.slice_refs import SliceRef, SliceSet  # noqa: F401 (the catalogue's types, used from here too)

#: Sources in the catalogue, in display order.
SOURCES: tuple[str, ...] = ("fourclass", "tcga_lgg", "brats", "figshare")
SOURCE_LABELS: dict[str, str] = {"fourclass": "4-class (Kaggle merge)", "tcga_lgg": "TCGA-LGG",
                                 "brats": "BraTS 2021", "figshare": "figshare (held-out fold)"}
#: Sequences as the project names them (BraTS keys), with display labels.
SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
SEQUENCE_LABELS: dict[str, str] = {"t1": "T1", "t1ce": "T1-CE", "t2": "T2", "flair": "FLAIR", "unknown": "unknown"}
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
UNKNOWN = "unknown"
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: tcga_lgg file columns -> project sequence names.
TCGA_SEQUENCES: dict[str, str] = {"pre": "t1", "flair": "flair", "post": "t1ce"}
TCGA_FOLDS: dict[str, tuple[int, ...]] = {"train": (1, 2), "val": (3,), "test": (4,)}
#: Smallest mask (pixels of the 256 px slice) for a tcga_lgg slice to count as a tumour slice.
MIN_TUMOUR_PX = 300
#: Largest mean absolute grey-level difference from the FLAIR for a tcga_lgg sequence to be a copy of it.
TCGA_COPY_MAX_DIFF = 0.5
#: Smallest whole-tumour area (mm², 1 mm voxels) for a BraTS slice to count as a tumour slice.
MIN_TUMOUR_MM2 = 100.0
#: A BraTS slice without tumour needs this fraction of the case's largest brain area in that plane.
MIN_BRAIN_FRACTION = 0.25
FIGSHARE_FOLDS: dict[str, tuple[int, ...]] = {"train": (1, 2), "val": (3,)}
#: Mask markers: a BraTS label map (whole tumour), a slice known to hold no tumour.
BRATS_MASK = "brats:wt"
EMPTY_MASK = "empty"
FOURCLASS_VAL_FRACTION = 0.15
FOURCLASS_SEED = 42


def require_data_dir(data_dir: Path | None = None) -> Path:
    root = data_dir or config.data_dir()
    if root is None:
        raise DatasetError("no public data folder: set BTD_DATA_DIR to the folder holding brain_mri_4class/, "
                           "tcga_lgg/, brats/ and figshare_3064/")
    return Path(root)


# --------------------------------------------------------------------------- 4-class


def fourclass_hash_index(root: Path):
    """Perceptual hashes of every 4-class Training image (:class:`core.trust.hash_index.HashIndex`), built from
    the data folder itself (cached), not from the shipped index, which leaves these copies out."""
    from core.data.datasets import cached_arrays
    from core.data.dedup_split import build_hash_index
    from core.trust.hash_index import HashIndex

    folder = root / "brain_mri_4class" / "Training"
    paths = list_classification(folder).paths

    def build() -> dict[str, np.ndarray]:
        index = build_hash_index(folder)
        return {"phash": index.phash, "dhash": index.dhash, "names": np.array(index.names), "labels": np.array(index.labels)}

    data = cached_arrays("fourclass-hashes", paths, "v1", build)
    return HashIndex(data["phash"].astype(np.uint64), data["dhash"].astype(np.uint64),
                     [str(v) for v in data["labels"]], [str(v) for v in data["names"]])


def figshare_copies_in_fourclass(root: Path, test_fold: int) -> set[str]:
    """Names (relative to ``Training``) of the 4-class Training images that copy a held-out figshare
    slice (for each such slice, its nearest copy under :class:`core.trust.fingerprints.DuplicateRule`)."""
    from core.data.heldout import held_out_images

    if not (root / "figshare_3064").is_dir():
        return set()
    index = fourclass_hash_index(root)
    names = set()
    for image in held_out_images("figshare", root, test_fold):
        hit = index.query(read_grey(image.path))
        if hit is not None:
            names.add(hit["name"])
    return names


def fourclass_refs(root: Path, exclude: set[str]) -> list[SliceRef]:
    folder = root / "brain_mri_4class" / "Training"
    listing = list_classification(folder)
    rel = [p.relative_to(folder).as_posix() for p in listing.paths]
    train_idx, val_idx = stratified_split(listing.labels, FOURCLASS_VAL_FRACTION, FOURCLASS_SEED)
    split = np.empty(len(rel), dtype=object)
    split[train_idx], split[val_idx] = "train", "val"
    names = [config.CLASS_NAMES[int(k)] for k in listing.labels]
    return [SliceRef("fourclass", str(split[i]), names[i], "", UNKNOWN, UNKNOWN, f"brain_mri_4class/Training/{rel[i]}",
                     EMPTY_MASK if names[i] == config.NO_TUMOUR_CLASS else "")
            for i in range(len(rel)) if rel[i] not in exclude]


# --------------------------------------------------------------------------- tcga_lgg


def _grey_levels(path: Path) -> np.ndarray:
    return read_grey(path).astype(np.float32) * 255.0


def _same_image(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).mean()) <= TCGA_COPY_MAX_DIFF


def tcga_substitutes(root: Path, rows: list[dict[str, str]]) -> set[tuple[str, str]]:
    """``(volume, column)`` of every tcga_lgg sequence that is a copy of its volume's FLAIR.

    The dataset filled a volume's missing pre- or post-contrast sequence with its FLAIR (Buda et
    al.), so those files are FLAIR images filed as T1 or T1-CE. A column counts as a copy when its
    slices at a quarter, half and three quarters of the volume's rows all match the FLAIR within
    :data:`TCGA_COPY_MAX_DIFF` grey levels (mean absolute difference); blank probes (the FLAIR's mean
    under one grey level, which any two empty frames would match) do not count.
    """
    by_volume: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_volume.setdefault(row["volume"], []).append(row)
    copies = set()
    for volume, members in by_volume.items():
        members = sorted(members, key=lambda r: int(r["slice"]))
        probes = [members[i] for i in sorted({len(members) // 4, len(members) // 2, 3 * len(members) // 4})]
        pairs = [(r, f) for r in probes if (f := _grey_levels(root / "tcga_lgg" / r["flair"])).mean() >= 1.0]
        if not pairs:
            continue
        for column in TCGA_SEQUENCES:
            if column == "flair":
                continue
            if all(_same_image(_grey_levels(root / "tcga_lgg" / r[column]), f) for r, f in pairs):
                copies.add((volume, column))
    return copies


def tcga_refs(root: Path) -> list[SliceRef]:
    """Catalogued tcga_lgg slices: one ref per slice and sequence, minus glancing edges, unknown folds
    and the sequences the dataset filled with a FLAIR copy (:func:`tcga_substitutes`)."""
    index = root / "tcga_lgg" / "index.csv"
    if not index.is_file():
        raise DatasetError(f"{index} is missing")
    split_of = {fold: split for split, folds in TCGA_FOLDS.items() for fold in folds}
    with index.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if int(row["fold"]) in split_of]
    copies = tcga_substitutes(root, rows)
    refs = []
    for row in rows:
        px = int(row["tumour_px"])
        if 0 < px < MIN_TUMOUR_PX:
            continue
        label = "glioma" if px else config.NO_TUMOUR_CLASS
        for column, sequence in TCGA_SEQUENCES.items():
            if (row["volume"], column) in copies:
                continue
            refs.append(SliceRef("tcga_lgg", split_of[int(row["fold"])], label, row["patient"], sequence, "axial",
                                 f"tcga_lgg/{row[column]}", f"tcga_lgg/{row['mask']}"))
    return refs


# --------------------------------------------------------------------------- BraTS


def brats_split(weights_dir: Path | None = None) -> dict[str, str]:
    """``{case: split}`` from the shipped BraTS model's card (train / val / test)."""
    from core.serving.registry import model_card, models_by

    shipped = models_by("brats", "shipped", weights_dir)
    card = model_card(next(iter(shipped)), weights_dir) if shipped else {}
    cases = card.get("split_cases") or {}
    return {case: split for split in SPLITS for case in cases.get(split, [])}


def catalogue_order(source: str, sequence: str) -> tuple[int, int]:
    """Sort key of a (source, sequence) pair: :data:`SOURCES` order, then :data:`SEQUENCES` and
    unknown; anything else last."""
    sources = {s: i for i, s in enumerate(SOURCES)}
    sequences = {q: i for i, q in enumerate((*SEQUENCES, UNKNOWN))}
    return sources.get(source, 99), sequences.get(sequence, 99)


def brats_ref(case_id: str, sequence: str, plane: str, index: int, tag: str = "") -> str:
    """The catalogue ref of a BraTS slice, ``<case>/<sequence>/<plane>/<index>`` (``/<tag>`` after it
    for a slice derived from that one, e.g. :mod:`core.data.mirrored`'s)."""
    return f"{case_id}/{sequence}/{plane}/{index}" + (f"/{tag}" if tag else "")


def parse_brats_ref(ref: str) -> tuple[str, str, str, int] | None:
    """``(case, sequence, plane, index)`` of a plain :func:`brats_ref`; ``None`` for anything else."""
    parts = ref.split("/")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return parts[0], parts[1], parts[2], int(parts[3])


def brain_mask(case) -> np.ndarray:
    """Voxels that hold brain in any modality of a :class:`core.volumes.case.Case` (skull-stripped: > 0)."""
    brain = np.zeros(case.shape, dtype=bool)
    for volume in case.images.values():
        brain |= np.asarray(volume) > 0
    return brain


def brats_slices(case, stride: int = 1) -> list[tuple[str, str, int, str]]:
    """``(sequence, plane, index, label)`` of the usable slices of a :class:`core.volumes.case.Case`."""
    from core.volumes.views import plane_axis

    brain = brain_mask(case)
    tumour = case.labels > 0 if case.labels is not None else np.zeros(case.shape, dtype=bool)
    out = []
    for plane in PLANES:
        axis = plane_axis(plane)
        other = tuple(a for a in range(3) if a != axis)
        pixel_mm2 = float(np.prod([case.spacing_mm[a] for a in other]))
        brain_area = brain.sum(axis=other) * pixel_mm2
        tumour_area = tumour.sum(axis=other) * pixel_mm2
        if brain_area.max() <= 0:
            continue
        enough_brain = brain_area >= MIN_BRAIN_FRACTION * brain_area.max()
        for index in range(0, case.shape[axis], stride):
            if tumour_area[index] >= MIN_TUMOUR_MM2:
                label = "glioma"
            elif tumour_area[index] == 0 and enough_brain[index]:
                label = config.NO_TUMOUR_CLASS
            else:
                continue
            out += [(sequence, plane, index, label) for sequence in SEQUENCES if sequence in case.images]
    return out


def brats_slice_image(case, sequence: str, plane: str, index: int) -> np.ndarray:
    """One display-oriented slice of a case's modality, scaled to uint8 by the volume's 99.5th
    brain percentile (as the stored BraTS files are), so intensities agree across slices."""
    from core.volumes.views import slice_view

    volume = np.asarray(case.images[sequence])
    view = slice_view(volume, plane, index).astype(np.float32)
    if volume.dtype != np.uint8:
        brain = volume[volume > 0]
        top = float(np.percentile(brain, 99.5)) if brain.size else 1.0
        view = np.clip(view / max(top, 1e-6) * 255.0, 0, 255)
    return view.astype(np.uint8)


# --------------------------------------------------------------------------- figshare


#: The plane of every figshare series (a run of consecutive slice ids of one patient), labelled by
#: eye from the series' middle slice (the dataset records no plane); see core/data/annotations/README.md.
FIGSHARE_PLANES_FILE = Path(__file__).resolve().parent / "annotations" / "figshare_planes.csv"


def figshare_planes(path: Path = FIGSHARE_PLANES_FILE) -> dict[int, str]:
    """``{slice id: plane}`` of the annotated figshare series (empty when the file is absent)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {k: row["plane"] for row in csv.DictReader(fh)
                for k in range(int(row["first_id"]), int(row["last_id"]) + 1)}


def figshare_refs(root: Path, test_fold: int) -> list[SliceRef]:
    """figshare slices with their masks and annotated planes: folds :data:`FIGSHARE_FOLDS` (the test
    fold is the shipped segmenter's), the test slices minus those the 4-class Training split copies."""
    from core.data.heldout import held_out_images

    folder = root / "figshare_3064"
    listing = list_segmentation(folder)
    planes = figshare_planes()

    def plane_of(image: Path) -> str:
        return planes.get(int(image.stem), UNKNOWN) if image.stem.isdigit() else UNKNOWN

    split_of = {fold: split for split, folds in FIGSHARE_FOLDS.items() for fold in folds if fold != test_fold}
    split_of[test_fold] = "test"
    refs = [SliceRef("figshare", split_of[fold], label, patient, "t1ce", plane_of(image),
                     image.relative_to(root).as_posix(), mask.relative_to(root).as_posix())
            for image, mask, label, patient, fold in zip(listing.images, listing.masks, listing.labels,
                                                         listing.patients, listing.folds)
            if fold in split_of and fold != test_fold and label in config.CLASS_NAMES]
    index = fourclass_hash_index(root) if (root / "brain_mri_4class" / "Training").is_dir() else None
    for image in held_out_images("figshare", root, test_fold):
        if index is not None and index.query(read_grey(image.path)) is not None:
            continue  # the members' 4-class initialisation trained on this copy
        refs.append(SliceRef("figshare", "test", image.label, image.patient or "", "t1ce", plane_of(image.path),
                             f"figshare_3064/{image.relative}", f"figshare_3064/{image.mask.relative_to(folder).as_posix()}"
                             if image.mask else ""))
    return refs


# --------------------------------------------------------------------------- loading


#: Border added around a skull-stripped BraTS brain after cropping (fraction of the side, each way),
#: so that it fills the frame as much as a brain inside its skull does in the other sources.
BRATS_FRAME_MARGIN = 0.1


def _crop(image: np.ndarray, mask: np.ndarray | None, size: int, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The classifier crop as uint8 and the mask cropped alike, bit-packed (zeros without a mask)."""
    from core.imaging.preprocess import classifier_crop_and_box, crop_mask_like, resize

    unit, box = classifier_crop_and_box(image, size)
    out = np.round(unit * 255.0).astype(np.uint8)
    cut = crop_mask_like(mask, box, size) if mask is not None else np.zeros((size, size), bool)
    if margin > 0:
        pad = int(round(margin * size))
        out = resize(np.pad(out, pad), size)
        cut = resize(np.pad(cut.astype(np.uint8), pad), size, is_mask=True) > 0
    return out, np.packbits(cut.ravel())


def _stack(pairs: list[tuple[np.ndarray, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    if not pairs:
        return {"x": np.zeros((0, size, size), np.uint8), "y": np.zeros((0, size * size // 8), np.uint8)}
    return {"x": np.stack([p[0] for p in pairs]), "y": np.stack([p[1] for p in pairs])}


def _read_mask(root: Path, ref: SliceRef) -> np.ndarray | None:
    from core.data.datasets import read_mask

    if ref.mask in ("", EMPTY_MASK):
        return None
    return read_mask(root / ref.mask)


def _load_files(root: Path, refs: list[SliceRef], size: int, kind: str) -> dict[str, np.ndarray]:
    from core.data.datasets import cached_arrays

    paths = [root / r.ref for r in refs]

    def build() -> dict[str, np.ndarray]:
        return _stack([_crop(read_grey(p), _read_mask(root, r), size) for p, r in zip(paths, refs)], size)

    return cached_arrays(kind, paths, f"size={size};crop-v3;masks", build)


def _load_brats(root: Path, split_of: dict[str, str], size: int, stride: int,
                progress: Callable[[str], None] | None) -> SliceSet:
    from core.data.datasets import cached_arrays
    from core.volumes.case import read_case_folder
    from core.volumes.views import slice_view

    folder = root / "brats"
    if not folder.is_dir():
        raise DatasetError(f"{folder} is missing")
    parts: list[SliceSet] = []
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split = split_of.get(case_dir.name)
        if split is None:
            continue
        files = sorted(case_dir.glob("*.nii*"))

        def build(case_dir: Path = case_dir) -> dict[str, np.ndarray]:
            case = read_case_folder(case_dir)
            picks = brats_slices(case, stride)
            tumour = case.labels > 0 if case.labels is not None else np.zeros(case.shape, bool)
            pairs = [_crop(brats_slice_image(case, s, p, i), slice_view(tumour, p, i), size, BRATS_FRAME_MARGIN)
                     for s, p, i, _ in picks]
            return {**_stack(pairs, size), "meta": np.array([f"{s}|{p}|{i}|{lab}" for s, p, i, lab in picks])}

        data = cached_arrays("brats-cls", files, f"size={size};stride={stride};crop-v3;masks;margin={BRATS_FRAME_MARGIN};"
                             f"tumour={MIN_TUMOUR_MM2};brain={MIN_BRAIN_FRACTION}", build)
        refs = []
        for entry in data["meta"]:
            sequence, plane, index, label = str(entry).split("|")
            refs.append(SliceRef("brats", split, label, case_dir.name, sequence, plane,
                                 brats_ref(case_dir.name, sequence, plane, int(index)), BRATS_MASK))
        parts.append(SliceSet(refs, data["x"], data["y"]))
        if progress:
            progress(case_dir.name)
    if not parts:
        return SliceSet([], np.zeros((0, size, size), np.uint8), np.zeros((0, size * size // 8), np.uint8))
    return SliceSet.concat(parts) if any(len(p) for p in parts) else parts[0]


def load_sources(sources: Iterable[str], size: int, data_dir: Path | None = None, brats_stride: int = 2,
                 test_fold: int | None = None, progress: Callable[[str], None] | None = None,
                 brats_cases: dict[str, str] | None = None) -> SliceSet:
    """Every catalogued slice of ``sources`` (all splits) with its cropped input at ``size``.

    ``test_fold`` (figshare) defaults to the shipped segmenter's; ``brats_cases`` (``{case: split}``)
    to the shipped BraTS model's split (:func:`brats_split`). With ``BTD_CATALOGUE`` set, the slices
    come from that packed catalogue instead (:mod:`core.data.packed`: the training and validation
    slices as packed, on a machine without the data folder).
    """
    from core.data.heldout import shipped_test_fold
    from core.data.packed import load_packed, packed_file

    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise DatasetError(f"unknown source {unknown[0]!r}; known: {', '.join(SOURCES)}")
    packed = packed_file()
    if packed is not None:
        return load_packed(packed, sources, size)
    root = require_data_dir(data_dir)
    fold = shipped_test_fold() if test_fold is None else test_fold
    parts = []
    for source in sources:
        if progress:
            progress(source)
        if source == "brats":
            parts.append(_load_brats(root, brats_split() if brats_cases is None else brats_cases, size,
                                     brats_stride, progress))
            continue
        if source == "fourclass":
            refs = fourclass_refs(root, figshare_copies_in_fourclass(root, fold))
        elif source == "tcga_lgg":
            refs = tcga_refs(root)
        else:
            refs = figshare_refs(root, fold)
        arrays = _load_files(root, refs, size, f"src-{source}")
        parts.append(SliceSet(refs, arrays["x"], arrays["y"]))
    return SliceSet.concat(parts)


class SliceReader:
    """Reads the whole slice of a :class:`SliceRef` (what an upload would hold), keeping the last
    BraTS case in memory so consecutive slices of one case are read once."""

    def __init__(self, data_dir: Path | None = None):
        self.root = require_data_dir(data_dir)
        self._case: tuple[str, object] | None = None

    def _brats(self, ref: SliceRef) -> tuple[object, str, str, int]:
        from core.volumes.case import read_case_folder

        parsed = parse_brats_ref(ref.ref)
        if parsed is None:
            raise DatasetError(f"{ref.ref!r} is not a BraTS slice of the catalogue")
        case_id, sequence, plane, index = parsed
        if self._case is None or self._case[0] != case_id:
            self._case = (case_id, read_case_folder(self.root / "brats" / case_id))
        return self._case[1], sequence, plane, index

    def __call__(self, ref: SliceRef) -> np.ndarray:
        if ref.source != "brats":
            return read_grey(self.root / ref.ref)
        return brats_slice_image(*self._brats(ref))

    def mask(self, ref: SliceRef, region: str = "WT") -> np.ndarray | None:
        """The slice's tumour mask on its own grid (BraTS: the named region), ``None`` when unknown."""
        from core.data.datasets import read_mask

        if ref.mask == EMPTY_MASK:
            return np.zeros(self(ref).shape, dtype=bool)
        if ref.source != "brats":
            return read_mask(self.root / ref.mask) if ref.mask else None
        from core.volumes.views import slice_view

        case, _, plane, index = self._brats(ref)
        if case.labels is None:
            return None
        return slice_view(np.isin(case.labels, config.BRATS_REGIONS[region]), plane, index)
