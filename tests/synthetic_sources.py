"""A tiny synthetic copy of the public data folder for :mod:`core.data.sources` and its users.

Everything is generated into a temporary folder (never copied from real data):

* ``brain_mri_4class/Training/<class>/*.jpg`` — :data:`FOURCLASS_PER_CLASS` phantoms per class
  (the no-tumour class uses the ``no_tumor`` spelling, as one public copy does);
* ``tcga_lgg/index.csv`` with ``images/{pre,flair,post}/<id>.jpg`` and ``masks/<id>.png`` —
  rows :data:`TCGA_ROWS` across folds 1-4 (plus one of an unknown fold 5), with glancing
  slices (0 < tumour_px < 300) that the catalogue must leave out;
* ``brats/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` — 40 mm cubes (1 mm voxels, identity
  affine) whose geometry makes every slice's label known in closed form (:func:`brats_expected`).

BraTS geometry (the same along every axis, so every plane agrees):

* brain: the cube ``[8, 32)`` on every axis (576 mm² per slice), plus a thin "tail"
  ``x, y in [18, 23)``, ``z in [4, 8)`` that gives axial slices 4-7 a brain of only 25 mm² —
  below a quarter of the largest axial brain, so those slices are excluded;
* tumour (labels 2 / 1 / 4 from the rim inwards): the cube ``[12, 24)`` — 144 mm² per slice, a
  glioma slice in every plane;
* a small lesion (label 2): the cube ``[26, 29)`` — 9 mm² per slice, under ``MIN_TUMOUR_MM2``:
  neither glioma nor tumour-free, so excluded.
"""
from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from synthetic_images import phantom, write_png

FOURCLASS_PER_CLASS = 10
#: Folder spelling of each class in the synthetic 4-class tree.
FOURCLASS_FOLDERS = {"glioma": "glioma", "meningioma": "meningioma", "notumor": "no_tumor", "pituitary": "pituitary"}
IMAGE_SIDE = 64

#: (id, patient, fold, tumour_px) of the synthetic tcga_lgg index.
TCGA_ROWS: list[tuple[str, str, int, int]] = [
    ("P01_s1", "P01", 1, 900), ("P01_s2", "P01", 1, 0), ("P01_s3", "P01", 1, 120),      # 120: glancing
    ("P02_s1", "P02", 2, 300), ("P02_s2", "P02", 2, 0), ("P02_s3", "P02", 2, 299),      # 300 counts, 299 not
    ("P03_s1", "P03", 3, 450), ("P03_s2", "P03", 3, 0), ("P03_s3", "P03", 3, 0),
    ("P04_s1", "P04", 4, 600), ("P04_s2", "P04", 4, 0), ("P04_s3", "P04", 4, 1),        # 1 px: glancing
    ("P05_s1", "P05", 4, 350), ("P05_s2", "P05", 4, 350), ("P05_s3", "P05", 4, 0),
    ("P06_s1", "P06", 5, 500),                                                          # unknown fold
]
TCGA_COLUMNS = ("pre", "flair", "post")

#: Synthetic BraTS cases and the split each is given (the last one is in no split).
BRATS_CASES: dict[str, str | None] = {"BraTS2021_00001": "train", "BraTS2021_00002": "val",
                                      "BraTS2021_00003": "test", "BraTS2021_00009": None}
BRATS_SHAPE = (40, 40, 40)
BRAIN = (8, 32)
TAIL_XY, TAIL_Z = (18, 23), (4, 8)
TUMOUR = (12, 24)
SMALL_LESION = (26, 29)
BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")


def brats_split_of() -> dict[str, str]:
    """``{case: split}`` as :func:`core.data.sources.brats_split` would give it for the synthetic cases."""
    return {case: split for case, split in BRATS_CASES.items() if split}


def brats_expected(stride: int = 1) -> dict[str, list[int]]:
    """Indices (in every plane) of glioma and tumour-free slices of a synthetic case, by the rules."""
    glioma = [i for i in range(*TUMOUR) if i % stride == 0]
    lesion = set(range(*SMALL_LESION))
    free = [i for i in range(*BRAIN) if i % stride == 0 and not TUMOUR[0] <= i < TUMOUR[1] and i not in lesion]
    return {"glioma": glioma, "notumor": free}


def tcga_expected() -> dict[tuple[str, str], int]:
    """``{(split, label): slices}`` of the synthetic tcga_lgg rows (three sequences per row)."""
    split_of = {1: "train", 2: "train", 3: "val", 4: "test"}
    out: dict[tuple[str, str], int] = {}
    for _, _, fold, px in TCGA_ROWS:
        if fold not in split_of or 0 < px < 300:
            continue
        key = (split_of[fold], "glioma" if px else "notumor")
        out[key] = out.get(key, 0) + 3
    return out


