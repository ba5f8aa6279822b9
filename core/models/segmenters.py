"""Backend-agnostic Keras 3 segmenters: U-Net, ResUNet, Attention U-Net (2D) and a 3D U-Net.

All 2D builders map ``(N, H, W, C)`` images scaled to [0, 1] to per-pixel probabilities
``(N, H, W, K)``: a sigmoid for one foreground class (``K == 1``), a softmax otherwise. The
3D U-Net does the same on ``(N, D, H, W, C)`` volumes. ``base`` sets the first level's
filters (doubled per level) and ``depth`` the number of down-sampling steps.
"""
from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from core.models.blocks import projection_shortcut

SegBuilder = Callable[..., keras.Model]


def _conv_block(x, filters: int, name: str, conv=layers.Conv2D):
    for i in (1, 2):
        x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _res_block(x, filters: int, strides: int, name: str):
    """Pre-activation residual unit (Zhang et al., ResUNet 2018)."""
    y = layers.BatchNormalization(name=f"{name}_bn1")(x)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    shortcut = projection_shortcut(x, filters, strides, name=f"{name}_proj")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _encoder(inputs, base: int, depth: int, conv=layers.Conv2D, pool=layers.MaxPooling2D):
    """U-Net contracting path: ``depth`` conv blocks (``enc<level>``, filters doubled per level), each
    followed by 2x max-pooling (``pool<level>``), then the ``bridge`` block. Returns ``(bridge, skips)``."""
    skips, x = [], inputs
    for level in range(depth):
        x = _conv_block(x, base * 2**level, name=f"enc{level}", conv=conv)
        skips.append(x)
        x = pool(2, name=f"pool{level}")(x)
    return _conv_block(x, base * 2**depth, name="bridge", conv=conv), skips


def _decoder(x, skips: list, base: int, conv=layers.Conv2D, up=layers.Conv2DTranspose):
    """U-Net expanding path: 2x transposed convolution (``up<level>``), concatenation with the skip
    (``cat<level>``) and a conv block (``dec<level>``) per level, deepest first."""
    for level in reversed(range(len(skips))):
        x = up(base * 2**level, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = _conv_block(x, base * 2**level, name=f"dec{level}", conv=conv)
    return x


def _attention_gate(skip, gating, filters: int, name: str):
    """Additive attention gate (Oktay et al. 2018): weights the skip features by relevance."""
    theta = layers.Conv2D(filters, 1, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(filters, 1, name=f"{name}_phi")(gating)
    act = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    psi = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_psi")(act)
    return layers.Multiply(name=f"{name}_gate")([skip, psi])


def _output(x, num_classes: int, conv=layers.Conv2D, activation: str | None = None):
    """1x1 convolution to ``num_classes`` channels: ``activation``, or by default a sigmoid for one
    class and a softmax over several (``"sigmoid"`` with several: independent, possibly nested masks)."""
    activation = activation or ("sigmoid" if num_classes == 1 else "softmax")
    return conv(num_classes, 1, activation=activation, dtype="float32", name="mask")(x)


def unet(input_size: int | None = 256, channels: int = 1, num_classes: int = 1, base: int = 16, depth: int = 4,
         activation: str | None = None) -> keras.Model:
    """Classic U-Net (Ronneberger 2015) with batch normalisation."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x, skips = _encoder(inputs, base, depth)
    x = _decoder(x, skips, base)
    return keras.Model(inputs, _output(x, num_classes, activation=activation), name="unet")


def attention_unet(input_size: int = 256, channels: int = 1, num_classes: int = 1, base: int = 16,
                   depth: int = 4) -> keras.Model:
    """U-Net whose skip connections pass through additive attention gates."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x, skips = _encoder(inputs, base, depth)
    for level in reversed(range(depth)):
        filters = base * 2**level
        up = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}")(x)
        gated = _attention_gate(skips[level], up, max(1, filters // 2), name=f"att{level}")
        x = _conv_block(layers.Concatenate(name=f"cat{level}")([up, gated]), filters, name=f"dec{level}")
    return keras.Model(inputs, _output(x, num_classes), name="attention_unet")


def resunet(input_size: int = 256, channels: int = 1, num_classes: int = 1, base: int = 16, depth: int = 4) -> keras.Model:
    """ResUNet (Zhang, Liu & Wang 2018): residual units in encoder, bridge and decoder."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = layers.Conv2D(base, 3, padding="same", use_bias=False, name="stem_conv1")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.Conv2D(base, 3, padding="same", use_bias=False, name="stem_conv2")(x)
    stem_short = layers.Conv2D(base, 1, use_bias=False, name="stem_proj")(inputs)
    x = layers.Add(name="stem_add")([x, stem_short])
    skips = [x]
    for level in range(1, depth):
        x = _res_block(x, base * 2**level, 2, name=f"enc{level}")
        skips.append(x)
    x = _res_block(x, base * 2**depth, 2, name="bridge")
    for level in reversed(range(depth)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = _res_block(x, base * 2**level, 1, name=f"dec{level}")
    return keras.Model(inputs, _output(x, num_classes), name="resunet")


def unet3d(input_size: int | None = 128, channels: int = 4, num_classes: int = 4, base: int = 8,
           depth: int = 3, activation: str | None = None) -> keras.Model:
    """3D U-Net (Çiçek et al. 2016) for ``(D, H, W, C)`` volumes; softmax over ``num_classes``
    (``activation="sigmoid"``: one independent sigmoid per channel, e.g. the BraTS regions).

    Two 3x3x3 convolutions with batch normalisation and ReLU per level, max-pooling down and
    2x2x2 transposed convolutions up. ``input_size=None`` accepts any ``D, H, W`` that are
    multiples of ``2**depth`` (sliding-window inference runs such windows).
    """
    if input_size is not None and input_size % 2**depth:
        raise ValueError(f"input_size {input_size} is not a multiple of 2**depth = {2**depth}")
    inputs = keras.Input((input_size, input_size, input_size, channels), name="volume")
    x, skips = _encoder(inputs, base, depth, conv=layers.Conv3D, pool=layers.MaxPooling3D)
    x = _decoder(x, skips, base, conv=layers.Conv3D, up=layers.Conv3DTranspose)
    return keras.Model(inputs, _output(x, num_classes, conv=layers.Conv3D, activation=activation), name="unet3d")


SEGMENTER_BUILDERS: dict[str, SegBuilder] = {
    "unet": unet,
    "attention_unet": attention_unet,
    "resunet": resunet,
    "unet3d": unet3d,
}


def build_segmenter(name: str, **kwargs) -> keras.Model:
    """Build a segmenter by registry name with builder keyword arguments."""
    try:
        builder = SEGMENTER_BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown segmenter {name!r}; known: {sorted(SEGMENTER_BUILDERS)}") from None
    return builder(**kwargs)
