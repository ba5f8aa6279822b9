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

# Budgets checked from the headers, before any pixel is decoded (README "Limits on uploads").
#: Most pixels in one raster image or one DICOM frame: 64 MP (8192 x 8192).
MAX_FRAME_PIXELS = 64 * 2**20
#: Most frames in a multi-frame DICOM or pages in a TIFF.
MAX_FRAMES = 2048
#: Most voxels in a NIfTI file read for a slice (256 M) and most bytes it may decompress to.
MAX_NIFTI_VOXELS = 256 * 2**20
MAX_NIFTI_BYTES = 2 * MAX_SLICE_BYTES
#: Most bytes a deflated-transfer-syntax DICOM may inflate to (counted while streaming).
MAX_DICOM_INFLATED_BYTES = MAX_SLICE_BYTES
#: Longest side of a decoded slice. Larger images are decoded reduced (JPEG by the decoder at
#: 1/2, 1/4 or 1/8 scale, everything else by averaging blocks of pixels) and their pixel spacing
#: grows by the same factor; no model here uses more than 256 px of a slice.
MAX_DECODED_SIDE = 1024
#: Batch zips: most entries in one archive, most uncompressed bytes taken from the archives of
#: one batch. Nested zips are not opened; a member over MAX_SLICE_BYTES is not extracted.
MAX_ZIP_MEMBERS = 2000
MAX_ZIP_BYTES = 512 * 2**20
#: Plausible pixel or voxel spacing in mm. A slice whose stated spacing falls outside is read
#: with its spacing unknown (measured in pixels; the metadata says why); a BraTS case is refused.
SPACING_RANGE_MM = (1e-3, 100.0)


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
