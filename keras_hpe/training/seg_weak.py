"""Stage 2: weakly-supervised fine-tuning of the segmentation network (paper section 3.1).

The stage-1 model is trained further on a 9 : 1 mix of synthetic frames (dense
labels) and real frames whose restored maps passed the quality gate
(`restoration.pseudo_labels`), 10 epochs by default, as in the paper. The input
pipeline, loss, metrics, optimiser, logs and resume are stage 1's
(`training.inputs.seg_frames` and `seg_batches`, `training.seg`): only the mixing
is new.

The paper fine-tuned with SGD (learning rate 0.1 with decay) and batch 1; we use
the preset's optimiser, schedule and batch size (quick: Adam, cosine decay,
batch 32), which train on a 2-core CPU in minutes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_hpe.data.dataset import read_manifest
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import model_crop_size
from keras_hpe.outputs import atomic_path, folder_lock, output_folder, recorded_path, write_text
from keras_hpe.presets import AugmentConfig, SegTrainingConfig
from keras_hpe.restoration.pseudo_labels import read_restored_manifest
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
from keras_hpe.training.inputs import check_labelled, seg_batches, seg_frames, stream_seed
from keras_hpe.training.seg import accuracy_summary, compile_segmentation, evaluate_model, load_segmentation_model

MODEL_NAME = "seg_weak.keras"
METRICS_NAME = "seg_weak.json"
FIT_NAME = "seg_weak"  # OUT/backup/seg_weak, OUT/logs/seg_weak.csv
WEAK_EPOCHS = 10  # the paper's
SYNTH_WEIGHT = 0.9  # the paper's 9 : 1 mix of synthetic and restored real frames


@dataclass
class SegWeakResult:
    """What `train_segmentation_weak` wrote and measured."""

    model_path: Path
    metrics_path: Path
    metrics: dict


def mixed_seg_dataset(
    synth_dir: str | Path,
    restored_dir: str | Path,
    batch_size: int,
    steps: int,
    *,
    size: int,
    synth_weight: float = SYNTH_WEIGHT,
    seed: int = 0,
    epoch: int = 0,
    augment: AugmentConfig | None = None,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """`steps` batches (x, class ids, foreground mask) whose frames come from either set with the given odds.

    Each frame is drawn from the synthetic set with probability `synth_weight`,
    else from the restored real set; each set is read in passes shuffled by
    stage 1's `seg_frames`, as many as the draws need, so the smaller restored
    set is cycled through; the mixed frames are batched and augmented by
    `seg_batches`. The draws, orders and augmentation are those of epoch
    `epoch` of a run seeded `seed`: the same at every pass over the returned
    data set.
    """
    _check_synth_weight(synth_weight)
    if batch_size < 1 or steps < 1:
        raise UserError(f"batch size and steps must be >= 1, got {batch_size} and {steps}")
    draws = np.random.default_rng(stream_seed(seed, epoch, "mix")).random(steps * batch_size)
    sources = (draws >= synth_weight).astype(np.int64)  # 0: synthetic, 1: restored real

    def frames(data_dir: str | Path, source: int) -> tf.data.Dataset:
        """The frames of one set, pass after pass, enough for this epoch's draws from it."""
        passes = max(1, math.ceil(np.count_nonzero(sources == source) / read_manifest(data_dir).count))
        return seg_frames(data_dir, size=size, shuffle=True, seed=stream_seed(seed, source, "source"), epoch=epoch,
                          shuffle_buffer=shuffle_buffer, passes=passes)

    mixed = tf.data.Dataset.choose_from_datasets(
        [frames(synth_dir, 0), frames(restored_dir, 1)], tf.data.Dataset.from_tensor_slices(sources)
    )
    batches = seg_batches(mixed, batch_size, seed=seed, epoch=epoch, augment=augment)
    return batches.apply(tf.data.experimental.assert_cardinality(steps))


def weak_steps_per_epoch(restored_frames: int, batch_size: int, synth_weight: float = SYNTH_WEIGHT) -> int:
    """Batches of an epoch of stage 2: enough to draw each of `restored_frames` about once (see
    `train_segmentation_weak`)."""
    # Rounded first: 1 - 0.9 is 0.09999999999999998 in floating point, which would add a step.
    frames_per_epoch = round(restored_frames / (1 - _check_synth_weight(synth_weight)), 6)
    return max(1, math.ceil(frames_per_epoch / batch_size))


def _check_synth_weight(synth_weight: float) -> float:
    if not 0.0 < synth_weight < 1.0:
        raise UserError(f"the synthetic share of the mix must be in (0, 1), got {synth_weight}")
    return synth_weight


