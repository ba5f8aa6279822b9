"""The training-set hash index (core.trust.hash_index): save/load, look-up of copies, the shipped file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_brains import brain, reencoded

from core import config
from core.trust.fingerprints import fingerprint
from core.trust.hash_index import INDEX_FILE, HashIndex, load_shipped

INDEX_NPZ = config.WEIGHTS_DIR / INDEX_FILE


@pytest.fixture(scope="module")
def index() -> HashIndex:
    """Four 'training images' (seeds 1, 2, 5, 6) indexed by their fingerprints."""
    fps = [fingerprint(brain(seed)) for seed in (1, 2, 5, 6)]
    return HashIndex.from_fingerprints(fps, ["glioma", "glioma", "notumor", "pituitary"],
                                       ["glioma/tr_a.jpg", "glioma/tr_b.jpg", "notumor/tr_c.jpg", "pituitary/tr_d.jpg"])


def test_hash_index_round_trip_and_query(index, tmp_path):
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = HashIndex.load(path)
    assert loaded.names == index.names and loaded.labels == index.labels
    assert np.array_equal(loaded.phash, index.phash) and loaded.phash.dtype == np.uint64
    assert np.array_equal(loaded.dhash, index.dhash)

    hit = loaded.query(reencoded(brain(1)))
    assert hit is not None and hit["name"] == "glioma/tr_a.jpg" and hit["label"] == "glioma"
    assert not hit["mirrored"]
    exact = loaded.query(brain(5))
    assert exact is not None and exact["name"] == "notumor/tr_c.jpg" and exact["exact"]
    mirrored = loaded.query(np.ascontiguousarray(brain(5)[:, ::-1]))
    assert mirrored is not None and mirrored["name"] == "notumor/tr_c.jpg" and mirrored["mirrored"]
    for seed in (3, 7, 8, 9):
        assert loaded.query(brain(seed)) is None


def test_empty_index_query_is_none():
    empty = HashIndex(np.zeros(0, np.uint64), np.zeros(0, np.uint64), [], [])
    assert empty.query(brain(1)) is None


def test_shipped_index_is_small_and_loads_verified():
    assert INDEX_NPZ.is_file(), "run `python -m core.dedup index` to write weights/train_hash_index.npz"
    assert INDEX_NPZ.stat().st_size < 2 * 1024 * 1024
    index = load_shipped()
    assert index is not None and len(index) == 5712
    assert all(not Path(n).is_absolute() for n in index.names)


def test_a_weights_folder_without_an_index_has_none(tmp_path):
    assert load_shipped(tmp_path) is None
