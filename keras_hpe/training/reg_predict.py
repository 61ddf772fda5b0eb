"""A trained regression variant: what it is (`load_pipeline`) and its joints on a data set.

The JSON that training writes beside `OUT/reg_<variant>.keras` names the
variant, the cascade's second model and cube and the segmentation model;
`predict_joints_xyz` runs the variant on every frame of a data set as
`evaluate-reg` and the report do (`pipeline.HandPoseEstimator` is the same
chain as one graph, tested to agree), and `evaluate_regression` scores it
with the NYU protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_hpe.checks import is_file_name, is_finite, require
from keras_hpe.data.camera import uvd_to_xyz, xyz_to_uvd
from keras_hpe.data.crop import MAX_CROP_UNITS, crop_to_joints
from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import JointErrors, evaluate_joints
from keras_hpe.models.loading import load_model
from keras_hpe.training.reg_data import check_oracle_data, regression_dataset, segment_data_set, true_labels
from keras_hpe.training.seg import load_segmentation_model

VARIANTS = ("direct", "cascade", "semi", "full", "oracle")
SEG_VARIANTS = ("semi", "full")  # segmented by a segmentation model
MASK_VARIANTS = (*SEG_VARIANTS, "oracle")  # the part-mask network; the oracle's masks are the true labels
ORACLE = "oracle"


@dataclass
class RegressionPipeline:
    """Everything needed to predict joints with a trained variant.

    `refine_path` and `refine_cube_mm` are the cascade's second step;
    `seg_path` the segmentation model of "semi" / "full"; the oracle reads
    the part labels of the data it predicts.
    """

    variant: str
    model_path: Path
    seg_path: Path | None = None
    refine_path: Path | None = None
    refine_cube_mm: float | None = None


def load_pipeline(model_path: str | Path, seg_path: str | Path | None = None) -> RegressionPipeline:
    """Describe a trained variant from its model file and the `.json` written beside it.

    Without that JSON the variant is inferred from the model's inputs (a
    cascade cannot be: its second step is only named in the JSON). `seg_path`
    defaults to the segmentation model the JSON names; a relative name there is
    a reproduction's, relative to its run folder: the parent of the model's folder.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"model file {model_path} does not exist")
    info_path = model_path.with_suffix(".json")
    info = _read_variant_info(info_path) if info_path.is_file() else {}
    variant = info.get("variant")
    if variant is None:
        variant = "semi" if len(load_regression_model(model_path).inputs) == 2 else "direct"
    pipeline = RegressionPipeline(variant=variant, model_path=model_path)
    if variant == "cascade":
        pipeline.refine_path = model_path.with_name(info["models"][1])
        pipeline.refine_cube_mm = float(info["refine_cube_mm"])
    if variant in SEG_VARIANTS:
        if seg_path is None and info.get("seg_model") is not None:
            seg_path = model_path.parent.parent / info["seg_model"]  # an absolute name stays as it is
        if seg_path is None:
            raise UserError(f"model {model_path} takes depth + segmentation: give its segmentation model (--seg)")
        pipeline.seg_path = Path(seg_path)
    elif seg_path is not None:
        raise UserError(f"model {model_path} ({variant}) takes no segmentation; do not give --seg")
    return pipeline


def _read_variant_info(path: Path) -> dict:
    """The `.json` beside a regression model, with the keys `load_pipeline` reads checked (UserError naming it)."""
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(info).__name__}")
    variant, seg_model = info.get("variant"), info.get("seg_model")
    require(variant is None or variant in VARIANTS, str(path), "variant", f"one of {', '.join(VARIANTS)}", variant)
    require(seg_model is None or isinstance(seg_model, str), str(path), "seg_model", "a path", seg_model)
    if variant == "cascade":
        models, cube_mm = info.get("models"), info.get("refine_cube_mm")
        require(isinstance(models, list) and len(models) == 2 and all(map(is_file_name, models)), str(path),
                "models", "the cascade's two model file names", models)
        require(is_finite(cube_mm) and cube_mm > 0, str(path), "refine_cube_mm", "a number > 0 (mm)", cube_mm)
    return info


