"""Project-wide settings: paths, class names and label conventions.

Nothing here imports Streamlit or a deep-learning backend, so every module can use it cheaply.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
WEIGHTS_DIR: Path = Path(os.environ.get("BTD_WEIGHTS_DIR", REPO_ROOT / "weights"))
SAMPLE_DIR: Path = REPO_ROOT / "sample_data"
CACHE_DIR: Path = Path(os.environ.get("BTD_CACHE_DIR", REPO_ROOT / ".cache"))

#: Classification classes, in the order every model outputs them.
CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
NO_TUMOUR_CLASS = "notumor"
CLASS_LABELS: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary",
}
#: Folder spellings accepted for each class (public datasets disagree).
CLASS_ALIASES: dict[str, str] = {
    "glioma": "glioma",
    "glioma_tumor": "glioma",
    "meningioma": "meningioma",
    "meningioma_tumor": "meningioma",
    "notumor": "notumor",
    "no_tumor": "notumor",
    "no_tumour": "notumor",
    "notumour": "notumor",
    "pituitary": "pituitary",
    "pituitary_tumor": "pituitary",
}

#: BraTS label convention used inside the project (2020/2021 numbering).
BRATS_LABELS: dict[int, str] = {1: "NCR", 2: "ED", 4: "ET"}
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}

#: Largest image side accepted from an upload (pixels) and largest upload (bytes).
MAX_IMAGE_SIDE = 8192
MAX_SLICE_BYTES = 200 * 1024 * 1024


def data_dir() -> Path | None:
    """Folder with the public datasets: ``BTD_DATA_DIR`` or ``../shared/data`` beside the repo.

    Returns ``None`` when neither exists, so callers (and tests) can skip cleanly.
    """
    env = os.environ.get("BTD_DATA_DIR")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path
    return None


def canonical_class(folder_name: str) -> str | None:
    """Map a dataset folder name (``no_tumor``, ``glioma_tumor``...) to a class name, or None."""
    return CLASS_ALIASES.get(folder_name.strip().lower())
