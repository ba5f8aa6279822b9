"""core.data.packed: the catalogue packed for a machine without the data folder reads back as the
same training and validation slices (tests/synthetic_sources.py data)."""
from __future__ import annotations

import numpy as np
import pytest

import synthetic_sources as syn
from core.data import packed, sources
from core.data.datasets import DatasetError

SIZE = 32


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    with syn.isolated_tree(tmp_path_factory) as (tree, mp):
        mp.delenv(packed.ENV, raising=False)
        yield sources.load_sources(["fourclass", "tcga_lgg", "brats"], SIZE, data_dir=tree)


def test_packed_catalogue_reads_back_as_the_same_slices(catalogue, tmp_path, monkeypatch):
    keep = catalogue.take(np.isin(catalogue.column("split"), ["train", "val"]))
    path = tmp_path / "catalogue.npz"
    assert packed.pack_slices(keep, path, quality=packed.LOSSLESS) == path.stat().st_size
    monkeypatch.setenv(packed.ENV, str(path))
    monkeypatch.setattr(sources, "require_data_dir", lambda data_dir=None: pytest.fail("read the data folder"))
    back = sources.load_sources(["fourclass", "tcga_lgg", "brats"], SIZE)
    assert back.refs == keep.refs and "test" not in set(back.column("split"))
    np.testing.assert_array_equal(back.x, keep.x)      # lossless here; the carry uses quality 90
    np.testing.assert_array_equal(back.y, keep.y)
    tcga = sources.load_sources(["tcga_lgg"], SIZE)
    assert set(tcga.column("source")) == {"tcga_lgg"} and len(tcga) == sum(r.source == "tcga_lgg" for r in keep.refs)
    np.testing.assert_array_equal(tcga.x, keep.where(source="tcga_lgg").x)


def test_lossy_packing_stays_close_and_smaller(catalogue, tmp_path):
    keep = catalogue.where(source="brats")
    lossless = packed.pack_slices(keep, tmp_path / "a.npz", quality=packed.LOSSLESS)
    lossy = packed.pack_slices(keep, tmp_path / "b.npz", quality=60)
    assert lossy < lossless
    back = packed.load_packed(tmp_path / "b.npz", ["brats"], SIZE)
    assert np.abs(back.x.astype(int) - keep.x).mean() < 6


def test_packed_catalogue_refuses_what_it_cannot_give(catalogue, tmp_path, monkeypatch):
    path = tmp_path / "catalogue.npz"
    packed.pack_slices(catalogue.where(source="tcga_lgg"), path)
    monkeypatch.setenv(packed.ENV, str(path))
    with pytest.raises(DatasetError, match="holds 32 px crops; 64 px"):
        sources.load_sources(["tcga_lgg"], 64)
    with pytest.raises(DatasetError, match="holds none of brats"):
        sources.load_sources(["brats"], SIZE)
    with pytest.raises(DatasetError, match="unknown source 'mri'"):
        sources.load_sources(["mri"], SIZE)
    monkeypatch.setenv(packed.ENV, str(tmp_path / "missing.npz"))
    with pytest.raises(DatasetError, match="does not exist"):
        sources.load_sources(["tcga_lgg"], SIZE)
    with pytest.raises(DatasetError, match="nothing to pack"):
        packed.pack_slices(catalogue.where(source="figshare"), tmp_path / "empty.npz")
