"""The weight soup: the saved model holds the mean of its ingredients, and its card names them."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core.errors import ModelUnavailable
from core.serving.registry import load_keras_model, model_card, record_model
from core.train import soup


def _tiny(width: int = 4) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(width, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def _ingredient(folder, seed: int, width: int = 4, architecture: str = "tiny") -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = _tiny(width)
    # distinct batch-normalisation statistics too, so the test sees them averaged
    model.set_weights([w + seed for w in model.get_weights()])
    folder.mkdir(parents=True)
    model.save(folder / "tiny.keras")
    record_model("tiny", {"file": "tiny.keras", "task": "classification", "architecture": architecture,
                          "training_command": f"run {seed}", "metrics": {"val": {"worst": 0.5}},
                          "runtime": {"file": "tiny.tflite"}}, folder)
    return model


def test_soup_is_the_mean_of_its_ingredients_and_its_card_names_them(tmp_path):
    a = _ingredient(tmp_path / "a", 1)
    b = _ingredient(tmp_path / "b", 2)
    card = soup.soup("tiny", [tmp_path / "a", tmp_path / "b"], tmp_path / "out")

    souped = load_keras_model("tiny", tmp_path / "out")  # checksum-verified against the new card
    for got, wa, wb in zip(souped.get_weights(), a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(got, (wa + wb) / 2, rtol=1e-6)
    moving_mean = souped.get_layer(index=2).moving_mean.numpy()
    np.testing.assert_allclose(moving_mean, 1.5, rtol=1e-6)  # 0 + 1 and 0 + 2, averaged

    assert [i["training_command"] for i in card["soup"]] == ["run 1", "run 2"]
    assert [i["sha256"] for i in card["soup"]] == [model_card("tiny", tmp_path / f)["sha256"] for f in "ab"]
    assert "metrics" not in card and "runtime" not in card  # measured on one ingredient, not on the soup
    assert card["architecture"] == "tiny"


def test_soup_refuses_other_architectures_and_a_single_model(tmp_path):
    _ingredient(tmp_path / "a", 1)
    _ingredient(tmp_path / "b", 2, width=6)
    with pytest.raises(soup.IncompatibleIngredients, match="shaped"):
        soup.soup("tiny", [tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    _ingredient(tmp_path / "c", 3, architecture="other")
    with pytest.raises(soup.IncompatibleIngredients, match="architectures differ"):
        soup.soup("tiny", [tmp_path / "a", tmp_path / "c"], tmp_path / "out")
    with pytest.raises(soup.IncompatibleIngredients, match="at least two"):
        soup.soup("tiny", [tmp_path / "a"], tmp_path / "out")


def test_soup_checks_each_ingredient_against_its_card(tmp_path):
    _ingredient(tmp_path / "a", 1)
    _ingredient(tmp_path / "b", 2)
    (tmp_path / "b" / "tiny.keras").write_bytes(b"tampered")
    with pytest.raises(ModelUnavailable):
        soup.soup("tiny", [tmp_path / "a", tmp_path / "b"], tmp_path / "out")
