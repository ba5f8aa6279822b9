"""The shipped training-set hash index: flags an upload that copies a training image.

Only the perceptual and difference hashes of each training image are kept (no pixels), with
its class and its name relative to the training folder. ``python -m core.dedup index``
(:mod:`core.data.dedup_split`) builds it; the app loads the copy in ``weights/`` after
:func:`core.serving.registry.verified_file` has checked its sha256 (:func:`load_shipped`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config
from core.serving import registry
from core.trust.fingerprints import DuplicateRule, Fingerprint, fingerprint, hamming, hash_array

#: The index's entry in the manifest's ``files`` and its file in ``weights/``.
INDEX_NAME = "train_hash_index"
INDEX_FILE = "train_hash_index.npz"
#: How the shipped index is rebuilt (recorded in its manifest entry).
INDEX_COMMAND = "python -m core.dedup index --out weights/train_hash_index.npz"


@dataclass
class HashIndex:
    """Hashes of the training images (no pixels): flags uploads that copy a training image."""

    phash: np.ndarray
    dhash: np.ndarray
    labels: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def save(self, path: Path) -> None:
        """Write a compressed ``.npz`` (hashes as uint64, names/labels as unicode arrays)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh, phash=np.asarray(self.phash, np.uint64), dhash=np.asarray(self.dhash, np.uint64),
                labels=np.asarray(self.labels, dtype=str), names=np.asarray(self.names, dtype=str),
                version=np.asarray(1))

    @classmethod
    def load(cls, path: Path) -> "HashIndex":
        """Read an index written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(phash=data["phash"].astype(np.uint64), dhash=data["dhash"].astype(np.uint64),
                       labels=[str(s) for s in data["labels"]], names=[str(s) for s in data["names"]])

    @classmethod
    def from_fingerprints(cls, fps: list[Fingerprint], labels: list[str], names: list[str]) -> "HashIndex":
        """Index of fingerprinted images (only their hashes are kept) with their class names and names."""
        return cls(phash=hash_array(f.phash for f in fps), dhash=hash_array(f.dhash for f in fps),
                   labels=labels, names=names)

    def query(self, image: np.ndarray, max_phash: int | None = None,
              max_dhash: int | None = None, mirror: bool = True) -> dict | None:
        """Nearest training image whose hashes are both within the thresholds, or None.

        Defaults are :class:`DuplicateRule`'s. The mirrored image is tried too (``mirror``).
        Result: ``name``, ``label``, ``phash_distance``, ``dhash_distance``, ``exact`` (both
        distances 0) and ``mirrored``.
        """
        if len(self) == 0:
            return None
        rule = DuplicateRule()
        max_phash = rule.max_phash if max_phash is None else max_phash
        max_dhash = rule.max_dhash if max_dhash is None else max_dhash
        fp = fingerprint(image)
        options = [(fp.phash, fp.dhash, False)]
        if mirror:
            options.append((fp.phash_mirror, fp.dhash_mirror, True))
        best: tuple | None = None
        for ph, dh, mirrored in options:
            p = hamming(np.array([ph]), self.phash)[0]
            d = hamming(np.array([dh]), self.dhash)[0]
            ok = (p <= max_phash) & (d <= max_dhash)
            if not ok.any():
                continue
            cand = np.flatnonzero(ok)
            k = int(cand[np.argmin(p[cand] + d[cand])])
            key = (int(p[k] + d[k]), mirrored)
            if best is None or key < best[0]:
                best = (key, k, int(p[k]), int(d[k]), mirrored)
        if best is None:
            return None
        _, k, p, d, mirrored = best
        return {"name": self.names[k], "label": self.labels[k], "phash_distance": p,
                "dhash_distance": d, "exact": p == 0 and d == 0, "mirrored": mirrored}


def load_shipped(weights_dir: Path | None = None) -> HashIndex | None:
    """The shipped index after its sha256 check, or None when the weights folder neither lists nor holds one.

    A listed index that is missing or altered, or an index file the manifest does not list, raises
    :class:`core.errors.ModelUnavailable` (:func:`core.serving.registry.verified_file`).
    """
    weights_dir = weights_dir or config.WEIGHTS_DIR
    listed = INDEX_NAME in registry.load_manifest(weights_dir).get("files", {})
    if not listed and not (weights_dir / INDEX_FILE).is_file():
        return None
    return HashIndex.load(registry.verified_file(INDEX_NAME, weights_dir))
