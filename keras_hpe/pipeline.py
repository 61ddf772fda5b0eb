"""Inference: depth crops in mm + crop centres -> 3D joints and a part map, in one TF graph.

`HandPoseEstimator` is the one implementation of the whole test-time chain
(paper section 4, Figure 4) that `keras-hpe predict`, the TF Serving export,
the evaluation and the inference benchmark share:

    depth_mm (B, S, S), center_uvd (B, 3)
      -> segmentation input  LCN(normalize_depth(fill_holes(depth)))  (crop.py, TF ops)
      -> segmentation net    class scores (B, S, S, 21): not hand + 20 parts (logits: see InferenceOptions)
      -> parts (B, S, S) uint8: the argmax (0 = not hand), 0 where the depth is 0
      -> regression input    normalize_depth(depth) + one-hot of parts 1..20 (as in training)
      -> regression net      joints in half-cube units relative to the centre
      -> joints_xyz (mm) = crop_to_joints(., uvd_to_xyz(centre)); joints_uvd by the camera

Everything after the raw crop is inside the graph, so a client (or TF
Serving) sends depth in mm and the centre, nothing else. A direct-regression
model (baseline (a)) runs without a segmentation network and returns no parts.
The cascade (baseline (b)) is a direct model followed by a second one, as
`training.reg` trains it:

      -> coarse_xyz = the first estimate's mean joint (mm)
      -> crop.recrop_depth   the tighter cube of refine_cube_mm around it, re-sampled from the crop
      -> refine net          joints in its half-cube units relative to coarse_xyz -> joints_xyz (mm)

`InferenceOptions` says how the networks run: by default inference copies of
them (`models.inference`) in a graph whose weights are constants, which
computes the trained networks' joints faster; `REFERENCE` runs the trained
networks as they are, and "bfloat16" the segmentation's convolutions in 16 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

# TensorFlow's own freezing (the LiteRT converter's); it has no public TF2 name.
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from keras_hpe.data.camera import NYU_CAMERA, Camera, uvd_to_xyz_tf, xyz_to_uvd_tf
from keras_hpe.data.crop import CUBE_MM, MAX_CROP_UNITS, crop_to_joints, normalize_depth, recrop_depth
from keras_hpe.data.skeleton import NUM_JOINTS
from keras_hpe.errors import UserError
from keras_hpe.models.inference import check_inference_precision, inference_copy
from keras_hpe.models.regression import part_channels
from keras_hpe.models.segmentation import model_crop_size, segmentation_input

OUTPUTS = ("joints_xyz", "joints_uvd", "parts")


@dataclass(frozen=True)
class InferenceOptions:
    """How an estimator runs its networks; every option is tested against `REFERENCE`.

    The default (float32 inference copies, frozen) gives the reference's
    joints (0.0002 mm apart at most on the quick preset's 1,000 real test
    frames, the same mean 3D error to 0.001 mm) at 4.65 ms per hand at batch
    1 and 378 hands/s at batch 64, against the reference's 6.04 ms and 292
    hands/s (2 quiet cores). "bfloat16" is faster again but
    moves the joints by 0.31 mm on average: asked for, not the default
    (`models.inference` has the figures of each path).

    Attributes:
        precision: "float32", or "bfloat16": the segmentation network's
            spatial convolutions compute in bfloat16 (`models.inference`).
        inference_copies: run `models.inference.inference_copy` of the
            networks (normalisation that oneDNN fuses, logits instead of the
            softmax) rather than the networks as trained.
        frozen: calls in this process (`__call__`, `predict`) run the graph
            with the weights as constants, read at the first call: TensorFlow
            then folds each batch normalisation into its convolution, fuses
            convolution, bias and ReLU, and the instance normalisation with
            its ReLU, and oneDNN keeps its reordered weights between calls.
            Exports always hold the graph with variables (`serve`).
    """

    precision: str = "float32"
    inference_copies: bool = True
    frozen: bool = True

    def __post_init__(self) -> None:
        check_inference_precision(self.precision)
        if self.precision != "float32" and not self.inference_copies:
            raise UserError(f"precision {self.precision} runs inference copies of the networks: "
                            "set inference_copies=True")


# The trained float32 networks as they are, in a graph with variables: what every other option is tested against.
REFERENCE = InferenceOptions(inference_copies=False, frozen=False)


@dataclass(frozen=True)
class EstimatorInfo:
    """What a client needs to know to call an estimator (also written beside an export).

    `refine_model` and `refine_cube_mm` are a cascade's second step (None otherwise);
    `precision` is `InferenceOptions.precision`.
    """

    size: int
    cube_mm: float
    camera: Camera
    uses_segmentation: bool
    segmentation_model: str | None
    regression_model: str
    refine_model: str | None = None
    refine_cube_mm: float | None = None
    precision: str = "float32"

    @property
    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS if self.uses_segmentation else OUTPUTS[:2]

    @property
    def cascade(self) -> dict | None:
        """The cascade's second step, {"refine_model", "refine_cube_mm"}, or None for one regression step."""
        if self.refine_model is None:
            return None
        return {"refine_model": self.refine_model, "refine_cube_mm": self.refine_cube_mm}


