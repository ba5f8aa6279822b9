"""``python -m core.train.ensemble --refresh-coverage``: only the card's coverage block is recounted."""
from __future__ import annotations

import json
import shutil

from core import config
from core.serving import registry
from core.train import ensemble as train_ensemble


def test_refresh_recounts_coverage_and_leaves_the_rest_of_the_card(tmp_path, monkeypatch):
    for name in ("manifest.json", "stacking_ensemble.json"):
        shutil.copy(config.WEIGHTS_DIR / name, tmp_path / name)
    before = registry.model_card("stacking_ensemble", tmp_path)
    seen = {}

    def fake_coverage(sources, size, weights_dir):
        seen.update(sources=sources, size=size, weights_dir=weights_dir)
        return {"known": [], "estimated": [], "estimated_by": "abc", "unlabelled": 3, "rule": "r"}

    monkeypatch.setattr(train_ensemble, "_coverage", fake_coverage)
    train_ensemble.main(["--refresh-coverage", "--out", str(tmp_path)])
    after = registry.model_card("stacking_ensemble", tmp_path)
    member_size = registry.model_card(before["members"][0])["input"]["size"]
    assert seen == {"sources": before["sources"], "size": member_size, "weights_dir": tmp_path}
    assert after["coverage"]["estimated_by"] == "abc"
    assert after["coverage_command"] == train_ensemble.REFRESH_COVERAGE_COMMAND
    unchanged = {k: v for k, v in after.items() if k not in ("coverage", "coverage_command")}
    assert unchanged == {k: v for k, v in before.items() if k not in ("coverage", "coverage_command")}
    assert after["sha256"] == registry.file_sha256(tmp_path / "stacking_ensemble.json")
    json.loads((tmp_path / "manifest.json").read_text())
