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
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_hpe.checks import is_file_name, is_finite, require
from keras_hpe.data.camera import uvd_to_xyz, xyz_to_uvd
from keras_hpe.data.crop import MAX_CROP_UNITS, crop_to_joints, joints_to_crop, normalize_depth, recrop_depth
from keras_hpe.data.dataset import load_arrays, make_tf_dataset, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import JointErrors, evaluate_joints
from keras_hpe.models.loading import load_model
from keras_hpe.models.regression import build_direct_regression, build_regression, part_channels
from keras_hpe.models.segmentation import model_crop_size, predict_parts
from keras_hpe.outputs import atomic_path, folder_lock, output_folder, recorded_path, write_text
from keras_hpe.presets import AugmentConfig, RegTrainingConfig
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
from keras_hpe.training.inputs import augment_batch, batch_seeds, check_crop_size, distributable, stream_seed
from keras_hpe.training.seg import load_segmentation_model

VARIANTS = ("direct", "cascade", "semi", "full", "oracle")
SEG_VARIANTS = ("semi", "full")  # segmented by a segmentation model
MASK_VARIANTS = (*SEG_VARIANTS, "oracle")  # the part-mask network; the oracle's masks are the true labels
ORACLE = "oracle"
HEADS = ("separate", "shared")
TRAIN_FIELDS = ["depth_mm", "joints_xyz", "center_uvd"]
REFINE_SUFFIX = "_refine"
SEG_CACHE_DIR = "seg_cache"
BATCH_NORM_EPOCH = 2**31 - 1  # the data of the batch-norm statistics pass: those of an epoch no training reaches


@dataclass
class RegTrainingResult:
    """What `train_regression` wrote and measured."""

    model_paths: list[Path]
    metrics_path: Path
    metrics: dict


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


