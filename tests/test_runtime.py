"""LiteRT inference: shipped exports are current and equal to Keras; stale, tampered or unwanted
exports fall back or are refused; the wrapper behaves like ``predict_on_batch``."""
from __future__ import annotations

import shutil
import threading

import keras
import numpy as np
import pytest

from core import config, registry, runtime
from core.errors import ModelUnavailable
from core.export_runtime import default_models, export_model, largest_difference, probe_input

pytestmark = pytest.mark.skipif(runtime.litert_interpreter_class() is None, reason="ai-edge-litert not installed")


def _tiny_model(outputs: int = 1) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    heads = [keras.layers.Dense(3, activation="softmax", name=f"head_{k}")(pooled) for k in range(outputs)]
    return keras.Model(inputs, heads if outputs > 1 else heads[0])


def _tiny_weights_dir(tmp_path, name: str = "tiny"):
    model = _tiny_model()
    model.save(tmp_path / f"{name}.keras")
    registry.record_model(name, {"file": f"{name}.keras", "task": "classification", "role": "ensemble_member"},
                          tmp_path)
    return model


@pytest.mark.parametrize("name", default_models())
def test_shipped_exports_are_current_and_match_keras(name):
    assert registry.runtime_problem(name) is None
    keras_model = registry.load_keras_model(name)
    lite = registry.load_inference_model(name, keras_model)
    assert isinstance(lite, runtime.LiteModel)
    x = probe_input(keras_model, seed=1)
    assert largest_difference(lite.predict_on_batch(x), keras_model.predict_on_batch(x)) < 1e-4


def test_every_flatbuffer_is_listed_in_a_card():
    cards = registry.load_manifest()["models"].values()
    listed = {c["runtime"]["file"] for c in cards if "runtime" in c}
    assert {p.name for p in config.WEIGHTS_DIR.glob("*.tflite")} == listed


def test_export_records_the_flatbuffer_and_a_retrained_model_falls_back_to_keras(tmp_path):
    model = _tiny_weights_dir(tmp_path)
    entry = export_model("tiny", tmp_path)
    assert entry["sha256"] == registry.file_sha256(tmp_path / "tiny.tflite")
    assert entry["source_sha256"] == registry.model_card("tiny", tmp_path)["sha256"]
    assert entry["max_abs_diff_vs_keras"] < 1e-4
    assert isinstance(registry.load_inference_model("tiny", model, tmp_path), runtime.LiteModel)

    retrained = _tiny_model()
    retrained.save(tmp_path / "tiny.keras")
    with registry.editing_manifest(tmp_path) as manifest:  # a new card keeps the old export's entry
        manifest["models"]["tiny"]["sha256"] = registry.file_sha256(tmp_path / "tiny.keras")
    assert "older tiny.keras" in registry.runtime_problem("tiny", tmp_path)
    assert registry.load_inference_model("tiny", retrained, tmp_path) is retrained


def test_keras_is_used_when_asked_for_or_when_the_export_is_missing(tmp_path, monkeypatch):
    model = _tiny_weights_dir(tmp_path)
    assert "no LiteRT export" in registry.runtime_problem("tiny", tmp_path)
    export_model("tiny", tmp_path)
    monkeypatch.setenv(runtime.RUNTIME_ENV, "keras")
    assert registry.load_inference_model("tiny", model, tmp_path) is model
    monkeypatch.delenv(runtime.RUNTIME_ENV)
    (tmp_path / "tiny.tflite").unlink()
    assert "missing" in registry.runtime_problem("tiny", tmp_path)
    assert registry.load_inference_model("tiny", model, tmp_path) is model


def test_a_tampered_flatbuffer_is_refused(tmp_path):
    shutil.copytree(config.WEIGHTS_DIR, tmp_path / "w")
    card = registry.model_card("resunet", tmp_path / "w")
    path = tmp_path / "w" / card["runtime"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="checksum"):
        registry.load_inference_model("resunet", object(), tmp_path / "w")


def test_outputs_keep_the_model_order_past_ten_and_any_batch_size():
    model = _tiny_model(outputs=12)
    lite = runtime.LiteModel(runtime.export_flatbuffer(model))
    for batch in (1, 3, 1):
        x = np.random.default_rng(batch).random((batch, 8, 8, 1), dtype=np.float32)
        got, want = lite.predict_on_batch(x), model.predict_on_batch(x)
        assert len(got) == 12 and got[0].shape == (batch, 3)
        assert largest_difference(got, want) < 1e-5


def test_concurrent_sessions_get_their_own_answers():
    model = _tiny_model()
    lite = runtime.LiteModel(runtime.export_flatbuffer(model))
    inputs = [np.random.default_rng(k).random((2, 8, 8, 1), dtype=np.float32) for k in range(8)]
    expected = [model.predict_on_batch(x) for x in inputs]
    errors: list[float] = []

    def worker(k: int) -> None:
        for _ in range(25):
            errors.append(float(np.abs(lite.predict_on_batch(inputs[k]) - expected[k]).max()))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 200 and max(errors) < 1e-5
