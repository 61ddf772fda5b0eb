"""Stage 1: supervised training of the segmentation network on synthetic frames.

Pixelwise negative log-likelihood over the 21 classes (not hand + 20 parts) on
every pixel with depth (pixels without depth are not hand by definition), the
optimiser of the preset, TensorBoard logs, and a checkpoint after every epoch (`training.fit.fit_resumable`), so that a killed run resumes and
ends exactly where an uninterrupted one does. The trained model is written
atomically as `OUT/seg_synth.keras`, with its metrics in `OUT/seg_synth.json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import SegmentationScores, evaluate_segmentation
from keras_hpe.models.loading import load_model
from keras_hpe.models.segmentation import build_segmentation_model, model_crop_size, predict_parts
from keras_hpe.outputs import atomic_path, folder_lock, output_folder, recorded_path, write_text
from keras_hpe.presets import SegTrainingConfig
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
from keras_hpe.training.inputs import check_crop_size, seg_dataset

MODEL_NAME = "seg_synth.keras"
METRICS_NAME = "seg_synth.json"
FIT_NAME = "seg"  # OUT/backup/seg, OUT/logs/seg.csv
_EVAL_CHUNK = 1024  # frames segmented at once by evaluate_model


@dataclass
class SegTrainingResult:
    """What `train_segmentation` wrote and measured."""

    model_path: Path
    metrics_path: Path
    metrics: dict


def compile_segmentation(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Pixelwise NLL and accuracy over the pixels with depth, the not-hand arm included.

    The loss is the sum of the pixels' NLL weighted by `inputs.seg_examples`,
    i.e. the mean over the global batch's pixels with depth: a
    `MirroredStrategy` sums the replicas' gradients, so it trains on the
    gradient of one device (a mean per replica would weigh the pixels of a
    replica with fewer hand pixels more). Keras's `pixel_accuracy` is the mean
    of the batches' accuracies and counts the arm too; the paper's accuracy
    over hand pixels is `evaluate_model`'s.
    """
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(reduction="sum"),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy")],
    )


def train_segmentation(
    data_dir: str | Path,
    out_dir: str | Path,
    config: SegTrainingConfig,
    *,
    val_dir: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    run_dir: str | Path | None = None,
    strategy: str | tf.distribute.Strategy = "auto",
) -> SegTrainingResult:
    """Train the segmentation network on the labelled data set at `data_dir`; write OUT/seg_synth.keras.

    `epochs` and `batch_size` override the config's. Re-running after an
    interruption with the same arguments resumes from `OUT/backup`; with other
    arguments it is a UserError. With `val_dir`, Keras reports validation
    figures every epoch and the metrics JSON holds the final model's per-pixel
    and mean per-class accuracy there. The inputs are checked before `out_dir`
    is made, and `out_dir` is locked while the training runs. The metrics JSON
    records the data paths inside `run_dir` (a reproduction's) relative to it.
    `strategy` and `config.precision` place the training
    (`devices.choose_placement`); the batch size is the global batch.
    """
    config = with_run_length(config, epochs, batch_size)
    check_seed(seed)
    placement = choose_placement(strategy, config.precision, "segmentation")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = read_manifest(data_dir)
    if "labels" not in manifest.fields:
        raise UserError(f"data set {data_dir} ({manifest.domain}) has no part labels; stage 1 needs a labelled set")
    model_config = replace(config.model, size=manifest.size)
    config = replace(config, model=model_config)
    val = seg_dataset(val_dir, config.batch_size, size=model_config.size) if val_dir else None

    def train(epoch: int) -> tf.data.Dataset:
        return seg_dataset(
            data_dir, config.batch_size, size=model_config.size, shuffle=True, seed=seed, epoch=epoch,
            augment=config.augment, shuffle_buffer=config.shuffle_buffer,
        )

    identity = {
        "data": fingerprint(data_dir),
        "val": fingerprint(val_dir) if val_dir else None,
        "seed": seed,
        "config": asdict(config),
    }
    with output_folder(out_dir) as out_dir, folder_lock(out_dir, "training folder"):
        seed_new_model(seed)
        model = build_segmentation_model(model_config)
        steps = math.ceil(manifest.count / config.batch_size) * config.epochs
        history, seconds = fit_resumable(
            model, lambda trained: compile_segmentation(trained, make_optimizer(config, steps)), train,
            placement=placement, epochs=config.epochs, out_dir=out_dir, name=FIT_NAME, identity=identity, val=val,
            progress=progress, callbacks=callbacks,
        )
        model_path = out_dir / MODEL_NAME
        with atomic_path(model_path) as tmp:
            model.save(tmp)
        metrics = {
            "data": recorded_path(data_dir, run_dir),
            "frames": manifest.count,
            "size": manifest.size,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "seed": seed,
            "train_seconds_this_run": round(seconds, 1),
            "run": placement.to_dict(),
            "config": asdict(config),
            # All epochs, also those done before an interruption.
            "history": history,
        }
        if val_dir:
            scores = evaluate_model(model, val_dir)[0]
            metrics["val"] = {"data": recorded_path(val_dir, run_dir), **accuracy_summary(scores)}
        metrics_path = out_dir / METRICS_NAME
        write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
        remove_checkpoint(out_dir, FIT_NAME)
    return SegTrainingResult(model_path=model_path, metrics_path=metrics_path, metrics=metrics)


def load_segmentation_model(path: str | Path) -> keras.Model:
    """Load a `.keras` segmentation model, uncompiled (`models.loading.load_model`): callers predict or re-compile."""
    return load_model(path, "segmentation")


def evaluate_model(
    model: keras.Model, data_dir: str | Path, batch_size: int = 64
) -> tuple[SegmentationScores, dict[str, np.ndarray]]:
    """Segment a labelled data set and score it over hand pixels.

    Returns the scores and the arrays {depth_mm, labels (truth), pred_labels}.
    Raises UserError for data without labels or of another crop size than the model.
    """
    manifest = read_manifest(data_dir)
    if "labels" not in manifest.fields:
        raise UserError(
            f"data set {data_dir} ({manifest.domain}) has no part labels to evaluate against "
            "(for the sensor domain, make the evaluation split with --eval-labels)"
        )
    check_crop_size(data_dir, model_crop_size(model))
    arrays = load_arrays(data_dir, ["depth_mm", "labels", "center_uvd"])
    # In chunks: the (N, S, S, 21) probabilities of a whole large set would not fit in memory.
    chunks = [
        predict_parts(model, arrays["depth_mm"][start:start + _EVAL_CHUNK],
                      arrays["center_uvd"][start:start + _EVAL_CHUNK, 2], batch_size)[1]
        for start in range(0, manifest.count, _EVAL_CHUNK)
    ]
    arrays["pred_labels"] = np.concatenate(chunks)
    return evaluate_segmentation(arrays["pred_labels"], arrays["labels"], arrays["depth_mm"]), arrays


def accuracy_summary(scores: SegmentationScores) -> dict:
    """The headline accuracy figures of `scores`, for a metrics JSON."""
    return {
        "per_pixel_accuracy": scores.per_pixel_accuracy,
        "mean_class_accuracy": scores.mean_class_accuracy,
        "frames": scores.frames,
        "hand_pixels": scores.hand_pixels,
    }
