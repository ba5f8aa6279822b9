"""Layer blocks shared by the classifiers and segmenters (Keras 3, backend-agnostic)."""
from __future__ import annotations

from keras import layers


def projection_shortcut(x, filters: int, strides: int, name: str, pool=layers.AveragePooling2D,
                        conv=layers.Conv2D):
    """Residual shortcut that changes width and resolution: average-pool, then a 1x1 conv + BN.

    This is the "ResNet-D" shortcut (He et al. 2019): unlike a strided 1x1 convolution it does
    not discard three pixels in four, and it avoids a oneDNN fault seen on TensorFlow's CPU build
    with strided 1x1 convolutions of narrow tensors.
    """
    if strides > 1:
        x = pool(strides, name=f"{name}_pool")(x)
    x = conv(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.BatchNormalization(name=f"{name}_bn")(x)
