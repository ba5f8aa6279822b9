"""Float16 weight files (core.serving.compact_weights): promote --fp16 halves the file, the registry rebuilds
the network from the card, and the outputs match the float32 original up to the rounding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.serving import compact_weights, registry
from core.errors import ModelUnavailable
from core.models.segmenters import build_segmenter


def _trained_elsewhere(tmp_path: Path) -> tuple[Path, object]:
    """A small 3D U-Net saved as .keras with its card in a 'GPU run' folder."""
    source = tmp_path / "runs"
    (source / "logs").mkdir(parents=True)
    model = build_segmenter("unet3d", input_size=None, channels=4, num_classes=4, base=4, depth=2)
    model.save(source / "tiny3d.keras")
    (source / "logs" / "tiny3d.csv").write_text("epoch,loss\n0,1.0\n")
    registry.record_model("tiny3d", {
        "task": "brats", "role": "shipped", "dims": 3, "architecture": "unet3d", "file": "tiny3d.keras",
        "input": {"window": 16, "channels": ["flair", "t1", "t1ce", "t2"]}, "classes": ["bg", "NCR", "ED", "ET"],
        "config": {"base": 4, "depth": 2}, "log": "logs/tiny3d.csv",
        "training_command": "python -m core.train.brats --model unet3d"}, source)
    return source, model


def test_promote_fp16_halves_the_file_and_loads_the_same_network(tmp_path):
    source, original = _trained_elsewhere(tmp_path)
    target = tmp_path / "weights"
    target.mkdir()
    card = registry.promote("tiny3d", source, target, role="comparison", fp16=True)
    assert card["file"] == "tiny3d.fp16.npz" and card["format"] == compact_weights.FORMAT
    assert card["role"] == "comparison" and card["builder"]["kwargs"]["base"] == 4
    assert card["fp16_probe"] == "1x16x16x16x4" and 0 <= card["fp16_max_output_difference"] < 1e-2
    stored = json.loads((target / "manifest.json").read_text())["models"]["tiny3d"]
    assert stored["sha256"] == registry.file_sha256(target / "tiny3d.fp16.npz")
    assert not (target / "tiny3d.keras").exists() and (target / "logs" / "tiny3d.csv").is_file()

    with np.load(target / "tiny3d.fp16.npz") as stored:
        assert {stored[k].dtype for k in stored.files} == {np.dtype(np.float16)}
        assert sum(stored[k].size for k in stored.files) == sum(np.asarray(w).size for w in original.get_weights())
    assert (target / "tiny3d.fp16.npz").stat().st_size < (source / "tiny3d.keras").stat().st_size

    loaded = registry.load_keras_model("tiny3d", target)
    for mine, theirs in zip(loaded.get_weights(), original.get_weights()):
        np.testing.assert_allclose(mine, np.asarray(theirs).astype(np.float16).astype(np.float32))
    probe = np.random.default_rng(1).normal(size=(1, 16, 16, 16, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(probe)), np.asarray(original(probe)), atol=1e-2)


def test_a_tampered_or_foreign_fp16_file_is_refused(tmp_path):
    source, _ = _trained_elsewhere(tmp_path)
    target = tmp_path / "weights"
    target.mkdir()
    registry.promote("tiny3d", source, target, fp16=True)
    with pytest.raises(ModelUnavailable, match="unknown model builder"):
        compact_weights.build({"module": "os", "function": "system", "kwargs": {"command": "true"}})
    short = tmp_path / "short.fp16.npz"
    np.savez_compressed(short, w0=np.zeros(3, np.float16))
    builder = registry.model_card("tiny3d", target)["builder"]
    with pytest.raises(ModelUnavailable, match="holds 1 arrays"):
        compact_weights.load_fp16(short, builder)
    (target / "tiny3d.fp16.npz").write_bytes(b"tampered")
    with pytest.raises(ModelUnavailable, match="checksum"):
        registry.load_keras_model("tiny3d", target)