def train_segmentation_weak(
    init_model: str | Path,
    synth_dir: str | Path,
    restored_dir: str | Path,
    out_dir: str | Path,
    config: SegTrainingConfig,
    *,
    epochs: int = WEAK_EPOCHS,
    batch_size: int | None = None,
    synth_weight: float = SYNTH_WEIGHT,
    val_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    run_dir: str | Path | None = None,
    strategy: str | tf.distribute.Strategy = "auto",
) -> SegWeakResult:
    """Fine-tune the stage-1 model `init_model` on synthetic + restored real frames; write OUT/seg_weak.keras.

    An epoch is as many batches as it takes to draw every restored real frame
    about once (restored frames / (1 - `synth_weight`) / batch): the pseudo
    labels are what this stage adds, and the epoch's cost then does not grow
    with the synthetic set (with one pass over the synthetic frames instead,
    the quick plan's 30,000 frames made stage 2 4,167 steps an epoch, 12
    minutes for its 2 epochs on 2 cores; now ~930). `config` supplies the
    optimiser, schedule, augmentation and (unless `batch_size` is given) the
    batch size; its architecture and epochs are not used. Re-running an
    interrupted run with the same arguments resumes from OUT/backup; with
    other arguments it is a UserError. With `val_dir` (a labelled real
    evaluation split), the metrics JSON holds the fine-tuned model's accuracy
    there. The inputs are checked before `out_dir` is made, and `out_dir` is
    locked while the training runs. The metrics JSON records the paths inside
    `run_dir` (a reproduction's) relative to it. `strategy` and
    `config.precision` place the training (`devices.choose_placement`); the
    batch size is the global batch.
    """
    config = with_run_length(config, epochs, batch_size)
    check_seed(seed)
    placement = choose_placement(strategy, config.precision, "segmentation")
    init_model, out_dir = Path(init_model), Path(out_dir)
    synth = read_manifest(synth_dir)
    restored = read_restored_manifest(restored_dir)
    model = load_segmentation_model(init_model)
    size = model_crop_size(model)
    for data_dir in (synth_dir, restored_dir, val_dir) if val_dir else (synth_dir, restored_dir):
        check_labelled(data_dir, size)
    steps = weak_steps_per_epoch(restored.count, config.batch_size, synth_weight)

    def train(epoch: int) -> tf.data.Dataset:
        return mixed_seg_dataset(
            synth_dir, restored_dir, config.batch_size, steps, size=size, synth_weight=synth_weight, seed=seed,
            epoch=epoch, augment=config.augment, shuffle_buffer=config.shuffle_buffer,
        )

    # The architecture is the initial model's; the preset's is not used.
    settings = {key: value for key, value in asdict(config).items() if key != "model"}
    identity = {
        "init_model": fingerprint(init_model),
        "synth": fingerprint(synth_dir),
        "restored": fingerprint(restored_dir),
        "synth_weight": synth_weight,
        "seed": seed,
        "config": settings,
    }
    with output_folder(out_dir) as out_dir, folder_lock(out_dir, "training folder"):
        seed_new_model(seed)
        history, seconds = fit_resumable(
            model, lambda trained: compile_segmentation(trained, make_optimizer(config, steps * config.epochs)), train,
            placement=placement, epochs=config.epochs, out_dir=out_dir, name=FIT_NAME, identity=identity,
            progress=progress, callbacks=callbacks,
        )
        model_path = out_dir / MODEL_NAME
        with atomic_path(model_path) as tmp:
            model.save(tmp)
        metrics = {
            "init_model": {"path": recorded_path(init_model, run_dir), "sha256": identity["init_model"]},
            "synth": {"path": recorded_path(synth_dir, run_dir), "frames": synth.count},
            "restored": {"path": recorded_path(restored_dir, run_dir), "frames": restored.count,
                         "method": restored.params["restoration"]["method"]},
            "synth_weight": synth_weight,
            "size": size,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "steps_per_epoch": steps,
            "seed": seed,
            "train_seconds_this_run": round(seconds, 1),
            "run": placement.to_dict(),
            "config": settings,
            # All epochs, also those done before an interruption.
            "history": history,
        }
        if val_dir:
            metrics["val"] = {"data": recorded_path(val_dir, run_dir),
                              **accuracy_summary(evaluate_model(model, val_dir)[0])}
        metrics_path = out_dir / METRICS_NAME
        write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
        remove_checkpoint(out_dir, FIT_NAME)
    return SegWeakResult(model_path=model_path, metrics_path=metrics_path, metrics=metrics)
