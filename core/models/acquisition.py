"""A small two-headed CNN that names the sequence and the plane of a slice (Keras 3, backend-agnostic).

Input: the classifier's crop ``(N, S, S, 1)`` in [0, 1] after head normalisation. Output: one
tensor ``(N, len(sequences) + len(planes))`` holding two softmaxes side by side (sequence
probabilities first), so the model exports and runs like any single-output network;
:func:`split_output` takes it apart and :func:`two_head_loss` trains it.
"""
from __future__ import annotations

import keras
from keras import layers, ops


def _block(x, filters: int, name: str):
    for k in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{k}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{k}")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _trunk(inputs, widths: tuple[int, ...]):
    """Strided stem, VGG-style blocks, global average and max pooling side by side, dropout."""
    x = layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for i, width in enumerate(widths):
        x = _block(x, width, f"block{i}")
    pooled = layers.Concatenate(name="pool")([layers.GlobalAveragePooling2D(name="gap")(x),
                                              layers.GlobalMaxPooling2D(name="gmp")(x)])
    return layers.Dropout(0.3, name="dropout")(pooled)


def probe_compact(input_size: int = 128, channels: int = 1, num_classes: int = 3,
                  widths: tuple[int, ...] = (16, 32, 64, 96)) -> keras.Model:
    """The same trunk with one softmax head (e.g. which source a slice came from)."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    out = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(_trunk(inputs, widths))
    return keras.Model(inputs, out, name="probe_compact")


def acquisition_compact(input_size: int = 128, channels: int = 1, n_sequences: int = 4, n_planes: int = 3,
                        widths: tuple[int, ...] = (16, 32, 64, 96)) -> keras.Model:
    """VGG-style blocks, global average and max pooling, two softmax heads concatenated."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    pooled = _trunk(inputs, widths)
    sequence = layers.Dense(n_sequences, activation="softmax", dtype="float32", name="sequence")(pooled)
    plane = layers.Dense(n_planes, activation="softmax", dtype="float32", name="plane")(pooled)
    return keras.Model(inputs, layers.Concatenate(name="probs", dtype="float32")([sequence, plane]),
                       name="acquisition_compact")


def split_output(probs, n_sequences: int = 4):
    """``(sequence_probs, plane_probs)`` of a concatenated output."""
    return probs[:, :n_sequences], probs[:, n_sequences:]


def two_head_loss(n_sequences: int = 4, smoothing: float = 0.05):
    """Cross-entropy of each head on one-hot targets laid out like the output, summed."""

    def loss(y_true, y_pred):
        total = 0.0
        for lo, hi in ((0, n_sequences), (n_sequences, None)):
            t = y_true[:, lo:hi]
            t = t * (1.0 - smoothing) + smoothing / ops.cast(ops.shape(t)[1], t.dtype)
            p = ops.clip(y_pred[:, lo:hi], 1e-7, 1.0)
            total = total - ops.sum(t * ops.log(p), axis=-1)
        return total

    return loss