class HandPoseEstimator(tf.Module):
    """Segmentation + regression networks wrapped with the crop normalisation and the camera.

    Call it with `depth_mm` (B, S, S) float32 crops in mm (0 = no data, as
    `crop.crop_depth` makes them) and `center_uvd` (B, 3) float32 crop centres
    (pixel u, pixel v, depth mm). It returns a dict of tensors:
    `joints_xyz` (B, 14, 3) mm, `joints_uvd` (B, 14, 3) (px, px, mm) and,
    with a segmentation network, `parts` (B, S, S) uint8 part ids
    (`skeleton.PART_NAMES`, 0 where the depth is 0).

    Args:
        regression: `build_regression` model {"depth", "segmentation"} -> (B, 14, 3),
            or a `build_direct_regression` model "depth" -> (B, 14, 3).
        segmentation: `build_segmentation_model` model, or None for a direct model.
        cube_mm: side of the crop cube the models were trained with.
        camera: intrinsics of the sensor (default NYU Kinect 1).
        refine: the cascade's second `build_direct_regression` model (after a
            direct `regression`), or None.
        refine_cube_mm: side of the cube `refine` was trained with, around the
            first estimate's mean joint; given with `refine` only.
        options: how the networks run (`InferenceOptions`; `REFERENCE` is the
            trained networks as they are).
    """

    def __init__(
        self,
        regression: keras.Model,
        segmentation: keras.Model | None = None,
        cube_mm: float = CUBE_MM,
        camera: Camera = NYU_CAMERA,
        *,
        refine: keras.Model | None = None,
        refine_cube_mm: float | None = None,
        options: InferenceOptions = InferenceOptions(),
    ):
        super().__init__(name="hand_pose_estimator")
        if not cube_mm > 0:
            raise UserError(f"cube_mm must be > 0, got {cube_mm}")
        direct = len(regression.inputs) == 1
        if segmentation is None and not direct:
            raise UserError(
                f"regression model {regression.name!r} needs a segmentation (it has inputs "
                f"{[t.name for t in regression.inputs]}): pass a segmentation model"
            )
        if segmentation is not None and direct:
            raise UserError(
                f"regression model {regression.name!r} takes depth only (direct regression): "
                "do not pass a segmentation model"
            )
        size = int(regression.inputs[0].shape[1])
        if segmentation is not None and model_crop_size(segmentation) != size:
            raise UserError(
                f"segmentation model crop size {model_crop_size(segmentation)} differs from the "
                f"regression model's {size}"
            )
        _check_joints_output(regression)
        if (refine is None) != (refine_cube_mm is None):
            raise UserError("a cascade needs both its second model (refine) and its cube (refine_cube_mm)")
        if refine is not None:
            _check_refine(refine, refine_cube_mm, regression, size)
        self.options = options

        def network(model: keras.Model | None, precision: str = "float32") -> keras.Model | None:
            if model is None or not options.inference_copies:
                return model
            return inference_copy(model, precision)

        self.regression = network(regression)
        self.segmentation = network(segmentation, options.precision)
        self.refine = network(refine)
        self.info = EstimatorInfo(
            size=size,
            cube_mm=float(cube_mm),
            camera=camera,
            uses_segmentation=segmentation is not None,
            segmentation_model=None if segmentation is None else segmentation.name,
            regression_model=regression.name,
            refine_model=None if refine is None else refine.name,
            refine_cube_mm=None if refine is None else float(refine_cube_mm),
            precision=options.precision,
        )
        # The batch is left open: one graph serves batch 1 and batched calls alike.
        self.serve = tf.function(
            self._estimate,
            input_signature=[
                tf.TensorSpec((None, size, size), tf.float32, name="depth_mm"),
                tf.TensorSpec((None, 3), tf.float32, name="center_uvd"),
            ],
        )

    @property
    def size(self) -> int:
        """Crop side S the models take."""
        return self.info.size

    @property
    def networks(self) -> list[keras.Model]:
        """The Keras networks of the graph, in the order it calls them."""
        return [m for m in (self.segmentation, self.regression, self.refine) if m is not None]

    def __call__(self, depth_mm, center_uvd) -> dict[str, tf.Tensor]:
        """One graph call on a batch (any array-like); returns the output tensors by name."""
        return self._graph(tf.convert_to_tensor(depth_mm, tf.float32), tf.convert_to_tensor(center_uvd, tf.float32))

    @cached_property
    def _graph(self) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
        """The graph in-process calls run: `serve`, or `serve` with its weights frozen to constants."""
        if not self.options.frozen:
            return self.serve
        traced = self.serve.get_concrete_function()
        frozen = convert_variables_to_constants_v2(traced)
        # A frozen function returns its outputs as a flat list, in the order of the traced structure's leaves.
        return lambda depth_mm, center_uvd: tf.nest.pack_sequence_as(
            traced.structured_outputs, frozen(depth_mm, center_uvd)
        )

    def predict(self, depth_mm: np.ndarray, center_uvd: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Run on NumPy crops (N, S, S) and centres (N, 3) in batches; returns NumPy arrays."""
        depth_mm = np.asarray(depth_mm, dtype=np.float32)
        center_uvd = np.asarray(center_uvd, dtype=np.float32)
        if depth_mm.ndim != 3 or depth_mm.shape[1:] != (self.size, self.size):
            raise UserError(f"depth_mm must be (N, {self.size}, {self.size}), got shape {depth_mm.shape}")
        if len(depth_mm) == 0:
            raise UserError("no crops to estimate (depth_mm has 0 frames)")
        if center_uvd.shape != (depth_mm.shape[0], 3):
            raise UserError(f"center_uvd must be ({depth_mm.shape[0]}, 3), got shape {center_uvd.shape}")
        chunks = [
            {k: v.numpy() for k, v in self(depth_mm[i : i + batch_size], center_uvd[i : i + batch_size]).items()}
            for i in range(0, len(depth_mm), batch_size)
        ]
        return {name: np.concatenate([c[name] for c in chunks]) for name in self.info.outputs}

    def _estimate(self, depth_mm: tf.Tensor, center_uvd: tf.Tensor) -> dict[str, tf.Tensor]:
        cube_mm = self.info.cube_mm
        center_d_mm = center_uvd[:, 2]
        depth = normalize_depth(depth_mm[..., None], center_d_mm, cube_mm)
        outputs = {}
        if self.segmentation is None:
            joints = self.regression(depth, training=False)
        else:
            # Class probabilities, or an inference copy's logits: the argmax is the same.
            scores = self.segmentation(segmentation_input(depth_mm, center_d_mm, cube_mm), training=False)
            # int32 until the final cast: LiteRT has no builtin uint8 add or select.
            labels = tf.argmax(scores, axis=-1, output_type=tf.int32)
            parts = tf.where(depth_mm > 0, labels, tf.zeros_like(labels))
            # The regression network learns from one-hot maps of parts 1..20, not hand all zeros (training.reg).
            joints = self.regression({"depth": depth, "segmentation": part_channels(parts)}, training=False)
            outputs["parts"] = tf.cast(parts, tf.uint8)
        camera = self.info.camera
        joints_xyz = crop_to_joints(_clipped(joints), uvd_to_xyz_tf(center_uvd, camera), cube_mm)
        if self.refine is not None:
            # The second step, as training.reg trains and evaluates it: a tighter cube around the mean joint.
            refine_cube_mm = self.info.refine_cube_mm
            coarse_xyz = tf.reduce_mean(joints_xyz, axis=1)
            refined_mm, refined_uvd = recrop_depth(depth_mm, center_uvd, coarse_xyz, cube_mm, refine_cube_mm, camera)
            refined = normalize_depth(refined_mm[..., None], refined_uvd[:, 2], refine_cube_mm)
            joints_xyz = crop_to_joints(_clipped(self.refine(refined, training=False)), coarse_xyz, refine_cube_mm)
        outputs["joints_xyz"] = joints_xyz
        outputs["joints_uvd"] = xyz_to_uvd_tf(joints_xyz, camera)
        return outputs


def _clipped(joints: tf.Tensor) -> tf.Tensor:
    """A network's joints (half-cube units) in float32, clipped to `MAX_CROP_UNITS` as in training.reg."""
    return tf.clip_by_value(tf.cast(joints, tf.float32), -MAX_CROP_UNITS, MAX_CROP_UNITS)


def _check_joints_output(regression: keras.Model) -> None:
    if tuple(regression.outputs[0].shape[1:]) != (NUM_JOINTS, 3):
        raise UserError(
            f"regression model {regression.name!r} must output (B, {NUM_JOINTS}, 3) joints, "
            f"got {tuple(regression.outputs[0].shape)}"
        )


def _check_refine(refine: keras.Model, refine_cube_mm: float, regression: keras.Model, size: int) -> None:
    """UserError unless `refine` can follow `regression` as a cascade's second step."""
    if len(regression.inputs) != 1 or len(refine.inputs) != 1:
        raise UserError(
            f"a cascade is two direct-regression models (depth only); got {regression.name!r} with "
            f"{len(regression.inputs)} input(s), then {refine.name!r} with {len(refine.inputs)}"
        )
    if int(refine.inputs[0].shape[1]) != size:
        raise UserError(
            f"the cascade's second model {refine.name!r} takes {int(refine.inputs[0].shape[1])}x"
            f"{int(refine.inputs[0].shape[1])} crops, the first {size}x{size}"
        )
    _check_joints_output(refine)
    if not (math.isfinite(refine_cube_mm) and refine_cube_mm > 0):
        raise UserError(f"refine_cube_mm must be a number > 0 (mm), got {refine_cube_mm}")


def load_estimator(
    regression_path: str | Path,
    segmentation_path: str | Path | None = None,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
    options: InferenceOptions = InferenceOptions(),
) -> HandPoseEstimator:
    """Load a trained variant's `.keras` models into an estimator that runs them as `options` say.

    The segmentation model defaults to the one named in the `.json` that
    training writes beside the regression model (`training.reg_predict.load_pipeline`);
    that JSON also names a cascade's second model and its cube.
    """
    from keras_hpe.models.loading import load_model
    from keras_hpe.training.reg_predict import ORACLE, load_pipeline

    variant = load_pipeline(regression_path, segmentation_path)
    if variant.variant == ORACLE:
        raise UserError(
            f"{regression_path} is the oracle (e), a diagnostic that regresses from the true part labels of its "
            "data: it cannot run on depth alone; use a variant of the method (direct, cascade, semi, full)"
        )
    segmentation = None if variant.seg_path is None else load_model(variant.seg_path, "segmentation")
    refine = None if variant.refine_path is None else load_model(variant.refine_path, "regression")
    return HandPoseEstimator(
        load_model(variant.model_path, "regression"), segmentation, cube_mm, camera,
        refine=refine, refine_cube_mm=variant.refine_cube_mm, options=options,
    )
