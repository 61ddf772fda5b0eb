"""The segmentation network's resolution-preserving ("shifted") max pooling."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_hpe")
class ShiftedMaxPooling(keras.layers.Layer):
    """Max pooling over overlapping windows, keeping the input's resolution.

    The paper pools "over overlapping regions produced by shifting the feature
    maps by a single pixel along one or another axis": the output at pixel
    (i, j) is the maximum of the input over the `pool_size` x `pool_size`
    window that starts at (i - (pool_size - 1) // 2, j - (pool_size - 1) // 2),
    i.e. the maximum over all one-pixel shifts of the map inside the window.
    That is max pooling with stride 1; pixels outside the map never win the
    maximum (they act as -inf), so the output has the input's shape (B, H, W, C).
    For the default `pool_size=2` the window is the pixel and its right, lower
    and lower-right neighbours.

    Args:
        pool_size: side of the square pooling window, in pixels (>= 1).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
        >>> x = keras.random.normal((2, 64, 64, 16))
        >>> ShiftedMaxPooling(pool_size=2)(x).shape
        (2, 64, 64, 16)

    Reference:
        Neverova, Wolf, Nebout, Taylor, "Hand Pose Estimation through Semi-Supervised
        and Weakly-Supervised Learning", CVIU 2017, section 4.
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        if int(pool_size) < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.pool_size = int(pool_size)

    def call(self, inputs):
        # "same" padding with stride 1 pads (k-1)//2 before and the rest after,
        # ignoring padded pixels in the max: exactly the shifted-window maximum.
        return keras.ops.max_pool(
            inputs, pool_size=self.pool_size, strides=1, padding="same", data_format="channels_last"
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"pool_size": self.pool_size})
        return config
