"""Backend-agnostic Keras 3 classifiers: compact ensemble members and the original backbones.

Every builder takes ``(input_size, channels, num_classes)`` and returns an uncompiled
``keras.Model`` mapping an image batch ``(N, S, S, C)`` scaled to [0, 1] to class
probabilities ``(N, num_classes)``. Only ``keras.layers``/``keras.ops`` are used, so the same
definition trains on JAX (GPU) and runs on TensorFlow (CPU).

The four compact members stand for four architecture families, so their errors differ
and a stacking meta-learner has something to combine:

* ``resnet_compact``   residual (basic blocks, ResNet-18 layout at reduced width)
* ``mobilenet_compact`` depthwise-separable (``keras.applications.MobileNetV2``)
* ``densenet_compact`` densely connected (DenseNet-BC blocks with transitions)
* ``efficientnet_compact`` compound-scaled (MBConv + squeeze-excitation, EfficientNet rules)

The original backbones (``xception``, ``inceptionv3``...) wrap ``keras.applications`` with
``weights=None``: no pretrained weights are available offline, so they train from scratch.
"""
from __future__ import annotations

import math
from typing import Callable

import keras
from keras import layers

from core.models.blocks import projection_shortcut

Builder = Callable[[int, int, int], keras.Model]


def _conv_bn_act(x, filters: int, kernel: int = 3, strides: int = 1, act: str = "relu", name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation(act, name=f"{name}_{act}")(x) if act else x


def _head(x, num_classes: int, dropout: float, name: str):
    x = layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=f"{name}_probs")(x)


# --------------------------------------------------------------------------- residual
def _basic_block(x, filters: int, strides: int, name: str):
    shortcut = x
    y = _conv_bn_act(x, filters, 3, strides, name=f"{name}_a")
    y = _conv_bn_act(y, filters, 3, 1, act="", name=f"{name}_b")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = projection_shortcut(x, filters, strides, name=f"{name}_proj")
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet_compact(input_size: int = 128, channels: int = 1, num_classes: int = 4,
                   widths: tuple[int, ...] = (24, 48, 96, 192), blocks: int = 2) -> keras.Model:
    """ResNet-18 layout (basic residual blocks) at reduced width."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = _conv_bn_act(inputs, widths[0], 3, 2, name="stem")
    for s, width in enumerate(widths):
        for b in range(blocks):
            x = _basic_block(x, width, 2 if (b == 0 and s > 0) else 1, name=f"res{s}_{b}")
    return keras.Model(inputs, _head(x, num_classes, 0.3, "resnet"), name="resnet_compact")


# --------------------------------------------------------------------------- depthwise
def mobilenet_compact(input_size: int = 128, channels: int = 1, num_classes: int = 4,
                      alpha: float = 0.5) -> keras.Model:
    """``keras.applications.MobileNetV2`` (inverted residuals, depthwise-separable convs)."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(inputs)  # MobileNetV2 expects [-1, 1]
    base = keras.applications.MobileNetV2(input_shape=(input_size, input_size, channels), alpha=alpha,
                                          include_top=False, weights=None)
    x = base(x)
    return keras.Model(inputs, _head(x, num_classes, 0.3, "mobilenet"), name="mobilenet_compact")


# --------------------------------------------------------------------------- dense
def _dense_block(x, layers_count: int, growth: int, name: str):
    for i in range(layers_count):
        y = layers.BatchNormalization(name=f"{name}_{i}_bn1")(x)
        y = layers.Activation("relu", name=f"{name}_{i}_relu1")(y)
        y = layers.Conv2D(4 * growth, 1, use_bias=False, name=f"{name}_{i}_conv1")(y)
        y = layers.BatchNormalization(name=f"{name}_{i}_bn2")(y)
        y = layers.Activation("relu", name=f"{name}_{i}_relu2")(y)
        y = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{name}_{i}_conv2")(y)
        x = layers.Concatenate(name=f"{name}_{i}_concat")([x, y])
    return x


def _transition(x, reduction: float, name: str):
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


