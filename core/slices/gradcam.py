"""Grad-CAM (Selvaraju et al. 2017) for each ensemble member and their average.

For a member, the *feature map* is the input of its last global-average-pooling layer (the last
4D tensor of the top-level graph, found by layer inspection, so it also works when the backbone
is a nested model such as ``keras.applications.MobileNetV2``). The *score* is the pre-softmax
logit of the explained class: when the member ends in a softmax ``Dense`` layer its logits are
rebuilt from the layer's input with the layer's kernel and bias (softmax saturates, logits do
not); otherwise the centred log-probability is used (equal to the centred logit for a softmax).

Keras 3 has no backend-neutral gradient op, so :func:`value_and_grad` dispatches on
``keras.backend.backend()``: ``tf.GradientTape`` on TensorFlow, ``jax.value_and_grad`` on JAX,
``torch.autograd`` on PyTorch; everything else is ``keras.ops``.

The map is computed on the classifier input (brain crop, padded square, resized) and mapped back
to the upload's own pixel grid with the same crop box (:func:`to_image_grid`), so it overlays
the slice the user sees. Outside the brain crop the map is 0.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from core.imaging.preprocess import CropBox, brain_bbox, classifier_input, to_image_grid, to_unit_range

AVERAGE = "average"


# --------------------------------------------------------------------------- backend dispatch

def value_and_grad(fn: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """``(fn(x), d fn / d x)`` for a scalar-valued ``fn`` written with ``keras.ops``."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn)(x)
    if backend == "torch":
        import torch

        x = torch.as_tensor(x).detach().requires_grad_(True)
        value = fn(x)
        (grad,) = torch.autograd.grad(value, x)
        return value.detach(), grad
    raise NotImplementedError(f"Grad-CAM has no gradient for the {backend!r} backend")


# --------------------------------------------------------------------------- layer inspection

def feature_layer(model: Any) -> tuple[str, Any]:
    """Name and symbolic tensor of the last 4D feature map feeding the head of ``model``.

    Walks the top-level layers from the output backwards and takes the input of the first one
    whose input is a 4D map with spatial size > 1 (the global pooling layer of every member).
    """
    for layer in reversed(model.layers):
        tensor = getattr(layer, "input", None)
        if isinstance(tensor, (list, tuple)) or tensor is None:
            continue
        shape = tuple(tensor.shape)
        if len(shape) == 4 and (shape[1] or 2) > 1 and (shape[2] or 2) > 1:
            return layer.name, tensor
    raise ValueError(f"{model.name}: no 4D feature map found for Grad-CAM")


def _softmax_dense(model: Any) -> Any | None:
    """The final ``Dense`` layer when it applies a softmax (its logits can be rebuilt), else None."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and getattr(last.activation, "__name__", "") == "softmax":
        return last
    return None


# --------------------------------------------------------------------------- one member

class MemberCam:
    """Grad-CAM of one Keras classifier: trunk (input → feature map) and head (map → score)."""

    def __init__(self, model: Any):
        import keras

        self.model = model
        self.layer_name, features = feature_layer(model)
        self.trunk = keras.Model(model.inputs, features, name=f"{model.name}_cam_trunk")
        self.dense = _softmax_dense(model)
        head_out = self.dense.input if self.dense is not None else model.outputs[0]
        self.head = keras.Model(features, head_out, name=f"{model.name}_cam_head")
        self._compiled: Any = None
        self._lock = threading.Lock()

    def _score(self, features: Any, class_index: Any) -> Any:
        """Sum over the batch of the explained class's logit (``class_index`` may be a tensor)."""
        from keras import ops

        out = self.head(features, training=False)
        if self.dense is not None:
            logits = ops.matmul(out, self.dense.kernel) + self.dense.bias
        else:
            logp = ops.log(ops.clip(out, 1e-7, 1.0))
            logits = logp - ops.mean(logp, axis=-1, keepdims=True)
        return ops.sum(ops.take(logits, class_index, axis=1))

    def maps_and_grads(self, x: np.ndarray, class_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Feature map ``(h, w, c)`` and the score's gradient with respect to it, for one input."""
        import keras

        batch = np.asarray(x, np.float32).reshape(1, *x.shape[:2], -1)
        if keras.backend.backend() == "tensorflow":
            features, grads = self._tf_compiled()(batch, np.int32(class_index))
        else:
            features = self.trunk(batch, training=False)
            _, grads = value_and_grad(lambda f: self._score(f, class_index), features)
        return np.asarray(keras.ops.convert_to_numpy(features))[0], np.asarray(keras.ops.convert_to_numpy(grads))[0]

    def _tf_compiled(self) -> Callable:
        """On TensorFlow: trunk + tape in one traced ``tf.function`` (about 20x faster than eager)."""
        with self._lock:
            if self._compiled is None:
                import tensorflow as tf

                def run(x: Any, k: Any) -> tuple[Any, Any]:
                    features = self.trunk(x, training=False)
                    _, grads = value_and_grad(lambda f: self._score(f, k), features)
                    return features, grads

                self._compiled = tf.function(run, reduce_retracing=True)
            return self._compiled

    def heatmap(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """Grad-CAM ``(S, S)`` in [0, 1] on the member's input grid (all zeros if nothing supports the class)."""
        features, grads = self.maps_and_grads(x, class_index)
        weights = grads.mean(axis=(0, 1))
        cam = np.maximum((features * weights).sum(axis=-1), 0.0)
        top = float(cam.max())
        cam = cam / top if top > 1e-12 else np.zeros_like(cam)
        size = x.shape[0]
        return np.clip(cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


# --------------------------------------------------------------------------- geometry

# --------------------------------------------------------------------------- the ensemble

@dataclass
class Explanation:
    """Grad-CAM maps on the upload's grid: one per member plus ``"average"``; the class explained."""

    class_index: int
    maps: dict[str, np.ndarray]
    layers: dict[str, str]


class EnsembleCam:
    """Grad-CAM for the members of a :class:`core.slices.classify.Classifier` (built lazily, thread-safe)."""

    def __init__(self, members: list[Any]):
        self.members = members
        self._cams: dict[str, MemberCam] = {}
        self._lock = threading.Lock()

    def _cam(self, member: Any) -> MemberCam:
        with self._lock:
            if member.name not in self._cams:
                self._cams[member.name] = MemberCam(member.model)
            return self._cams[member.name]

    def explain(self, image: np.ndarray, class_index: int) -> Explanation:
        """Maps of every member for ``class_index`` and their mean (renormalised to [0, 1])."""
        unit = to_unit_range(np.asarray(image))
        box = brain_bbox(unit)
        maps, layers = {}, {}
        inputs: dict[tuple[int, str], np.ndarray] = {}
        for member in self.members:
            size = int(getattr(member, "input_size", 0) or member.card["input"]["size"])
            how = str(member.card["input"].get("normalisation", "unit"))
            if (size, how) not in inputs:
                inputs[(size, how)] = classifier_input(unit, size, how)
            cam = self._cam(member)
            maps[member.name] = to_image_grid(cam.heatmap(inputs[(size, how)], class_index), unit.shape, box)
            layers[member.name] = cam.layer_name
        if maps:
            mean = np.mean(np.stack(list(maps.values())), axis=0)
            top = float(mean.max())
            maps[AVERAGE] = mean / top if top > 1e-12 else mean
        return Explanation(class_index, maps, layers)