def write_fourclass(root: Path, per_class: int = FOURCLASS_PER_CLASS) -> None:
    for k, (name, folder) in enumerate(FOURCLASS_FOLDERS.items()):
        for i in range(per_class):
            image, _ = phantom(100 * k + i, IMAGE_SIDE)
            write_png(root / "brain_mri_4class" / "Training" / folder / f"{name}_{i:02d}.jpg", image)


def write_tcga(root: Path) -> None:
    base = root / "tcga_lgg"
    rows = []
    for n, (slice_id, patient, fold, px) in enumerate(TCGA_ROWS):
        record = {"id": slice_id, "patient": patient, "volume": f"{patient}_vol", "slice": n, "fold": fold,
                  "has_tumour": int(px > 0), "tumour_px": px}
        for j, column in enumerate(TCGA_COLUMNS):
            image, _ = phantom(1000 + 10 * n + j, IMAGE_SIDE)
            image = np.clip(image.astype(np.int32) * (0.7 + 0.2 * j), 0, 255).astype(np.uint8)
            rel = f"images/{column}/{slice_id}.jpg"
            write_png(base / rel, image)
            record[column] = rel
        mask = np.zeros(IMAGE_SIDE * IMAGE_SIDE, np.uint8)
        mask[:px] = 255
        record["mask"] = f"masks/{slice_id}.png"
        write_png(base / record["mask"], mask.reshape(IMAGE_SIDE, IMAGE_SIDE))
        rows.append(record)
    with (base / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "patient", "volume", "slice", "fold", "has_tumour",
                                                "tumour_px", *TCGA_COLUMNS, "mask"])
        writer.writeheader()
        writer.writerows(rows)


def _box(lo_hi: tuple[tuple[int, int], ...]) -> np.ndarray:
    out = np.zeros(BRATS_SHAPE, dtype=bool)
    out[tuple(slice(lo, hi) for lo, hi in lo_hi)] = True
    return out


def brats_volumes(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four uint8 modalities (0 outside the brain) and the 0/1/2/4 label map of a synthetic case."""
    rng = np.random.default_rng(seed)
    brain = _box((BRAIN,) * 3) | _box((TAIL_XY, TAIL_XY, TAIL_Z))
    tumour = _box((TUMOUR,) * 3)
    labels = np.zeros(BRATS_SHAPE, np.uint8)
    labels[tumour] = 2
    labels[_box(((14, 22),) * 3)] = 1
    labels[_box(((16, 20),) * 3)] = 4
    labels[_box((SMALL_LESION,) * 3)] = 2
    images = {}
    for k, key in enumerate(BRATS_MODALITIES):
        base = rng.integers(60 + 20 * k, 100 + 20 * k, size=BRATS_SHAPE)
        vol = np.where(brain, base, 0) + np.where(labels > 0, 60 - 15 * k, 0)
        images[key] = np.clip(vol, 0, 255).astype(np.uint8)
    return images, labels


def write_brats(root: Path) -> None:
    import nibabel as nib

    for n, case in enumerate(BRATS_CASES):
        folder = root / "brats" / case
        folder.mkdir(parents=True, exist_ok=True)
        images, labels = brats_volumes(n)
        for key, arr in {**images, "seg": labels}.items():
            nib.save(nib.Nifti1Image(arr, np.eye(4)), str(folder / f"{case}_{key}.nii.gz"))


def build_tree(root: Path) -> Path:
    """Write the whole synthetic data folder under ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    write_fourclass(root)
    write_tcga(root)
    write_brats(root)
    return root


def isolate(monkeypatch, root: Path, cache: Path, weights: Path) -> None:
    """Point the catalogue at ``root`` only: data folder, cache, weights and the shipped splits."""
    from core import config
    from core.data import heldout, sources

    weights.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(config, "CACHE_DIR", cache)
    monkeypatch.setattr(config, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(config, "data_dir", lambda: root)
    monkeypatch.setattr(sources, "brats_split", lambda weights_dir=None: brats_split_of())
    monkeypatch.setattr(heldout, "shipped_test_fold", lambda weights_dir=None: 1)


@contextmanager
def isolated_tree(tmp_path_factory) -> Iterator[tuple[Path, "pytest.MonkeyPatch"]]:
    """For a module-scoped fixture: the synthetic tree built in a fresh folder and made the catalogue's
    only data (:func:`isolate`, private cache and weights) until the module ends; yields the tree and
    the monkeypatch, for anything more the module sets."""
    import pytest

    root = build_tree(tmp_path_factory.mktemp("data"))
    base = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, root, base / "cache", base / "weights")
        yield root, mp


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))
