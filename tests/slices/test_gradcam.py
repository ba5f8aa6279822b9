"""Grad-CAM: backend gradient dispatch, layer inspection (nested models too), exactness, geometry."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import layers

from core import config
from core.slices.gradcam import AVERAGE, MemberCam, feature_layer, to_image_grid, value_and_grad
from core.imaging.preprocess import brain_bbox, crop, pad_to_square, resize


def tiny_model(nested: bool = False) -> keras.Model:
    """Conv → (nested) conv → GAP → Dense softmax, like the members' heads."""
    inputs = keras.Input((32, 32, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    if nested:
        inner_in = keras.Input((32, 32, 4))
        inner = keras.Model(inner_in, layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inner_in),
                            name="backbone")
        x = inner(x)
    else:
        x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="probs")(x))


def test_value_and_grad_matches_the_analytic_gradient():
    x = np.array([[1.0, -2.0, 3.0]], np.float32)
    value, grad = value_and_grad(lambda t: keras.ops.sum(t * t * 0.5), x)
    assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(7.0)
    assert np.allclose(keras.ops.convert_to_numpy(grad), x)


@pytest.mark.parametrize("nested", [False, True])
def test_feature_layer_is_the_last_map_before_pooling(nested):
    model = tiny_model(nested)
    name, tensor = feature_layer(model)
    assert name == "gap" and tuple(tensor.shape)[1:] == (16, 16, 6)


@pytest.mark.parametrize("nested", [False, True])
def test_gradcam_equals_cam_for_a_gap_dense_head(nested):
    """With GAP → Dense, the logit gradient is W[:, k] / (h w), so Grad-CAM equals the original CAM."""
    keras.utils.set_random_seed(0)
    model = tiny_model(nested)
    x = np.random.default_rng(0).random((32, 32), np.float32)
    cam = MemberCam(model)
    k = 1
    features, grads = cam.maps_and_grads(x, k)
    kernel = keras.ops.convert_to_numpy(model.get_layer("probs").kernel)
    assert np.allclose(grads, np.broadcast_to(kernel[:, k] / (16 * 16), grads.shape), atol=1e-6)
    expected = np.maximum((features * kernel[:, k]).sum(-1), 0)
    heat = cam.heatmap(x, k)
    assert heat.shape == (32, 32) and 0.0 <= heat.min() and heat.max() <= 1.0
    if expected.max() > 0:
        import cv2

        ref = cv2.resize((expected / expected.max()).astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
        assert np.allclose(heat, np.clip(ref, 0, 1), atol=1e-4)


def test_cam_maps_back_onto_the_upload_grid():
    """A map marking one region of the classifier input lands on the same region of the slice."""
    image = np.zeros((120, 200), np.float32)
    image[20:100, 60:150] = 0.8                          # the "head": off-centre, not square
    image[30:50, 70:90] = 1.0                            # a landmark
    box = brain_bbox(image)
    landmark = np.zeros_like(image)
    landmark[30:50, 70:90] = 1.0
    forward = resize(pad_to_square(crop(landmark, box)), 64)   # the landmark on the model's input grid
    back = to_image_grid(forward, image.shape, box)
    assert back.shape == image.shape
    assert back[box.top:box.bottom, box.left:box.right].sum() == pytest.approx(back.sum())
    inside = back[30:50, 70:90].mean()
    outside = back[60:100, 100:150].mean()
    assert inside > 0.5 and outside < 0.05


def test_shipped_members_explained_on_the_slice_grid(analyzer):
    from core.readers.slice import read_slice_file

    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    name = next(f["name"] for f in manifest["files"] if f["kind"] == "slice")
    slice_ = read_slice_file(config.SAMPLE_DIR / name)
    explanation = analyzer.explainer.explain(slice_.image, 0)
    assert set(explanation.maps) == {AVERAGE, *[m.name for m in analyzer.classifier.members]}
    for heat in explanation.maps.values():
        assert heat.shape == slice_.shape and heat.min() >= 0 and heat.max() <= 1
    assert explanation.maps[AVERAGE].max() == pytest.approx(1.0)
    box = brain_bbox(slice_.image)
    outside = np.ones(slice_.shape, bool)
    outside[box.top:box.bottom, box.left:box.right] = False
    assert all(h[outside].max() == 0 for h in explanation.maps.values())
    assert all(layer.endswith("_gap") for layer in explanation.layers.values())
