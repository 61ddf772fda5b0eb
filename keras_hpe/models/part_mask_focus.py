"""The regression network's per-joint focus: feature maps masked by the joint's part(s)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_hpe.data.skeleton import JOINT_PARTS
from keras_hpe.errors import UserError
from keras_hpe.models.morphology import binary_opening, check_structuring_size


@keras.saving.register_keras_serializable(package="keras_hpe")
class PartMaskFocus(keras.layers.Layer):
    """Feature maps restricted, per joint, to the opened mask of the joint's hand part(s).

    Inputs `[features, segmentation]`: features (B, h, w, C) and a segmentation
    (B, S, S, P) over the P hand parts (per-pixel probabilities or one-hot;
    channel p - 1 is part p; a pixel whose values are all 0 is not hand and
    belongs to no part). S must be a multiple of h and of w.

    For joint j the mask is the set of pixels whose most likely part
    (argmax) is one of `joint_parts[j]`, morphologically opened with an
    `opening_size` x `opening_size` square at the segmentation's resolution
    (removing isolated mislabelled pixels), then reduced to the feature map's
    resolution by max pooling (a feature cell is kept if any of its pixels
    is). The output (B, h, w, J, C) is the features times that mask,
    0 elsewhere (joints next to channels, so that a joint's maps are one
    channel block after a reshape). The mask is a hard selection: no gradient
    reaches the segmentation.

    Args:
        joint_parts: for each joint, the part ids (1..P) it belongs to;
            default `skeleton.JOINT_PARTS` (14 joints).
        opening_size: odd side of the square structuring element, in
            segmentation pixels (1 = no opening).
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Example:
        >>> features = keras.random.normal((2, 16, 16, 8))
        >>> segmentation = keras.random.uniform((2, 64, 64, 20))
        >>> PartMaskFocus(opening_size=3)([features, segmentation]).shape
        (2, 16, 16, 14, 8)

    Reference:
        Neverova, Wolf, Nebout, Taylor, "Hand Pose Estimation through Semi-Supervised
        and Weakly-Supervised Learning", CVIU 2017, section 4 (Figure 4).
    """

    def __init__(self, joint_parts=JOINT_PARTS, opening_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.joint_parts = tuple(tuple(int(p) for p in parts) for parts in joint_parts)
        if not self.joint_parts or any(not parts for parts in self.joint_parts):
            raise UserError(f"joint_parts must list at least one part per joint, got {joint_parts}")
        self.opening_size = check_structuring_size(opening_size, "opening_size")

    def build(self, input_shape):
        features_shape, segmentation_shape = input_shape
        num_parts = segmentation_shape[-1]
        bad_parts = sorted({p for parts in self.joint_parts for p in parts if not 1 <= p <= num_parts})
        if bad_parts:
            raise UserError(f"joint_parts has part ids {bad_parts} outside 1..{num_parts} (segmentation channels)")
        size = segmentation_shape[1:3]
        cells = features_shape[1:3]
        if size[0] % cells[0] or size[1] % cells[1] or size[0] // cells[0] != size[1] // cells[1]:
            raise UserError(
                f"segmentation size {tuple(size)} must be the same multiple of the feature map size {tuple(cells)}"
            )
        self.cell_size = size[0] // cells[0]
        # membership[p - 1, j] = 1 if part p is one of joint j's parts.
        membership = np.zeros((num_parts, len(self.joint_parts)), dtype="float32")
        for joint, parts in enumerate(self.joint_parts):
            membership[[p - 1 for p in parts], joint] = 1.0
        # A NumPy constant, not a tensor: a tensor made here would belong to whatever graph builds the layer.
        self.membership = membership

    def call(self, inputs):
        features, segmentation = inputs
        segmentation = ops.stop_gradient(segmentation)
        # The argmax as a comparison with the maximum: faster than ops.argmax on CPU.
        best = ops.max(segmentation, axis=-1, keepdims=True)
        part_masks = ops.cast(ops.logical_and(segmentation >= best, best > 0), self.compute_dtype)
        membership = ops.convert_to_tensor(self.membership, dtype=self.compute_dtype)
        cell = {"pool_size": self.cell_size, "strides": self.cell_size, "padding": "valid"}
        if self.opening_size == 1:
            # Without an opening a cell is in joint j's mask if one of its pixels is in one of j's parts: the
            # same cells whether the part masks are reduced to the cells before the union over j's parts or after.
            joint_masks = ops.matmul(ops.max_pool(part_masks, **cell), membership)
            cell_masks = ops.minimum(joint_masks, 1.0)
        else:
            # A pixel is in joint j's mask if its part is one of j's parts (min: a tie counts once).
            joint_masks = ops.minimum(ops.matmul(part_masks, membership), 1.0)
            cell_masks = ops.max_pool(binary_opening(joint_masks, self.opening_size), **cell)
        # (B, h, w, J, 1) against features (B, h, w, 1, C).
        return ops.expand_dims(features, 3) * ops.expand_dims(cell_masks, -1)

    def compute_output_shape(self, input_shape):
        features_shape = input_shape[0]
        return (*features_shape[:3], len(self.joint_parts), features_shape[3])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"joint_parts": [list(parts) for parts in self.joint_parts], "opening_size": self.opening_size})
        return config
