"""The slice catalogue packed into one file, for a machine that cannot reach the data folder.

A lent GPU machine has no network and no ``$BTD_DATA_DIR``; what travels to it is limited (64 MiB).
``python scripts/gpu_data.py pack-catalogue`` writes the training and validation slices of
:func:`core.data.sources.load_sources` (their refs, crops as WebP, bit-packed masks) into one
``.npz``; there, ``BTD_CATALOGUE=<file>`` makes :func:`~core.data.sources.load_sources` read the
slices from it, so ``python -m core.train.classifier --sources ...`` runs unchanged. The held-out
split never travels: the benchmark runs here.
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from core.data.datasets import DatasetError
from core.data.slice_refs import SliceRef, SliceSet

#: Environment variable naming a packed catalogue that :func:`core.data.sources.load_sources` reads instead.
ENV = "BTD_CATALOGUE"
#: OpenCV's WebP quality above 100 means lossless.
LOSSLESS = 101
REF_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SliceRef))


def packed_file() -> Path | None:
    """The packed catalogue named by :data:`ENV`, or ``None`` when the variable is unset."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def encode_webp(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """``(blob, offsets)``: every uint8 image as WebP, concatenated; image ``i`` is ``blob[offsets[i]:offsets[i+1]]``."""
    chunks = [cv2.imencode(".webp", im, [cv2.IMWRITE_WEBP_QUALITY, quality])[1].ravel() for im in images]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.uint8), np.cumsum([0] + [len(c) for c in chunks])


def decode_webp(blob: np.ndarray, offsets: np.ndarray, take: np.ndarray | None = None) -> np.ndarray:
    """The images of :func:`encode_webp` (those at indices ``take`` only, when given), stacked."""
    idx = range(len(offsets) - 1) if take is None else take
    return np.stack([cv2.imdecode(blob[offsets[i]:offsets[i + 1]], cv2.IMREAD_GRAYSCALE) for i in idx])


def pack_slices(slices: SliceSet, path: Path, quality: int = 90) -> int:
    """Write ``slices`` to ``path`` (``.npz``); returns its size in bytes."""
    if not len(slices):
        raise DatasetError("nothing to pack")
    blob, offsets = encode_webp(slices.x, quality)
    refs = np.array([[getattr(r, name) for name in REF_FIELDS] for r in slices.refs], dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, refs=refs, fields=np.array(REF_FIELDS), blob=blob, offsets=offsets,
                        size=np.array(slices.x.shape[1]), y=slices.y if slices.y is not None else np.zeros(0, np.uint8))
    return path.stat().st_size


def load_packed(path: Path, sources: Iterable[str], size: int) -> SliceSet:
    """The slices of ``sources`` from a packed catalogue made at ``size``."""
    if not path.is_file():
        raise DatasetError(f"{ENV} names {path}, which does not exist")
    with np.load(path) as data:
        if tuple(str(f) for f in data["fields"]) != REF_FIELDS:
            raise DatasetError(f"{path} was packed with other slice fields ({', '.join(map(str, data['fields']))})")
        if int(data["size"]) != size:
            raise DatasetError(f"{path} holds {int(data['size'])} px crops; {size} px were asked for")
        refs = [SliceRef(*row) for row in data["refs"].tolist()]
        wanted = set(sources)
        keep = np.array([r.source in wanted for r in refs], dtype=bool)
        if not keep.any():
            raise DatasetError(f"{path} holds none of {', '.join(sorted(wanted))}")
        idx = np.flatnonzero(keep)
        x = decode_webp(data["blob"], data["offsets"], idx)
        y = data["y"][idx] if data["y"].size else None
    return SliceSet([refs[i] for i in idx], x, y)
