"""The shipped weights: every file carded, checksummed, lean; tampering is detected."""
from __future__ import annotations

import shutil

import pytest

from core import config

from core.serving import registry
from core.errors import ModelUnavailable
from core.serving.registry import file_sha256, load_manifest, verified_file, verified_path

REQUIRED = {"task", "role", "architecture", "file", "sha256", "size_bytes", "classes", "data", "split",
            "metrics", "training_command", "trained_at", "backend"}
MiB = 1024 * 1024


def test_every_card_is_complete_and_matches_its_file():
    models = load_manifest()["models"]
    assert {"stacking_ensemble", "resunet"} <= set(models)
    for name, card in models.items():
        assert REQUIRED <= set(card), f"{name} card lacks {REQUIRED - set(card)}"
        path = config.WEIGHTS_DIR / card["file"]
        assert file_sha256(path) == card["sha256"], name
        assert card["training_command"].startswith("python -m core.train."), name


def test_every_weight_file_is_listed_and_lean():
    manifest = load_manifest()
    cards = manifest["models"].values()
    listed = ({card["file"] for card in cards} | {card["runtime"]["file"] for card in cards if "runtime" in card}
              | {entry["file"] for entry in manifest.get("files", {}).values()})
    on_disk = {p.name for suffix in ("keras", "tflite", "npz") for p in config.WEIGHTS_DIR.glob(f"*.{suffix}")}
    assert on_disk <= listed, f"unlisted weights: {on_disk - listed}"
    sizes = [p.stat().st_size for p in config.WEIGHTS_DIR.rglob("*") if p.is_file()]
    assert max(sizes) < 16 * MiB
    assert sum(sizes) < 80 * MiB


def test_ensemble_has_four_diverse_members():
    models = load_manifest()["models"]
    members = models["stacking_ensemble"]["members"]
    assert len(members) >= 4
    families = {models[m]["family"] for m in members}
    assert len(families) == len(members)


def test_tampered_weights_are_refused(tmp_path):
    shutil.copytree(config.WEIGHTS_DIR, tmp_path / "w")
    card = load_manifest(tmp_path / "w")["models"]["resunet"]
    path = tmp_path / "w" / card["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="checksum"):
        verified_path("resunet", tmp_path / "w")
    path.unlink()
    with pytest.raises(ModelUnavailable, match="missing"):
        verified_path("resunet", tmp_path / "w")


def test_every_shipped_data_file_matches_its_entry():
    """Files that are not models (the training-set hash index) are checksummed in ``manifest["files"]`` too."""
    files = load_manifest()["files"]
    assert "train_hash_index" in files
    for name, entry in files.items():
        assert {"file", "sha256", "size_bytes", "description", "command"} <= set(entry), name
        assert verified_file(name) == config.WEIGHTS_DIR / entry["file"]
        assert entry["size_bytes"] == (config.WEIGHTS_DIR / entry["file"]).stat().st_size


def test_altered_hash_index_is_refused(tmp_path):
    """An altered, missing or unlisted training-set hash index is refused before it is loaded."""
    from core.trust.hash_index import INDEX_NAME, load_shipped

    shutil.copytree(config.WEIGHTS_DIR, tmp_path / "w")
    path = tmp_path / "w" / registry.file_entry(INDEX_NAME, tmp_path / "w")["file"]
    assert len(load_shipped(tmp_path / "w")) > 1000
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="checksum"):
        verified_file(INDEX_NAME, tmp_path / "w")
    with pytest.raises(ModelUnavailable, match="checksum"):
        load_shipped(tmp_path / "w")
    path.unlink()
    with pytest.raises(ModelUnavailable, match="missing"):
        load_shipped(tmp_path / "w")
    shutil.copy2(config.WEIGHTS_DIR / path.name, path)
    with registry.editing_manifest(tmp_path / "w") as manifest:
        del manifest["files"][INDEX_NAME]
    with pytest.raises(ModelUnavailable, match="not in"):
        load_shipped(tmp_path / "w")


def _record_many(args: tuple[str, int]) -> None:
    folder, worker = args
    from pathlib import Path

    from core.serving.registry import record_model
    for i in range(40):
        record_model(f"m{worker}_{i}", {"file": "w.bin", "task": "segmentation"}, Path(folder))


def test_concurrent_trainings_keep_every_card(tmp_path):
    """Two trainings finishing together must not drop each other's card (read-modify-write under a lock)."""
    import multiprocessing

    (tmp_path / "w.bin").write_bytes(b"weights")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_record_many, [(str(tmp_path), 0), (str(tmp_path), 1)])
    models = load_manifest(tmp_path)["models"]
    assert len(models) == 80
    assert {c["sha256"] for c in models.values()} == {file_sha256(tmp_path / "w.bin")}


def test_loaded_model_runs_on_its_export_and_is_stamped_with_its_card():
    from core.slices.classify import Member
    from core.slices.segment import Segmenter

    member = Member.load("resnet_compact")
    card = registry.model_card("resnet_compact")
    assert member.card == card and member.sha256 == card["sha256"] and member.input_size == card["input"]["size"]
    assert member.on_keras is ("runtime" not in card)       # a current LiteRT export runs the inference
    stand_in = Segmenter("x", object(), {"input": {"size": 64}})
    assert stand_in.runner is stand_in.model and stand_in.on_keras and stand_in.sha256 == ""
    assert Segmenter.load().name == "resunet"


def test_model_cards_show_flat_and_per_source_metrics_and_the_tta(tmp_path):
    """MODEL_CARDS.md shows scalar metrics and one level of per-source figures; deeper tables stay in
    the manifest."""
    (tmp_path / "m.keras").write_bytes(b"weights")
    card = {"task": "acquisition", "file": "m.keras", "tta": "hflip",
            "metrics": {"test": {"worst": 0.9, "brats": {"sequence": 0.906, "plane": 0.993, "n": 3472},
                                 "cells": {"brats/t1": {"auc": 0.8, "ci": [0.7, 0.9]}}}}}
    registry.record_model("recogniser", card, tmp_path)
    text = registry.render_model_cards(tmp_path)
    line = next(row for row in text.splitlines() if row.startswith("| metrics: test |"))
    assert '"worst": 0.9' in line and '"brats": {"sequence": 0.906, "plane": 0.993, "n": 3472}' in line
    assert "cells" not in line
    assert "| tta | hflip |" in text
