"""LiteRT inference: shipped exports are current and equal to Keras (int8 exports within their
tolerance, and with Keras's held-out accuracy and Dice); stale, tampered or unwanted exports fall
back or are refused; the wrapper behaves like ``predict_on_batch``."""
from __future__ import annotations

import shutil
import threading

import keras
import numpy as np
import pytest

from core import config

from core.serving import registry, runtime
from core.errors import ModelUnavailable
from core.serving.export import (MAX_ABS_DIFF, default_models, export_model, faster_mode, largest_difference,
                                 probe_input)

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
    quantization = registry.model_card(name)["runtime"]["quantization"]
    assert largest_difference(lite.predict_on_batch(x), keras_model.predict_on_batch(x)) < MAX_ABS_DIFF[quantization]


def test_every_flatbuffer_is_listed_in_a_card():
    cards = registry.load_manifest()["models"].values()
    listed = {c["runtime"]["file"] for c in cards if "runtime" in c}
    assert {p.name for p in config.WEIGHTS_DIR.glob("*.tflite")} == listed


def test_each_shipped_export_is_int8_exactly_where_its_timing_chose_it():
    cards = registry.load_manifest()["models"]
    modes = {}
    for name in default_models():
        exported = cards[name]["runtime"]
        assert exported["quantization"] == faster_mode(exported["timed_ms"]), name
        assert exported["format"] == runtime.QUANTIZATIONS[exported["quantization"]]
        modes[name] = exported["quantization"]
    assert modes["resunet"] == "dynamic_int8"  # the slowest stage of the slice pipeline


def test_int8_is_kept_only_when_clearly_faster_and_auto_records_its_timings(tmp_path):
    assert faster_mode({"float32": 10.0, "dynamic_int8": 5.0}) == "dynamic_int8"
    assert faster_mode({"float32": 10.0, "dynamic_int8": 9.0}) == "float32"   # within 1.2x: not worth the rounding
    assert faster_mode({"float32": 4.0, "dynamic_int8": 6.0}) == "float32"
    _tiny_weights_dir(tmp_path)
    entry = export_model("tiny", tmp_path)
    assert set(entry["timed_ms"]) == set(runtime.QUANTIZATIONS) and entry["timed_batch"] == 2
    assert entry["quantization"] == faster_mode(entry["timed_ms"])
    assert entry["max_abs_diff_vs_keras"] < MAX_ABS_DIFF[entry["quantization"]]


def test_export_records_the_flatbuffer_and_a_retrained_model_falls_back_to_keras(tmp_path):
    model = _tiny_weights_dir(tmp_path)
    entry = export_model("tiny", tmp_path, "float32")
    assert entry["quantization"] == "float32"
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


def test_an_int8_export_is_smaller_close_to_keras_and_recorded(tmp_path):
    inputs = keras.Input((32, 32, 1))
    features = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
    features = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(features)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "wide.keras")
    registry.record_model("wide", {"file": "wide.keras", "task": "segmentation", "role": "shipped"}, tmp_path)
    entry = export_model("wide", tmp_path, "dynamic_int8")
    assert entry["quantization"] == "dynamic_int8" and "timed_ms" not in entry
    int8_size = entry["size_bytes"]
    assert 0 < entry["max_abs_diff_vs_keras"] < MAX_ABS_DIFF["dynamic_int8"]
    lite = registry.load_inference_model("wide", model, tmp_path)
    x = probe_input(model, seed=3)
    assert largest_difference(lite.predict_on_batch(x), model.predict_on_batch(x)) < MAX_ABS_DIFF["dynamic_int8"]
    float_entry = export_model("wide", tmp_path, "float32")
    assert int8_size < 0.5 * float_entry["size_bytes"]
    with pytest.raises(ValueError, match="unknown quantization"):
        runtime.export_flatbuffer(model, "int4")


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


@pytest.mark.slow
def test_int8_exports_keep_the_held_out_decisions_and_dice_of_keras(data_root, monkeypatch):
    """Real data: the shipped ensemble on the official Testing split and the ResUNet on the held-out
    figshare patients give the same answers on their int8 LiteRT exports as on Keras."""
    from core.data.datasets import list_segmentation, read_grey, read_mask
    from core.evaluation.scoring import classification_probabilities
    from core.imaging.metrics import dice
    from core.slices.segment import Segmenter

    testing = data_root / "brain_mri_4class" / "Testing"
    figshare = list_segmentation(data_root / "figshare_3064")
    held_out = [i for i, fold in enumerate(figshare.folds) if fold == 4][::3]
    slices = [(read_grey(figshare.images[i]), read_mask(figshare.masks[i])) for i in held_out]

    def answers() -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        classifier, _, probs, labels, _ = classification_probabilities(testing)
        segmenter = Segmenter.load("resunet")
        dices = np.array([dice(segmenter.segment(image, (0.98, 0.98))[0], truth) for image, truth in slices])
        on_litert = not segmenter.on_keras and not any(m.on_keras for m in classifier.members)
        return probs, labels, dices, on_litert

    lite_probs, labels, lite_dice, on_litert = answers()
    monkeypatch.setenv(runtime.RUNTIME_ENV, "keras")
    keras_probs, _, keras_dice, on_litert_then = answers()
    assert on_litert and not on_litert_then

    assert np.abs(lite_probs - keras_probs).max() < MAX_ABS_DIFF["dynamic_int8"]
    assert (lite_probs.argmax(1) == keras_probs.argmax(1)).mean() >= 0.998     # at most 2 of 1311 decisions move
    accuracy = lambda p: float((p.argmax(1) == labels).mean())  # noqa: E731
    assert abs(accuracy(lite_probs) - accuracy(keras_probs)) <= 2 / len(labels)
    assert len(slices) > 200 and abs(lite_dice.mean() - keras_dice.mean()) < 0.005
    assert np.median(np.abs(lite_dice - keras_dice)) < 0.01
