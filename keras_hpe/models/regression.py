"""The regression network (stage 3): depth + segmentation -> 14 joints, and its direct baseline.

Figure 4 / Table 1 of the paper, read top to bottom:

    depth (S, S, 1) -> c1 conv + pooling p1 -> features (S/c1_pool)^2 x c1_filters
    for each joint: [features, features masked by the joint's opened part mask]
        -> Inception module: c211 1x1 -> c212 3x3 | c221 1x1 -> c222 5x5
                             | p231 3x3 max pool -> c232 1x1 | c241 1x1
        -> conv 3x3 with stride conv_stride -> fc -> xyz of that joint

Every conv and fc layer is followed by batch normalisation and ReLU. Joints
are regressed in crop units: relative to the crop centre, divided by the
half-cube (`crop.joints_to_crop`; `crop.crop_to_joints` converts back to mm).
Variants: "separate" (the paper's best: every joint has its own Inception,
conv and fc weights) and "shared" (one head applied to each joint's input).

The 14 separate networks are computed as one network with grouped layers:
joint j owns the j-th block of channels of every conv (`groups=14`), BN and
fc (`EinsumDense` with a joint axis), so no weight and no activation crosses
joints, exactly as 14 networks, but in 14x fewer operations: on CPU the
per-operation cost of 14 small networks, not their arithmetic, dominated.
`build_direct_regression` is baseline (a): depth only, no masks, one head for
all joints, widened by `direct_width` for a comparable capacity; the cascade
(b) reuses it on a tighter crop (another `input_size`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

import keras
import tensorflow as tf
from keras import layers, ops

from keras_hpe.data.skeleton import JOINT_PARTS, NUM_JOINTS, NUM_PARTS
from keras_hpe.errors import UserError
from keras_hpe.models.grouped_conv2d import GroupedConv2D
from keras_hpe.models.morphology import check_structuring_size
from keras_hpe.models.part_mask_focus import PartMaskFocus

Variant = Literal["separate", "shared"]
VARIANTS = ("separate", "shared")


@dataclass(frozen=True)
class RegressionConfig:
    """Sizes of the regression network (Table 1's numbers were lost: these defaults are ours, sized for CPU).

    Attributes:
        input_size: crop side S in pixels; a multiple of c1_pool * conv_stride.
        num_parts: segmentation channels (hand parts, not hand excluded).
        joint_parts: per joint, the part ids (1..num_parts) whose mask focuses it.
        c1_filters, c1_kernel: the first convolution, on the depth crop.
        c1_pool: max pooling p1 after c1; the masks are reduced to this grid.
        opening_size: odd side of the square structuring element of the
            morphological opening of each joint's mask, in input pixels; 1 = no
            opening (ours). The paper opens the masks (its size was lost), but in
            a 64 px crop a fingertip's part is 1-2 px wide: a 3 x 3 opening
            empties the fingertip joints' masks in 38-86% of frames even for the
            true labels (20-42% for the finger mid joints). Measured with
            `benchmarks/regression_ablation_benchmark.py` (2,000 labelled sensor
            training frames, a quick run's 1,000 test frames; direct regression
            31.84 mm): regression from the true labels 28.65 mm with the 3 x 3
            opening, 23.81 mm without; from the stage-1 network's labels
            32.30 mm and 31.31 mm.
        inception_reduce: filters of the 1x1 convs before the 3x3 and 5x5 branches.
        inception_filters: filters of each of the four Inception branches' outputs.
        conv_filters: the 3x3 conv after the Inception module.
        conv_stride: its stride (downsampling there is 4x cheaper than a
            stride-1 conv followed by pooling, and the 14 heads dominate the cost).
        fc_units: hidden fully connected layer before the xyz output.
        direct_width: width multiplier of the direct baseline's single head
            (Inception, conv, fc), so that it is about as large as the 14
            per-joint heads together.
    """

    input_size: int = 64
    num_parts: int = NUM_PARTS
    joint_parts: tuple[tuple[int, ...], ...] = JOINT_PARTS
    c1_filters: int = 16
    c1_kernel: int = 5
    c1_pool: int = 4
    opening_size: int = 1
    inception_reduce: int = 8
    inception_filters: int = 8
    conv_filters: int = 16
    conv_stride: int = 2
    fc_units: int = 64
    direct_width: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "joint_parts", tuple(tuple(int(p) for p in parts) for parts in self.joint_parts))
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name != "joint_parts" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"RegressionConfig.{field.name} must be an integer >= 1, got {value!r}")
        stride = self.c1_pool * self.conv_stride
        if self.input_size % stride:
            raise UserError(
                f"RegressionConfig.input_size={self.input_size} must be divisible by "
                f"c1_pool * conv_stride = {self.c1_pool} * {self.conv_stride} = {stride}"
            )
        check_structuring_size(self.opening_size, "RegressionConfig.opening_size")
        if len(self.joint_parts) != NUM_JOINTS:
            raise UserError(f"RegressionConfig.joint_parts must list {NUM_JOINTS} joints, got {len(self.joint_parts)}")
        bad = sorted({p for parts in self.joint_parts for p in parts if not 1 <= p <= self.num_parts})
        if bad or any(not parts for parts in self.joint_parts):
            found = bad or "a joint without parts"
            raise UserError(
                f"RegressionConfig.joint_parts must give each joint part ids in 1..{self.num_parts}, got {found}"
            )

    def to_dict(self) -> dict:
        """JSON-ready dict (for manifests)."""
        values = asdict(self)
        values["joint_parts"] = [list(parts) for parts in self.joint_parts]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RegressionConfig":
        """Inverse of `to_dict`; unknown keys raise UserError."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"RegressionConfig has no field(s) {sorted(unknown)}")
        return cls(**values)


def build_regression(config: RegressionConfig = RegressionConfig(), variant: Variant = "separate") -> keras.Model:
    """The segmentation-focused regression network: {"depth", "segmentation"} -> "joints" (B, 14, 3).

    `depth` is the normalised crop (S, S, 1) in [-1, 1] (missing depth = +1);
    `segmentation` is (S, S, num_parts), one channel per hand part, one-hot
    (`part_channels`) or part probabilities (the segmentation network's
    channels 1..20: its channel 0, not hand, has no mask).
    """
    if variant not in VARIANTS:
        raise UserError(f"regression variant must be one of {VARIANTS}, got {variant!r}")
    size = config.input_size
    depth = keras.Input((size, size, 1), name="depth")
    segmentation = keras.Input((size, size, config.num_parts), name="segmentation")
    features = _c1(depth, config)
    # The segmentation net labels every pixel; only hand pixels (depth < +1) may enter a mask.
    hand = ops.cast(ops.less(depth, 1.0), segmentation.dtype)
    focused = PartMaskFocus(config.joint_parts, config.opening_size, name="part_mask_focus")(
        [features, segmentation * hand]
    )
    # Per joint: [unmasked features, masked features], (B, h, w, J, 2C).
    tiled = ops.repeat(ops.expand_dims(features, 3), NUM_JOINTS, axis=3)
    x = layers.Concatenate(name="focus")([tiled, focused])
    cells, channels = x.shape[1], x.shape[-1]
    if variant == "separate":
        x = layers.Reshape((cells, cells, NUM_JOINTS * channels), name="joint_channels")(x)
        joints = _heads(x, config, NUM_JOINTS, outputs=3, width=1)
    else:
        # Fold the joints into the batch: one shared head, one call, batch norm over all joints.
        x = layers.Permute((3, 1, 2, 4), name="joint_batch")(x)
        x = ops.reshape(x, (-1, cells, cells, channels))
        joints = ops.reshape(_heads(x, config, 1, outputs=3, width=1), (-1, NUM_JOINTS, 3))
    joints = layers.Reshape((NUM_JOINTS, 3), name="joints")(joints)
    return keras.Model([depth, segmentation], joints, name=f"regression_{variant}")


def part_channels(labels) -> tf.Tensor:
    """Label maps (..., S, S) of part ids 0..20 -> the regression input (..., S, S, 20) float32.

    Part p is channel p - 1; not hand (0) is an all-zero row, so the arm
    enters no joint's mask. The one-hot is over all 21 labels with channel 0
    dropped, not `tf.one_hot(labels - 1, 20)`: ONNX counts a negative index
    from the end, so the converted graph put the arm into part 20's mask
    (joint 0 moved by up to 125 mm on a trained model).
    """
    return tf.one_hot(tf.cast(labels, tf.int32), NUM_PARTS + 1)[..., 1:]


def build_direct_regression(config: RegressionConfig = RegressionConfig()) -> keras.Model:
    """Baseline (a): "depth" (S, S, 1) -> "joints" (B, 14, 3), same c1 + Inception trunk, no segmentation.

    One head regresses all joints; for the cascade's second step pass a config
    with the tighter crop's `input_size`.
    """
    depth = keras.Input((config.input_size, config.input_size, 1), name="depth")
    xyz = _heads(_c1(depth, config), config, 1, outputs=NUM_JOINTS * 3, width=config.direct_width)
    joints = layers.Reshape((NUM_JOINTS, 3), name="joints")(xyz)
    return keras.Model(depth, joints, name="regression_direct")


def _conv_bn_relu(x, filters: int, kernel: int, name: str, groups: int = 1, strides: int = 1):
    x = GroupedConv2D(filters, kernel, strides=strides, padding="same", groups=groups, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _c1(depth, config: RegressionConfig):
    x = _conv_bn_relu(depth, config.c1_filters, config.c1_kernel, "c1")
    return layers.MaxPooling2D(config.c1_pool, name="p1")(x)


def _heads(x, config: RegressionConfig, joints: int, outputs: int, width: int):
    """`joints` independent heads, head j on channel block j of x (B, h, w, joints * C) -> (B, joints, outputs).

    Inception module -> strided conv -> fc -> `outputs` linear units; `width`
    multiplies every layer's filters.
    """
    reduce, filters = config.inception_reduce * width * joints, config.inception_filters * width * joints

    def conv(t, n: int, kernel: int, name: str, strides: int = 1):
        return _conv_bn_relu(t, n, kernel, name, groups=joints, strides=strides)

    b1 = conv(conv(x, reduce, 1, "c211"), filters, 3, "c212")
    b2 = conv(conv(x, reduce, 1, "c221"), filters, 5, "c222")
    b3 = conv(layers.MaxPooling2D(3, strides=1, padding="same", name="p231")(x), filters, 1, "c232")
    b4 = conv(x, filters, 1, "c241")
    x = _concat_per_joint([b1, b2, b3, b4], joints, "inception")
    x = conv(x, config.conv_filters * width * joints, 3, "conv", strides=config.conv_stride)
    # (B, h, w, joints * C) -> (B, joints, h * w * C): each joint's fc sees its own maps only.
    cells = x.shape[1] * x.shape[2]
    x = layers.Reshape((cells, joints, x.shape[-1] // joints), name="split_joints")(x)
    x = layers.Permute((2, 1, 3), name="joints_first")(x)
    x = layers.Reshape((joints, -1), name="flatten")(x)
    units = config.fc_units * width
    x = layers.EinsumDense("bjx,jxu->bju", (joints, units), name="fc")(x)
    x = layers.Reshape((joints * units,), name="fc_flat")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    x = layers.Reshape((joints, units), name="fc_joints")(x)
    return layers.EinsumDense("bju,juk->bjk", (joints, outputs), bias_axes="jk", name="xyz")(x)


def _concat_per_joint(branches: list, joints: int, name: str):
    """Concatenate grouped maps (B, h, w, joints * C_i) joint by joint, keeping joint j in block j."""
    h, w = branches[0].shape[1:3]
    split = [
        layers.Reshape((h, w, joints, b.shape[-1] // joints), name=f"{name}_split{i}")(b)
        for i, b in enumerate(branches)
    ]
    x = layers.Concatenate(name=name)(split)
    return layers.Reshape((h, w, -1), name=f"{name}_merge")(x)
