"""Segmentation losses and metrics in ``keras.ops`` (backend-agnostic).

Tensors are channels-last: ``(N, ..., K)`` probabilities against one-hot or binary targets.
"""
from __future__ import annotations

import keras
from keras import ops

_EPS = 1e-6


def _spatial_axes(y) -> list[int]:
    return list(range(1, len(y.shape) - 1))


def soft_dice(y_true, y_pred, smooth: float = 1.0):
    """Per-image, per-channel soft Dice ``(N, K)``."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = _spatial_axes(y_pred)
    inter = ops.sum(y_true * y_pred, axis=axes)
    denom = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return (2.0 * inter + smooth) / (denom + smooth)


def dice_loss(y_true, y_pred):
    """1 - mean soft Dice over images and channels."""
    return 1.0 - ops.mean(soft_dice(y_true, y_pred))


def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy + soft Dice (the usual ResUNet objective)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return bce + dice_loss(y_true, y_pred)


def categorical_focal(y_true, y_pred, gamma: float = 2.0):
    """Mean categorical focal loss (Lin et al. 2017) for one-hot targets."""
    y_true = ops.cast(y_true, y_pred.dtype)
    p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
    return ops.mean(ops.sum(-y_true * ops.power(1.0 - p, gamma) * ops.log(p), axis=-1))


def dice_focal_loss(y_true, y_pred):
    """Soft Dice over the foreground channels (1..K-1) + focal loss, for multi-class masks."""
    y_true = ops.cast(y_true, y_pred.dtype)
    fg_dice = soft_dice(y_true[..., 1:], y_pred[..., 1:])
    return (1.0 - ops.mean(fg_dice)) + categorical_focal(y_true, y_pred)


def region_dice_bce_loss(y_true, y_pred):
    """Soft Dice per image and region channel + binary cross-entropy, for independent sigmoid
    channels (the nested BraTS regions WT, TC, ET; Isensee et al. 2021)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
    bce = -ops.mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    return bce + dice_loss(y_true, y_pred)


def binary_dice_metric(y_true, y_pred):
    """Mean per-image Dice of the mask thresholded at 0.5 (both empty count as 1)."""
    hard = ops.cast(y_pred > 0.5, y_pred.dtype)
    return ops.mean(soft_dice(y_true, hard, smooth=_EPS))


binary_dice_metric.__name__ = "dice"

CUSTOM_OBJECTS = {
    "soft_dice": soft_dice,
    "dice_loss": dice_loss,
    "bce_dice_loss": bce_dice_loss,
    "dice_focal_loss": dice_focal_loss,
    "region_dice_bce_loss": region_dice_bce_loss,
    "dice": binary_dice_metric,
}
