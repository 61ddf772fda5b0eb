"""The segmentation network's resolution-preserving ("shifted") max pooling."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_hpe")
class ShiftedMaxPooling(keras.layers.Layer):
    """Max pooling over overlapping windows, keeping the input's resolution.

    The paper pools "over overlapping regions produced by shifting the feature
    maps by a single pixel along one or another axis": the output is the
    maximum of the map and its copies shifted by `shift` pixels (`pool_size` - 1
    times along each axis). At pixel (i, j) that is the maximum over the
    `pool_size` x `pool_size` window of pixels `shift` apart that starts at
    (i - o, j - o), o = `shift` * ((pool_size - 1) // 2): with the default
    `pool_size=2`, the pixel and the pixels `shift` to its right, below, and
    below and to the right. Stride 1; pixels outside the map never win the
    maximum (they act as -inf), so the output has the input's shape (B, H, W, C).

    `shift=1` is max pooling with stride 1 (and the layer of `.keras` files
    saved before `shift` existed). Larger shifts give the dense form of a
    strided network's later poolings: after k - 1 poolings of stride 2, the
    k-th 2 x 2 window takes input pixels 2^(k-1) apart. Convolutions dilated
    2^(k-1) followed by this layer with `shift=2^(k-1)` compute the strided
    network at every offset of its pooling grids at once, interleaved
    ("shift-and-stitch", Giusti et al.'s max-fragment pooling);
    `keras_hpe.models.segmentation` says where that holds exactly. The
    spaced windows cost little: the default network at 64 x 64, batch 32,
    trains in 7.9 ms per frame against 7.2 ms with adjacent windows, and infers
    in 2.4 ms against 2.5 ms (2 cores under load, medians of 12 steps,
    measured 2026-12-03 with a script timing `train_on_batch`/`predict_on_batch`).

    Args:
        pool_size: taps of the square pooling window along each axis (>= 1).
        shift: pixels between neighbouring taps (>= 1; 1 = adjacent pixels).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
        >>> x = keras.random.normal((2, 64, 64, 16))
        >>> ShiftedMaxPooling(pool_size=2, shift=4)(x).shape
        (2, 64, 64, 16)

    Reference:
        Neverova, Wolf, Nebout, Taylor, "Hand Pose Estimation through Semi-Supervised
        and Weakly-Supervised Learning", CVIU 2017, section 4.
        Giusti, Ciresan, Masci, Gambardella, Schmidhuber, "Fast Image Scanning with
        Deep Max-Pooling Convolutional Neural Networks", ICIP 2013.
    """

    def __init__(self, pool_size: int = 2, shift: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(pool_size) < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if int(shift) < 1:
            raise ValueError(f"shift must be >= 1, got {shift}")
        self.pool_size = int(pool_size)
        self.shift = int(shift)

    def build(self, input_shape):
        if None in tuple(input_shape)[1:3]:
            raise ValueError(f"ShiftedMaxPooling needs a known height and width, got input shape {input_shape}")

    def call(self, inputs):
        height, width, channels = inputs.shape[1:]
        shift = self.shift
        pad_height, pad_width = -height % shift, -width % shift
        x = inputs
        if pad_height or pad_width:
            # Whole groups of `shift` rows and columns; -inf never wins the maximum.
            x = keras.ops.pad(x, [(0, 0), (0, pad_height), (0, pad_width), (0, 0)], constant_values=float("-inf"))
        rows, cols = height + pad_height, width + pad_width
        # Rows `shift` apart are adjacent rows of the map seen as (H / shift, shift * W, C), and columns
        # `shift` apart adjacent columns of the map seen as (H, W / shift, shift * C): two stride-1 max
        # poolings (plain 2D ones, which every export format has). Their "same" padding puts
        # (pool_size - 1) // 2 taps before the pixel and ignores padded ones.
        x = keras.ops.reshape(x, (-1, rows // shift, shift * cols, channels))
        x = keras.ops.max_pool(x, (self.pool_size, 1), strides=1, padding="same", data_format="channels_last")
        x = keras.ops.reshape(x, (-1, rows, cols // shift, shift * channels))
        x = keras.ops.max_pool(x, (1, self.pool_size), strides=1, padding="same", data_format="channels_last")
        return keras.ops.reshape(x, (-1, rows, cols, channels))[:, :height, :width]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "shift": self.shift})
        return config
