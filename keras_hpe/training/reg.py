"""Stage 3: training and evaluating the joint regression network (paper section 3 step 3, section 5.2).

The regression network learns on the sensor domain's training split: depth
crops and joints only (part labels are read by the oracle (e) alone). The
variants, the rows of the paper's Table 4 and our oracle:

- "direct" (a): joints from depth alone (`build_direct_regression`);
- "cascade" (b): direct, then a second direct network on a tighter cube
  (`cascade_cube_fraction` x the data's cube) centred on the first estimate's
  mean joint;
- "semi" (c): depth + the segmentation of the stage-1 (synthetic-only) network;
- "full" (d): depth + the segmentation of the stage-2 (weakly-supervised) network;
- "oracle" (e), a diagnostic that is not part of the method: depth + the
  ground-truth part labels of the data set itself, at training and test time.
  Only the simulator can label real frames, so it runs on the sensor domain
  alone (the `labels` of both splits); it bounds what a perfect segmentation
  could add to the regression.

For (c) and (d) the training data are segmented once with the given model;
the label maps (uint8) are cached in `OUT/seg_cache/`, keyed by the hashes
of the data set's manifest and of the model file, and enter the network as
one-hot maps of parts 1..20 (a not-hand pixel, label 0, is all zeros).

The cascade's tighter crop is re-sampled from the stored S x S crop (the
full frame is not kept; `crop.recrop_depth`, TF ops that the exported
estimator runs too): each pixel of the new window takes the nearest
stored pixel, and depth outside the new cube is set to 0. This is lossy: the
new crop is the old one magnified 1 / fraction times, so it has no more
detail than the stored crop, and where the new cube reaches beyond the old
one there is no depth. The first step's estimates on its own training frames
are better than on new frames, so the second step trains on centres jittered
by `cascade_jitter_mm` (ours).

Targets are joints relative to the crop centre in half-cube units
(`crop.joints_to_crop`); the loss is the mean squared error of those (L2);
Adam with a cosine schedule (the paper: Adam, lr 0.05, batch 64; lr ours).
After training, the batch-norm statistics used at test time are recomputed
over training batches with the final weights (`estimate_batch_norm_statistics`):
the paper uses statistics of the training data, and Keras' moving averages
lag far behind after a short run (the per-epoch `val_*` figures of the
history still use them; the JSON's `val` scores the final model).
Every model file `OUT/reg_<variant>.keras` (and `OUT/reg_cascade_refine.keras`)
comes with `OUT/reg_<variant>.json`: what was trained on what, the training
history and, with a validation set, its joint errors. Evaluation reads that
JSON to know the variant, the cascade's second model and the segmentation
model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_hpe.data.camera import uvd_to_xyz
from keras_hpe.data.crop import crop_to_joints
from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import JointErrors
from keras_hpe.models.regression import build_direct_regression, build_regression
from keras_hpe.models.segmentation import model_crop_size
from keras_hpe.outputs import atomic_path, folder_lock, output_folder, recorded_path, write_text
from keras_hpe.presets import RegTrainingConfig
from keras_hpe.training.fit import (
    check_seed,
    fingerprint,
    fit_resumable,
    make_optimizer,
    remove_checkpoint,
    seed_new_model,
    with_run_length,
)
from keras_hpe.training.devices import choose_placement
from keras_hpe.training.inputs import check_crop_size
from keras_hpe.training.reg_data import (
    SEG_CACHE_DIR,
    cached_segmentation,
    check_oracle_data,
    check_regression_data,
    regression_dataset,
    true_labels,
)
from keras_hpe.training.reg_predict import (
    MASK_VARIANTS,
    ORACLE,
    SEG_VARIANTS,
    VARIANTS,
    evaluate_regression,
    load_pipeline,
    predict_crop_units,
)
from keras_hpe.training.seg import load_segmentation_model

HEADS = ("separate", "shared")
REFINE_SUFFIX = "_refine"
BATCH_NORM_EPOCH = 2**31 - 1  # the data of the batch-norm statistics pass: those of an epoch no training reaches


@dataclass
class RegTrainingResult:
    """What `train_regression` wrote and measured."""

    model_paths: list[Path]
    metrics_path: Path
    metrics: dict


@keras.saving.register_keras_serializable(package="keras_hpe")
class MeanJointErrorMM(keras.metrics.Mean):
    """Mean Euclidean joint error in mm of joints given in half-cube units.

    Args:
        half_cube_mm: the half-cube that scales crop units to mm.
        name: metric name.
        dtype: metric dtype.
    """

    def __init__(self, half_cube_mm: float = 150.0, name: str = "joint_error_mm", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.half_cube_mm = float(half_cube_mm)

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = keras.ops.sqrt(keras.ops.sum(keras.ops.square(y_true - y_pred), axis=-1)) * self.half_cube_mm
        return super().update_state(error, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {"half_cube_mm": self.half_cube_mm, "name": self.name, "dtype": self.dtype}


def estimate_batch_norm_statistics(model: keras.Model, data: tf.data.Dataset, max_batches: int = 100) -> int:
    """Set every batch-norm layer's test-time mean and variance to their average over training batches.

    The paper normalises at test time with statistics estimated on the
    training data. Keras keeps moving averages (momentum 0.99) instead, which
    after a short CPU run still remember their initial values and lag behind
    the final weights ("precise BN": recompute them with the final weights).
    `data` yields (inputs, targets) training batches; returns the batches used.
    """
    layers = _batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for used, (inputs, _) in enumerate(data.take(max_batches), start=1):
            # Momentum (k - 1) / k makes the moving statistics the plain mean over the k batches seen.
            for layer in layers:
                layer.momentum = (used - 1) / used
            model(inputs, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used


def train_regression(
    data_dir: str | Path,
    out_dir: str | Path,
    variant: str,
    config: RegTrainingConfig = RegTrainingConfig(),
    *,
    seg_path: str | Path | None = None,
    val_dir: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    head: str = "separate",
    seed: int = 0,
    progress: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    run_dir: str | Path | None = None,
    strategy: str | tf.distribute.Strategy = "auto",
) -> RegTrainingResult:
    """Train variant `variant` on the depth + joints data set at `data_dir`; write OUT/reg_<variant>.keras + .json.

    `seg_path` (the segmentation model) is required for "semi" / "full" and
    refused otherwise; `head` ("separate" or "shared") applies to those two.
    `epochs` and `batch_size` override the config's. Re-running an
    interrupted run with the same arguments resumes it (a cascade in the step
    it was in); with other arguments it is a UserError. With `val_dir` the
    JSON holds the trained variant's joint errors on that set. The inputs are
    checked before `out_dir` is made, and `out_dir` is locked while the
    training runs. The JSON records the paths inside `run_dir` (a
    reproduction's, the parent of `out_dir`) relative to it; `load_pipeline`
    reads them back. `strategy` and `config.precision` place the training
    (`devices.choose_placement`); the batch size is the global batch.
    """
    if variant not in VARIANTS:
        raise UserError(f"regression variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if variant in SEG_VARIANTS and seg_path is None:
        raise UserError(f"variant {variant!r} needs a segmentation model (--seg)")
    if variant not in SEG_VARIANTS and seg_path is not None:
        uses = "the data set's own part labels" if variant == ORACLE else "depth alone"
        raise UserError(f"variant {variant!r} regresses from {uses}; do not give a segmentation model (--seg)")
    if head not in HEADS:
        raise UserError(f"regression head must be one of {', '.join(HEADS)}, got {head!r}")
    if head != "separate" and variant not in MASK_VARIANTS:
        raise UserError(f"a shared head applies to the semi, full and oracle variants only, not {variant!r}")
    config = with_run_length(config, epochs, batch_size)
    check_seed(seed)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = read_manifest(data_dir)
    for step_data in (data_dir, val_dir) if val_dir is not None else (data_dir,):
        check_regression_data(step_data, manifest.size)
        if variant == ORACLE:
            check_oracle_data(step_data)
    config = replace(config, model=replace(config.model, input_size=manifest.size))
    placement = choose_placement(strategy, config.precision, "regression")
    cube_mm = float(manifest.cube_mm)
    if seg_path is not None:
        seg_path = Path(seg_path).resolve()
        check_crop_size(data_dir, model_crop_size(load_segmentation_model(seg_path)))
    name = f"reg_{variant}"
    identity = {
        "variant": variant,
        "head": head,
        "data": fingerprint(data_dir),
        "val": fingerprint(val_dir) if val_dir is not None else None,
        "seg_model": fingerprint(seg_path) if seg_path is not None else None,
        "seed": seed,
        "config": config.to_dict(),
    }

    with output_folder(out_dir) as out_dir, folder_lock(out_dir, "training folder"):
        labels = {"train": None, "val": None}
        if variant == ORACLE:
            labels = {"train": true_labels(data_dir), "val": true_labels(val_dir) if val_dir is not None else None}
        if seg_path is not None:
            cache = out_dir / SEG_CACHE_DIR
            labels["train"] = cached_segmentation(seg_path, data_dir, cache, config.batch_size, progress)
            if val_dir is not None:
                labels["val"] = cached_segmentation(seg_path, val_dir, cache, config.batch_size, progress)

        def fit(model, step_name, cube, train_extras=None, val_extras=None) -> tuple[dict, float]:
            """Compile for the step's cube (the metric's mm), fit with resume, then fix the batch-norm statistics."""
            steps = -(-manifest.count // config.batch_size) * config.epochs

            def compile_regression(trained: keras.Model) -> None:
                trained.compile(optimizer=make_optimizer(config, steps), loss=keras.losses.MeanSquaredError(),
                                metrics=[MeanJointErrorMM(cube / 2)])

            def train(epoch: int) -> tf.data.Dataset:
                return regression_dataset(
                    data_dir, config.batch_size, size=manifest.size, segmentation=labels["train"], shuffle=True,
                    seed=seed, epoch=epoch, augment=config.augment, jitter_mm=config.cascade_jitter_mm,
                    shuffle_buffer=config.shuffle_buffer, **(train_extras or {}),
                )

            val = None
            if val_dir is not None:
                val = regression_dataset(
                    val_dir, config.batch_size, size=manifest.size, segmentation=labels["val"], **(val_extras or {})
                )
            history, seconds = fit_resumable(
                model, compile_regression, train, placement=placement, epochs=config.epochs, out_dir=out_dir,
                name=step_name, identity={**identity, "step": step_name}, val=val, progress=progress,
                callbacks=callbacks,
            )
            estimate_batch_norm_statistics(model, train(BATCH_NORM_EPOCH), config.batch_norm_batches)
            return history, seconds

        seed_new_model(seed)
        model = (build_regression(config.model, head) if variant in MASK_VARIANTS
                 else build_direct_regression(config.model))
        # A cascade interrupted in its second step finds its first step's checkpoint complete: it only
        # re-estimates the batch-norm statistics, as the uninterrupted run did.
        history, seconds = {}, {}
        history[name], seconds[name] = fit(model, name, cube_mm)
        model_paths = [out_dir / f"{name}.keras"]
        _save_model(model, model_paths[0])

        refine_cube_mm = None
        if variant == "cascade":
            refine_name = name + REFINE_SUFFIX
            refine_cube_mm = cube_mm * config.cascade_cube_fraction

            def refine_inputs(step_data: Path) -> dict:
                coarse_xyz = _coarse_xyz(model, step_data, manifest.size, config.batch_size, progress)
                return {"coarse_xyz": coarse_xyz, "refine_cube_mm": refine_cube_mm}

            train_extras = refine_inputs(data_dir)
            val_extras = refine_inputs(Path(val_dir)) if val_dir is not None else None
            seed_new_model(seed + 1)
            refine = build_direct_regression(config.model)
            history[refine_name], seconds[refine_name] = fit(
                refine, refine_name, refine_cube_mm, train_extras, val_extras
            )
            model_paths.append(out_dir / f"{refine_name}.keras")
            _save_model(refine, model_paths[-1])

        metrics = {
            "variant": variant,
            "head": head if variant in MASK_VARIANTS else None,
            "models": [path.name for path in model_paths],
            "seg_model": recorded_path(seg_path, run_dir) if seg_path is not None else None,
            "seg_sha256": identity["seg_model"],
            "cube_mm": cube_mm,
            "refine_cube_mm": refine_cube_mm,
            "data": recorded_path(data_dir, run_dir),
            "frames": manifest.count,
            "size": manifest.size,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "seed": seed,
            "train_seconds_this_run": round(sum(seconds.values()), 1),
            "run": placement.to_dict(),
            "config": config.to_dict(),
            "history": history,
        }
        metrics_path = out_dir / f"{name}.json"
        write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
        if val_dir is not None:
            errors, _ = evaluate_regression(load_pipeline(model_paths[0], seg_path), val_dir, config.batch_size)
            metrics["val"] = {"data": recorded_path(val_dir, run_dir), **_summary(errors)}
            write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
        for step_name in history:
            remove_checkpoint(out_dir, step_name)
    return RegTrainingResult(model_paths=model_paths, metrics_path=metrics_path, metrics=metrics)


def _coarse_xyz(model: keras.Model, data_dir: Path, size: int, batch_size: int, progress: bool) -> np.ndarray:
    """The cascade's first estimate of the hand (mean joint, (N, 3) mm) on every frame of `data_dir`."""
    manifest = read_manifest(data_dir)
    center_xyz = uvd_to_xyz(load_arrays(data_dir, ["center_uvd"])["center_uvd"], manifest.camera_model)
    pred = predict_crop_units(model, regression_dataset(data_dir, batch_size, size=size), progress)
    return crop_to_joints(pred, center_xyz, float(manifest.cube_mm)).mean(axis=1)


def _batch_norm_layers(layer: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers of a model, nested models and wrappers included."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    children = list(getattr(layer, "layers", []))
    if hasattr(layer, "layer"):  # TimeDistributed and other wrappers
        children.append(layer.layer)
    return [bn for child in children for bn in _batch_norm_layers(child)]


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def _summary(errors: JointErrors) -> dict:
    values = errors.to_dict()
    return {key: values[key] for key in ("mean_3d_mm", "mean_2d_px", "per_joint_mm", "frames")}
