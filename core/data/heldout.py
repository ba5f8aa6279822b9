"""Held-out images of the public datasets, to try the shipped models on real scans.

The Analyse page can take its input from the public data folder (``BTD_DATA_DIR``) instead of an
upload: a slice of the official Testing split of ``brain_mri_4class`` (never trained on; true
class known) or of the figshare patients the shipped segmenter held out (true class and expert
mask known). Nothing here copies the data anywhere: it lists paths, and the page reads the one
chosen. Which figshare fold is held out comes from the shipped segmenter's card, so the images
offered are exactly those its reported Dice was measured on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config
from core.data.datasets import DatasetError, list_classification, list_segmentation, read_mask

#: Held-out sets the page offers, with how they are described.
HELD_OUT_SETS: dict[str, str] = {
    "testing": "Official Testing split of brain_mri_4class (4 classes; not trained on, copies of training images are flagged)",
    "figshare": "figshare slices of the patients the segmenter held out (with the expert's tumour mask)",
}

#: Folder of each held-out set under the data folder (the ``data`` the evaluation artifacts name).
SET_FOLDERS: dict[str, str] = {"testing": "brain_mri_4class/Testing", "figshare": "figshare_3064"}

#: In-plane spacing of the stored figshare slices (about 0.49 mm at 512 px, resized to 256 px;
#: the dataset notes give it, the JPEG files do not).
FIGSHARE_SPACING_MM = 0.98


@dataclass(frozen=True)
class HeldOutImage:
    """One held-out slice: its file, the true class and, for figshare, the expert mask."""

    path: Path
    label: str
    relative: str
    mask: Path | None = None
    patient: str | None = None

    def expert_mask(self) -> np.ndarray | None:
        """The expert's tumour mask (bool, the image's grid), or ``None`` when the set has none."""
        return None if self.mask is None else read_mask(self.mask)


def _testing(root: Path) -> list[HeldOutImage]:
    folder = root / SET_FOLDERS["testing"]
    listing = list_classification(folder)
    return [HeldOutImage(p, config.CLASS_NAMES[int(k)], p.relative_to(folder).as_posix())
            for p, k in zip(listing.paths, listing.labels)]


def _figshare(root: Path, test_fold: int) -> list[HeldOutImage]:
    folder = root / SET_FOLDERS["figshare"]
    listing = list_segmentation(folder)
    if not listing.folds:
        raise DatasetError(f"{folder} has no patient-wise folds (index.csv with a 'fold' column)")
    return [HeldOutImage(image, label, image.relative_to(folder).as_posix(), mask, patient or None)
            for image, mask, label, patient, fold in zip(listing.images, listing.masks, listing.labels,
                                                         listing.patients, listing.folds)
            if fold == test_fold and label in config.CLASS_NAMES]


def held_out_images(which: str, data_dir: Path | None = None, test_fold: int | None = None) -> list[HeldOutImage]:
    """The held-out slices of set ``which`` (a key of :data:`HELD_OUT_SETS`), sorted by class then file.

    ``test_fold`` (figshare) defaults to the fold the shipped segmenter's card held out. Raises
    :class:`~core.data.datasets.DatasetError` when the data folder or the set is missing.
    """
    if which not in HELD_OUT_SETS:
        raise ValueError(f"unknown held-out set {which!r}; known: {', '.join(HELD_OUT_SETS)}")
    root = data_dir or config.data_dir()
    if root is None:
        raise DatasetError("no public data folder: set BTD_DATA_DIR to the folder holding brain_mri_4class/ "
                           "and figshare_3064/")
    if which == "testing":
        images = _testing(Path(root))
    else:
        images = _figshare(Path(root), shipped_test_fold() if test_fold is None else test_fold)
    if not images:
        raise DatasetError(f"no held-out images of the {which} set under {root}")
    return sorted(images, key=lambda im: (config.CLASS_NAMES.index(im.label), im.relative))


def set_of_folder(dataset: str) -> str | None:
    """The held-out set whose images live in ``dataset`` (a data-folder path as the artifacts name it)."""
    wanted = Path(dataset.replace("$BTD_DATA_DIR/", "")).as_posix().strip("/")
    return next((which for which, folder in SET_FOLDERS.items() if folder == wanted), None)


def position_of(images: list[HeldOutImage], relative: str) -> int | None:
    """Index of the image with path ``relative`` (inside its set's folder) in ``images``, or ``None``."""
    return next((k for k, im in enumerate(images) if im.relative == relative), None)


def shipped_test_fold(weights_dir: Path | None = None) -> int:
    """The figshare fold the shipped segmenter never saw (its card's ``config.test_fold``)."""
    from core.serving.registry import model_card

    return int(model_card("resunet", weights_dir)["config"]["test_fold"])
