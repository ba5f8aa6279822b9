"""Listing and loading the public datasets in their usual layouts.

* Classification: a folder with one sub-folder per class (``glioma``, ``meningioma``,
  ``notumor``/``no_tumor``, ``pituitary`` and the ``*_tumor`` spellings); any subset of classes.
* Segmentation: ``images/`` + ``masks/`` with matching file stems, or an ``index.csv`` with
  ``image`` and ``mask`` columns (and optionally ``label``, ``patient_id``, ``fold``).

Decoded, preprocessed arrays are cached as ``.npz`` under :data:`core.config.CACHE_DIR`, keyed
by the folder, the file list and the preprocessing parameters, so training and evaluation
decode each JPEG once.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core import config
from core.errors import InputError
from core.imaging.preprocess import classifier_input_uint8, resize, to_uint8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".nii", ".gz"}


class DatasetError(InputError):
    """A dataset folder is missing, empty or laid out in a way the loaders do not know."""


@dataclass
class ClassificationSet:
    """Image paths with integer labels (indices into :data:`core.config.CLASS_NAMES`)."""

    paths: list[Path]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class SegmentationSet:
    """Image and mask paths with optional per-image label and patient identifiers."""

    images: list[Path]
    masks: list[Path]
    labels: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    folds: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_classification(root: str | Path) -> ClassificationSet:
    """List ``root/<class>/*`` images; unknown sub-folders are ignored, no known one is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    paths: list[Path] = []
    labels: list[int] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        name = config.canonical_class(sub.name)
        if name is None:
            continue
        files = sorted(p for p in sub.rglob("*") if _is_image(p))
        paths += files
        labels += [config.CLASS_NAMES.index(name)] * len(files)
    if not paths:
        known = ", ".join(sorted(config.CLASS_ALIASES))
        raise DatasetError(f"no images in class sub-folders of {root} (expected folders named: {known})")
    return ClassificationSet(paths, np.asarray(labels, dtype=np.int64))


def list_segmentation(root: str | Path) -> SegmentationSet:
    """List image/mask pairs from ``index.csv`` or from ``images/`` and ``masks/`` by stem."""
    root = Path(root)
    index = root / "index.csv"
    if index.is_file():
        with index.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"image", "mask"} <= set(rows[0]):
            raise DatasetError(f"{index} needs 'image' and 'mask' columns")
        return SegmentationSet(
            images=[root / r["image"] for r in rows],
            masks=[root / r["mask"] for r in rows],
            labels=[r.get("label", "") for r in rows],
            patients=[r.get("patient_id", "") for r in rows],
            folds=[int(r["fold"]) if r.get("fold", "").strip().isdigit() else -1 for r in rows],
        )
    img_dir, mask_dir = root / "images", root / "masks"
    if not (img_dir.is_dir() and mask_dir.is_dir()):
        raise DatasetError(f"{root} needs an index.csv or images/ and masks/ sub-folders")
    masks = {p.stem: p for p in mask_dir.iterdir() if _is_image(p)}
    images = sorted(p for p in img_dir.iterdir() if _is_image(p) and p.stem in masks)
    if not images:
        raise DatasetError(f"no image in {img_dir} has a mask with the same file stem in {mask_dir}")
    return SegmentationSet(images=images, masks=[masks[p.stem] for p in images])


def read_grey(path: Path) -> np.ndarray:
    """Read any supported slice file as a 2D greyscale array (via :mod:`core.readers.slice`)."""
    from core.readers.slice import read_slice_file  # local import: io pulls in pydicom/nibabel

    return read_slice_file(path).image


def read_mask(path: Path) -> np.ndarray:
    """Read a mask image as boolean (any non-zero pixel is foreground)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 0


def _cache_path(kind: str, paths: list[Path], params: str) -> Path:
    digest = hashlib.sha1()
    for p in paths:
        digest.update(str(p.resolve()).encode())
        digest.update(str(p.stat().st_mtime_ns).encode())
    digest.update(params.encode())
    return config.CACHE_DIR / f"{kind}-{digest.hexdigest()[:16]}.npz"


def _params(size: int) -> str:
    return f"size={size};v1"


def seed_cache(kind: str, paths: list[Path], size: int, arrays: dict[str, np.ndarray]) -> Path:
    """Store ``arrays`` as what :func:`load_classification` (``kind`` "cls": ``x``) or
    :func:`load_segmentation` ("seg": ``x`` and ``y``) would build for ``paths`` at ``size``, so a
    machine that only received the decoded arrays (``scripts/gpu_data.py``) never reads the images."""
    target = _cache_path(kind, paths, _params(size))
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, **arrays)
    return target


def cached_arrays(kind: str, paths: list[Path], params: str, build: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """``build()``'s arrays, read from the cache when ``paths`` (and their mtimes) and ``params`` match."""
    path = _cache_path(kind, paths, params)
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # concurrent trainings build the same cache
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


def load_classification(root: str | Path, size: int, progress: Callable[[int, int], None] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Brain-cropped classifier inputs ``(N, size, size)`` uint8, labels ``(N,)`` and paths."""
    listing = list_classification(root)

    def build() -> dict[str, np.ndarray]:
        out = np.empty((len(listing), size, size), dtype=np.uint8)
        for i, path in enumerate(listing.paths):
            out[i] = classifier_input_uint8(read_grey(path), size)
            if progress:
                progress(i + 1, len(listing))
        return {"x": out}

    arrays = cached_arrays("cls", listing.paths, _params(size), build)
    return arrays["x"], listing.labels, listing.paths


def load_segmentation(listing: SegmentationSet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole slices resized to ``size``: images ``(N, size, size)`` uint8 and masks bool."""

    def build() -> dict[str, np.ndarray]:
        imgs = np.empty((len(listing), size, size), dtype=np.uint8)
        masks = np.empty((len(listing), size, size), dtype=bool)
        for i, (ip, mp) in enumerate(zip(listing.images, listing.masks)):
            imgs[i] = resize(to_uint8(read_grey(ip)), size)
            masks[i] = resize(read_mask(mp).astype(np.uint8), size, is_mask=True) > 0
        return {"x": imgs, "y": masks}

    arrays = cached_arrays("seg", listing.images, _params(size), build)
    return arrays["x"], arrays["y"]


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` with each class split in the same proportion."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, val = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(val)


def patient_split(patients: list[str], folds: list[int], val_folds: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)`` by patient folds; asserts no patient is on both sides."""
    folds_arr = np.asarray(folds)
    held = np.isin(folds_arr, val_folds)
    train_p = {p for p, h in zip(patients, held) if not h}
    held_p = {p for p, h in zip(patients, held) if h}
    if train_p & held_p:
        raise DatasetError(f"patients on both sides of the split: {sorted(train_p & held_p)[:5]}")
    return np.flatnonzero(~held), np.flatnonzero(held)