def regression_dataset(
    data_dir: str | Path,
    batch_size: int,
    *,
    size: int,
    segmentation: np.ndarray | None = None,
    coarse_xyz: np.ndarray | None = None,
    refine_cube_mm: float | None = None,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    augment: AugmentConfig | None = None,
    jitter_mm: float = 0.0,
    shuffle_buffer: int = 8192,
) -> tf.data.Dataset:
    """Batches (inputs, joints in half-cube units (B, 14, 3)) of depth + joints data for the regression network.

    inputs is the depth (B, S, S, 1) or, with `segmentation` (N, S, S) part
    labels, {"depth": depth, "segmentation": one-hot (B, S, S, 20)}. With `coarse_xyz`
    (N, 3) mm, frames are re-cropped to the cube of `refine_cube_mm` around
    those points (the cascade's second step), jittered by `jitter_mm`.
    Frames are read in the data set's order (so that the per-frame arrays
    line up) and, with `shuffle`, mixed in a `shuffle_buffer` window. The
    order, jitter and augmentation are those of epoch `epoch` of a run seeded
    `seed`: the same at every pass over the returned data set.
    """
    data_dir = Path(data_dir)
    check_crop_size(data_dir, size)
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    manifest = read_manifest(data_dir)
    camera, cube_mm = manifest.camera_model, float(manifest.cube_mm)
    frames = make_tf_dataset(data_dir, TRAIN_FIELDS)
    extras = {}
    if segmentation is not None:
        extras["segmentation"] = _check_per_frame(segmentation, (manifest.count, size, size), "segmentation")
    if coarse_xyz is not None:
        if refine_cube_mm is None:
            raise UserError("coarse_xyz needs refine_cube_mm (the cascade's second cube)")
        extras["coarse_xyz"] = _check_per_frame(coarse_xyz, (manifest.count, 3), "coarse_xyz").astype(np.float32)
    if extras:
        streams = {name: _array_dataset(array) for name, array in extras.items()}
        frames = tf.data.Dataset.zip(frames, tf.data.Dataset.zip(streams)).map(lambda a, b: {**a, **b})
    if shuffle:
        # tf.data also mixes TensorFlow's global seed into this seed: every trainer sets it first.
        frames = frames.shuffle(
            min(shuffle_buffer, manifest.count), seed=stream_seed(seed, epoch, "shuffle"),
            reshuffle_each_iteration=False,
        )
    frames = batch_seeds(frames.batch(batch_size), seed, epoch, "augment")
    augment = augment if augment is not None and augment.enabled else None

    def prepare(batch, pair):
        seed_jitter, seed_augment = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
        depth_mm, center_uvd, cube = batch["depth_mm"], batch["center_uvd"], cube_mm
        if "coarse_xyz" in batch:
            coarse = batch["coarse_xyz"]
            if jitter_mm > 0:
                coarse += jitter_mm * tf.random.stateless_normal(tf.shape(coarse), seed_jitter)
            depth_mm, center_uvd = recrop_depth(depth_mm, center_uvd, coarse, cube_mm, refine_cube_mm, camera)
            cube = refine_cube_mm
        center_xyz = tf.numpy_function(
            lambda c: uvd_to_xyz(c, camera).astype(np.float32), [center_uvd], tf.float32, stateful=False
        )
        center_xyz.set_shape([None, 3])
        views = {"depth_mm": depth_mm, "joints": joints_to_crop(batch["joints_xyz"], center_xyz, cube)}
        if "segmentation" in batch:
            views["segmentation"] = batch["segmentation"]
        if augment is not None:
            images = [name for name in ("depth_mm", "segmentation") if name in views]
            views = augment_batch(views, seed_augment, augment, image_fields=images, joint_fields=["joints"])
        inputs = {"depth": normalize_depth(views["depth_mm"], center_uvd[:, 2], cube)[..., None]}
        if "segmentation" in views:
            inputs["segmentation"] = part_channels(views["segmentation"])
        # A depth-only model takes a bare tensor, not a dict.
        return (inputs if len(inputs) > 1 else inputs["depth"]), views["joints"]

    return distributable(frames.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def segment_data_set(
    seg_model: keras.Model, data_dir: str | Path, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Part labels (N, S, S) uint8 of every frame of `data_dir` by `seg_model` (`predict_parts`), in order."""
    check_crop_size(data_dir, model_crop_size(seg_model))
    manifest = read_manifest(data_dir)
    labels = np.empty((manifest.count, manifest.size, manifest.size), dtype=np.uint8)
    # A few batches at a time: the probabilities are 20 floats per pixel.
    chunks = make_tf_dataset(data_dir, ["depth_mm", "center_uvd"]).batch(4 * batch_size)
    start = 0
    with tqdm(total=manifest.count, desc="segment", unit="frame", disable=not progress) as bar:
        for chunk in chunks.as_numpy_iterator():
            count = len(chunk["depth_mm"])
            labels[start : start + count] = predict_parts(
                seg_model, chunk["depth_mm"], chunk["center_uvd"][:, 2], batch_size
            )[1]
            start += count
            bar.update(count)
    return labels


def cached_segmentation(
    seg_path: str | Path, data_dir: str | Path, cache_dir: str | Path, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """`segment_data_set`, computed once: cached in `cache_dir` under the hashes of the data and the model.

    Returns a read-only memory map of the cached (N, S, S) uint8 labels.
    """
    seg_path, data_dir = Path(seg_path), Path(data_dir)
    read_manifest(data_dir)
    key = f"{fingerprint(data_dir)[:12]}-{fingerprint(seg_path)[:12]}"
    path = Path(cache_dir) / f"labels-{key}.npy"
    if not path.exists():
        labels = segment_data_set(load_segmentation_model(seg_path), data_dir, batch_size, progress)
        with atomic_path(path) as tmp:
            np.save(tmp, labels)
    return np.load(path, mmap_mode="r")


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
        _check_regression_data(step_data, manifest.size)
        if variant == ORACLE:
            _check_oracle_data(step_data)
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
            labels = {"train": _true_labels(data_dir), "val": _true_labels(val_dir) if val_dir is not None else None}
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
        model = build_regression(config.model, head) if variant in MASK_VARIANTS else build_direct_regression(config.model)
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
        variant = "semi" if len(_load_model(model_path).inputs) == 2 else "direct"
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
    model = _load_model(pipeline.model_path)
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
        _check_oracle_data(data_dir)
        labels = _true_labels(data_dir)
    center_xyz = uvd_to_xyz(load_arrays(data_dir, ["center_uvd"])["center_uvd"], camera)
    data = regression_dataset(data_dir, batch_size, size=size, segmentation=labels)
    joints_xyz = crop_to_joints(_predict(model, data, progress), center_xyz, cube_mm)
    if pipeline.refine_path is not None:
        refine = _load_model(pipeline.refine_path)
        coarse_xyz = joints_xyz.mean(axis=1)
        data = regression_dataset(
            data_dir, batch_size, size=size, coarse_xyz=coarse_xyz, refine_cube_mm=pipeline.refine_cube_mm
        )
        # The second crop is centred on the first estimate (`crop.recrop_depth`).
        joints_xyz = crop_to_joints(_predict(refine, data, progress), coarse_xyz, pipeline.refine_cube_mm)
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


def _predict(model: keras.Model, data: tf.data.Dataset, progress: bool) -> np.ndarray:
    """Joints in half-cube units (N, 14, 3), clipped to `MAX_CROP_UNITS`."""
    pred = model.predict(data.map(lambda inputs, joints: inputs), verbose=1 if progress else 0)
    return np.clip(pred, -MAX_CROP_UNITS, MAX_CROP_UNITS)


def _coarse_xyz(model: keras.Model, data_dir: Path, size: int, batch_size: int, progress: bool) -> np.ndarray:
    """The cascade's first estimate of the hand (mean joint, (N, 3) mm) on every frame of `data_dir`."""
    manifest = read_manifest(data_dir)
    center_xyz = uvd_to_xyz(load_arrays(data_dir, ["center_uvd"])["center_uvd"], manifest.camera_model)
    pred = _predict(model, regression_dataset(data_dir, batch_size, size=size), progress)
    return crop_to_joints(pred, center_xyz, float(manifest.cube_mm)).mean(axis=1)


def _batch_norm_layers(layer: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers of a model, nested models and wrappers included."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    children = list(getattr(layer, "layers", []))
    if hasattr(layer, "layer"):  # TimeDistributed and other wrappers
        children.append(layer.layer)
    return [bn for child in children for bn in _batch_norm_layers(child)]


def _array_dataset(array: np.ndarray, chunk: int = 1024) -> tf.data.Dataset:
    """Per-frame slices of a (memory-mapped) array, read in chunks rather than embedded in the graph."""

    def chunks():
        for start in range(0, len(array), chunk):
            yield np.asarray(array[start : start + chunk])

    spec = tf.TensorSpec((None,) + array.shape[1:], tf.as_dtype(array.dtype))
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=spec).unbatch()
    return dataset.apply(tf.data.experimental.assert_cardinality(len(array)))


def _check_regression_data(data_dir: str | Path, size: int) -> None:
    """UserError unless `data_dir` is a data set of `size` x `size` crops with the fields the regression reads."""
    check_crop_size(data_dir, size)
    manifest = read_manifest(data_dir)
    missing = [name for name in TRAIN_FIELDS if name not in manifest.fields]
    if missing:
        raise UserError(f"data set {data_dir} ({manifest.domain}) has no field(s) {', '.join(missing)}; "
                        "the regression needs depth, joints and crop centres")


def _check_oracle_data(data_dir: str | Path) -> None:
    """UserError unless `data_dir` has the part labels the oracle reads (the simulator's, or a labelled split)."""
    manifest = read_manifest(data_dir)
    if "labels" not in manifest.fields:
        raise UserError(
            f"data set {data_dir} ({manifest.domain}) has no part labels: the oracle (e) regresses from the true "
            "segmentation, which only the simulated real domain can give (render it with --eval-labels)"
        )


def _true_labels(data_dir: str | Path) -> np.ndarray:
    """The ground-truth part labels (N, S, S) of a data set: the oracle's segmentation, never the method's."""
    return load_arrays(data_dir, ["labels"])["labels"]


def _check_per_frame(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if tuple(array.shape) != shape:
        raise UserError(f"{name} must have shape {shape} (one entry per frame), got {tuple(array.shape)}")
    return array


def _load_model(path: Path) -> keras.Model:
    """Load a `.keras` regression model for inference (`models.loading.load_model`)."""
    return load_model(path, "regression")


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def _summary(errors: JointErrors) -> dict:
    values = errors.to_dict()
    return {key: values[key] for key in ("mean_3d_mm", "mean_2d_px", "per_joint_mm", "frames")}