def densenet_compact(input_size: int = 128, channels: int = 1, num_classes: int = 4,
                     blocks: tuple[int, ...] = (4, 6, 8, 6), growth: int = 16) -> keras.Model:
    """DenseNet-BC: bottleneck dense blocks, compression 0.5 transitions."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = _conv_bn_act(inputs, 2 * growth, 3, 2, name="stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for i, count in enumerate(blocks):
        x = _dense_block(x, count, growth, name=f"dense{i}")
        if i < len(blocks) - 1:
            x = _transition(x, 0.5, name=f"trans{i}")
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    return keras.Model(inputs, _head(x, num_classes, 0.3, "densenet"), name="densenet_compact")


# --------------------------------------------------------------------------- compound-scaled
#: EfficientNet-B0 stages: (expand ratio, kernel, strides, output filters, repeats).
_B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters else int(new)


def _mbconv(x, expand: int, kernel: int, strides: int, filters: int, name: str):
    in_filters = x.shape[-1]
    y = x
    if expand != 1:
        y = _conv_bn_act(y, in_filters * expand, 1, 1, act="swish", name=f"{name}_expand")
    y = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = layers.Activation("swish", name=f"{name}_dw_swish")(y)
    squeeze = max(1, int(in_filters * 0.25))
    se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(y)
    se = layers.Conv2D(squeeze, 1, activation="swish", name=f"{name}_se_reduce")(se)
    se = layers.Conv2D(y.shape[-1], 1, activation="sigmoid", name=f"{name}_se_expand")(se)
    y = layers.Multiply(name=f"{name}_se_scale")([y, se])
    y = _conv_bn_act(y, filters, 1, 1, act="", name=f"{name}_project")
    if strides == 1 and in_filters == filters:
        y = layers.Add(name=f"{name}_add")([y, x])
    return y


def efficientnet_compact(input_size: int = 128, channels: int = 1, num_classes: int = 4,
                         width: float = 0.5, depth: float = 0.5) -> keras.Model:
    """EfficientNet-B0 stage layout, compound-scaled down by ``width`` and ``depth`` multipliers."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = _conv_bn_act(inputs, _round_filters(32, width), 3, 2, act="swish", name="stem")
    for s, (expand, kernel, strides, filters, repeats) in enumerate(_B0_STAGES):
        out = _round_filters(filters, width)
        for r in range(max(1, math.ceil(repeats * depth))):
            x = _mbconv(x, expand, kernel, strides if r == 0 else 1, out, name=f"mb{s}_{r}")
    x = _conv_bn_act(x, _round_filters(1280, width), 1, 1, act="swish", name="top")
    return keras.Model(inputs, _head(x, num_classes, 0.3, "efficientnet"), name="efficientnet_compact")


# --------------------------------------------------------------------------- original backbones
def _applications_backbone(constructor: Callable[..., keras.Model], min_size: int, scale: tuple[float, float]):
    """Wrap a ``keras.applications`` constructor (3-channel, ``weights=None``) as a builder."""

    def build(input_size: int = 224, channels: int = 1, num_classes: int = 4) -> keras.Model:
        if input_size < min_size:
            raise ValueError(f"{constructor.__name__} needs inputs of at least {min_size} px")
        inputs = keras.Input((input_size, input_size, channels), name="image")
        x = layers.Rescaling(scale[0], offset=scale[1], name="rescale")(inputs)
        if channels == 1:
            x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
        base = constructor(input_shape=(input_size, input_size, 3), include_top=False, weights=None)
        x = base(x)
        return keras.Model(inputs, _head(x, num_classes, 0.3, constructor.__name__.lower()),
                           name=constructor.__name__.lower())

    return build


MEMBER_BUILDERS: dict[str, Builder] = {
    "resnet_compact": resnet_compact,
    "mobilenet_compact": mobilenet_compact,
    "densenet_compact": densenet_compact,
    "efficientnet_compact": efficientnet_compact,
}

ORIGINAL_BUILDERS: dict[str, Builder] = {
    "xception": _applications_backbone(keras.applications.Xception, 71, (2.0, -1.0)),
    "inceptionv3": _applications_backbone(keras.applications.InceptionV3, 75, (2.0, -1.0)),
    "resnet50": _applications_backbone(keras.applications.ResNet50, 32, (255.0, 0.0)),
    "vgg19": _applications_backbone(keras.applications.VGG19, 32, (255.0, 0.0)),
    "densenet121": _applications_backbone(keras.applications.DenseNet121, 32, (1.0, 0.0)),
    "efficientnetb0": _applications_backbone(keras.applications.EfficientNetB0, 32, (255.0, 0.0)),
    "resnet50v2": _applications_backbone(keras.applications.ResNet50V2, 32, (2.0, -1.0)),
}

CLASSIFIER_BUILDERS: dict[str, Builder] = {**MEMBER_BUILDERS, **ORIGINAL_BUILDERS}


def build_classifier(name: str, input_size: int, channels: int = 1, num_classes: int = 4) -> keras.Model:
    """Build a classifier by registry name; raises ``KeyError`` listing the known names."""
    try:
        builder = CLASSIFIER_BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown classifier {name!r}; known: {sorted(CLASSIFIER_BUILDERS)}") from None
    return builder(input_size, channels, num_classes)
