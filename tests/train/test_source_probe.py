"""core.train.source_probe end to end on the synthetic sources: the figures it prints and writes."""
from __future__ import annotations

import json

import pytest

import synthetic_sources as syn


def test_probe_scores_each_source_on_its_validation_patients(tmp_path, monkeypatch, normalisation="rank"):
    pytest.importorskip("keras")
    from core.train import source_probe

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    out = tmp_path / "probe.json"
    source_probe.main(["--size", "32", "--epochs", "1", "--samples-per-epoch", "32", "--normalisation", normalisation,
                       "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["normalisation"] == normalisation and result["chance"] == pytest.approx(1 / 3, abs=1e-4)
    assert set(result["per_source_recall"]) == set(source_probe.SOURCES)
    recalls = list(result["per_source_recall"].values())
    assert all(0.0 <= r <= 1.0 for r in recalls)
    assert result["balanced_accuracy"] == pytest.approx(sum(recalls) / 3, abs=1e-4)
    assert result["n_val"] > 0
