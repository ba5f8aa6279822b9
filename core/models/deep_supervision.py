"""Deep supervision (nnU-Net style) for the 2D segmenters of :mod:`core.models.segmenters`.

:func:`with_deep_supervision` wraps a built network in a *training* model that also predicts the
mask from the outputs of coarser decoder levels (a 1x1 sigmoid convolution, upsampled bilinearly
back to the input's size), so the loss reaches the deep layers directly. The wrapped network's
layers are shared, not copied: after training, the original network alone is the inference
model (its weights list is unchanged; the auxiliary heads are dropped).
"""
from __future__ import annotations

import keras
from keras import layers

#: Weight of each output in the loss: the full-resolution mask first, then each coarser level
#: half the weight of the one above it (normalised to sum to 1 by :func:`output_weights`).
HALVING = 0.5


def decoder_output(model: keras.Model, level: int):
    """The output tensor of decoder level ``level`` (its layers are named ``dec<level>_*``)."""
    named = [layer for layer in model.layers if layer.name.startswith(f"dec{level}_")]
    if not named:
        raise ValueError(f"{model.name} has no decoder level {level} (no layer named dec{level}_*)")
    return named[-1].output


def with_deep_supervision(model: keras.Model, levels: int = 2) -> keras.Model:
    """A training model whose outputs are ``[model's mask, level-1 mask, ..., level-``levels`` mask]``,
    each ``(N, H, W, K)`` at the input's size; ``levels=0`` returns ``model`` itself."""
    if levels <= 0:
        return model
    channels = model.output.shape[-1]
    activation = "sigmoid" if channels == 1 else "softmax"
    outputs = [model.output]
    for level in range(1, levels + 1):
        x = layers.Conv2D(channels, 1, activation=activation, dtype="float32", name=f"aux{level}_mask")(
            decoder_output(model, level))
        outputs.append(layers.UpSampling2D(2**level, interpolation="bilinear", dtype="float32",
                                           name=f"aux{level}_up")(x))
    return keras.Model(model.inputs, outputs, name=f"{model.name}_deep_supervision")


def output_weights(levels: int) -> list[float]:
    """Loss weights of the ``levels + 1`` outputs: 1, 1/2, 1/4, ... normalised to sum to 1."""
    raw = [HALVING**i for i in range(levels + 1)]
    return [w / sum(raw) for w in raw]