def predict_joints_xyz(
    pipeline: RegressionPipeline, data_dir: str | Path, batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Joints (N, 14, 3) in mm (camera frame) predicted by a trained variant for every frame of `data_dir`."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    camera, cube_mm, size = manifest.camera_model, float(manifest.cube_mm), manifest.size
    model = load_regression_model(pipeline.model_path)
    model_size = int(model.inputs[0].shape[1])
    if model_size != size:
        raise UserError(
            f"data set {data_dir} holds {size}x{size} crops but model {pipeline.model_path} takes "
            f"{model_size}x{model_size}; use data of the model's size"
        )
    labels = None
    if pipeline.seg_path is not None:
        labels = segment_data_set(load_segmentation_model(pipeline.seg_path), data_dir, batch_size, progress)
    elif pipeline.variant == ORACLE:
        check_oracle_data(data_dir)
        labels = true_labels(data_dir)
    center_xyz = uvd_to_xyz(load_arrays(data_dir, ["center_uvd"])["center_uvd"], camera)
    data = regression_dataset(data_dir, batch_size, size=size, segmentation=labels)
    joints_xyz = crop_to_joints(predict_crop_units(model, data, progress), center_xyz, cube_mm)
    if pipeline.refine_path is not None:
        refine = load_regression_model(pipeline.refine_path)
        coarse_xyz = joints_xyz.mean(axis=1)
        data = regression_dataset(
            data_dir, batch_size, size=size, coarse_xyz=coarse_xyz, refine_cube_mm=pipeline.refine_cube_mm
        )
        # The second crop is centred on the first estimate (`crop.recrop_depth`).
        joints_xyz = crop_to_joints(predict_crop_units(refine, data, progress), coarse_xyz, pipeline.refine_cube_mm)
    return joints_xyz


def evaluate_regression(
    pipeline: RegressionPipeline, data_dir: str | Path, batch_size: int = 64, progress: bool = False
) -> tuple[JointErrors, np.ndarray]:
    """Score a trained variant on `data_dir` (NYU protocol, the data's camera): (errors, pred_uvd (N, 14, 3))."""
    manifest = read_manifest(data_dir)
    camera = manifest.camera_model
    pred_uvd = xyz_to_uvd(predict_joints_xyz(pipeline, data_dir, batch_size, progress), camera)
    gt_uvd = load_arrays(data_dir, ["joints_uvd"])["joints_uvd"]
    return evaluate_joints(pred_uvd, gt_uvd, camera=camera), pred_uvd


def evaluate_variants(
    variants: Mapping[str, Sequence[str | Path]], data_dir: str | Path, batch_size: int = 64, progress: bool = False
) -> dict[str, JointErrors]:
    """Score several variants on one data set: {name: (reg model path[, seg model path])} -> {name: errors}.

    Plot them together with `evaluation.joints.plot_success_curves`.
    """
    results = {}
    for name, paths in variants.items():
        if not 1 <= len(paths) <= 2:
            raise UserError(f"variant {name!r}: give (regression model[, segmentation model]), got {len(paths)} paths")
        pipeline = load_pipeline(paths[0], paths[1] if len(paths) == 2 else None)
        results[name] = evaluate_regression(pipeline, data_dir, batch_size, progress)[0]
    return results


def predict_crop_units(model: keras.Model, data: tf.data.Dataset, progress: bool) -> np.ndarray:
    """Joints in half-cube units (N, 14, 3), clipped to `MAX_CROP_UNITS`."""
    pred = model.predict(data.map(lambda inputs, joints: inputs), verbose=1 if progress else 0)
    return np.clip(pred, -MAX_CROP_UNITS, MAX_CROP_UNITS)


def load_regression_model(path: Path) -> keras.Model:
    """Load a `.keras` regression model for inference (`models.loading.load_model`)."""
    return load_model(path, "regression")
