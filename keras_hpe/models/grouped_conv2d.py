"""GroupedConv2D: a grouped convolution on TensorFlow's native CPU kernel."""

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="keras_hpe")
class GroupedConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` whose grouped convolution runs on TensorFlow's native CPU kernel.

    Same arguments, weights and results as `Conv2D` (channels last). Keras
    compiles grouped convolutions with XLA on CPU, which made the 14 per-joint
    networks about 5x slower than TensorFlow's own (oneDNN) grouped kernel,
    forward and backward; this layer calls that kernel directly. It also marks
    itself `supports_jit = False`, so that `fit` / `predict` of a model holding
    it are not compiled with XLA by default (`jit_compile="auto"`), which on
    CPU was slower for these small convolutions too.

    Args:
        filters, kernel_size, strides, padding, groups, ...: as `keras.layers.Conv2D`.
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
        return tf.nn.convolution(
            inputs, kernel, strides=self.strides, padding=self.padding.upper(), dilations=self.dilation_rate
        )
