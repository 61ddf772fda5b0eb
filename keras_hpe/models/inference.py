"""Inference copies of trained networks: what `HandPoseEstimator` runs, faster on a CPU, the same joints.

A copy holds the network's weights and differs only where inference does not
need what training does:

- per-image normalisation saved as Keras' `GroupNormalization(groups=-1)`
  (every segmentation model saved before `InstanceNormalization` existed)
  becomes `InstanceNormalization`: the same config, weights and results,
  which TensorFlow's oneDNN rewrite fuses with the ReLU after it;
- a softmax output layer gives its logits: the estimator needs only the
  argmax, which the softmax does not change;
- precision "bfloat16": the convolutions with a spatial kernel over feature
  maps (the segmentation network's conv2 and conv3, 83% of its
  multiply-adds) compute in bfloat16, float32 weights rounded as they are
  read; every other layer stays float32.

The quick preset's full method (`runs/quick/reg_full`, seg_weak) on its
1,000 real test frames, 2 cores with nothing else running, medians of 5
interleaved rounds of each path (`benchmarks/inference_benchmark.py --reg
runs/quick/reg_full/reg_full.keras --data runs/quick/real_test/data --seconds 5`):

| path | ms per hand, batch 1 | hands/s, batch 64 | mean 3D error | joints vs reference, mean / max |
|---|---|---|---|---|
| reference: the trained networks, variables | 6.04 | 292 | 30.448 mm | 0 / 0 mm |
| frozen: the trained networks, constants | 5.11 | 324 | 30.448 mm | 0.0000 / 0.0002 mm |
| float32: inference copies, frozen (default) | 4.65 | 378 | 30.448 mm | 0.0000 / 0.0002 mm |
| bfloat16 | 4.40 | 486 | 30.452 mm | 0.31 / 37 mm |

Under load from another process (load average 3.4) the same paths gave 6.65, 6.23, 5.07 and 4.59 ms
per hand, and 159, 158, 201 and 263 hands/s. bfloat16 is faster (`--profile`:
its segmentation network took 133 ms for 64 hands, float32's 216 ms) and
leaves the mean 3D error where it is, but it flips 0.06% of the part labels,
and a flipped label moves the joints whose mask it changes: 0.31 mm on
average, over the 0.1 mm within which the joints count as the same. So
float32 is the default and bfloat16 is asked for
(`InferenceOptions(precision="bfloat16")`, `keras-hpe predict --precision`).
"""

from __future__ import annotations

import keras

from keras_hpe.errors import UserError
from keras_hpe.models.cloning import clone_with
from keras_hpe.models.grouped_conv2d import GroupedConv2D
from keras_hpe.models.instance_normalization import InstanceNormalization
from keras_hpe.models.shifted_max_pooling import ShiftedMaxPooling

PRECISIONS = ("float32", "bfloat16")


def check_inference_precision(precision: str) -> str:
    """`precision`, or UserError unless it is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise UserError(f"inference precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def inference_copy(model: keras.Model, precision: str = "float32") -> keras.Model:
    """A copy of the trained network `model` for inference (see the module docstring); its weights, its names."""
    check_inference_precision(precision)

    def edit(layer: keras.Operation, config: dict) -> tuple[type, dict]:
        cls = type(layer)
        if cls is keras.layers.GroupNormalization and layer.groups == layer.input.shape[-1]:
            cls = InstanceNormalization
        if cls is keras.layers.Conv2D:
            cls = GroupedConv2D
        if isinstance(layer, keras.layers.Conv2D) and config.get("activation") == "softmax":
            config["activation"] = "linear"
        if precision == "bfloat16" and (_spatial_feature_convolution(layer) or _pools_bfloat16(layer)):
            config["dtype"] = "mixed_bfloat16"
        return cls, config

    return clone_with(model, edit)


def _spatial_feature_convolution(layer: keras.Operation) -> bool:
    """A 2D convolution with a kernel larger than 1 x 1 over more than one input channel, ungrouped."""
    return (
        isinstance(layer, keras.layers.Conv2D)
        and max(layer.kernel_size) > 1
        and layer.input.shape[-1] > 1
        and layer.groups == 1
    )


def _pools_bfloat16(layer: keras.Operation) -> bool:
    """Shifted max pooling of a bfloat16 convolution's output: the maximum of bfloat16 values is exact in bfloat16."""
    return isinstance(layer, ShiftedMaxPooling) and _spatial_feature_convolution(layer.input._keras_history.operation)
