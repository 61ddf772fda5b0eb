"""Stage 1: the tf.data input, augmentation, training, resume and bad inputs."""

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpe import faults
from keras_hpe.data.dataset import load_arrays
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.outputs import folder_lock
from keras_hpe.presets import AugmentConfig, SegTrainingConfig, get_preset
from keras_hpe.training.inputs import augment_batch, seg_dataset, transform_images, transform_joints
from keras_hpe.training.fit import BACKUP_DIR, LOG_DIR
from keras_hpe.training.seg import (
    FIT_NAME,
    METRICS_NAME,
    MODEL_NAME,
    evaluate_model,
    train_segmentation,
)
from interruptions import Interrupt, RecordEpochs, StopAfter

TINY_MODEL = SegmentationConfig(filters=(4, 8, 8), kernel_sizes=(3, 3, 3), dilation_rates=(1, 2, 2), hidden_units=(8,))
TINY_TRAINING = SegTrainingConfig(model=TINY_MODEL, batch_size=16, epochs=1, augment=AugmentConfig(10.0, 0.05),
                                  precision="float32")


def test_seg_dataset_yields_inputs_part_ids_and_pixel_weights(synth_dir):
    batches = list(seg_dataset(synth_dir, 16, size=32))
    assert len(batches) == 3  # 48 frames
    frames = load_arrays(synth_dir, ["labels", "depth_mm"])
    labels, depth_mm = frames["labels"][:16], frames["depth_mm"][:16]
    x, y, w = (t.numpy() for t in batches[0])
    assert x.shape == (16, 32, 32, 1) and np.all(np.isfinite(x))
    # Every pixel with depth weighs the same, the not-hand arm (label 0 with depth) included; the batch sums to 1.
    np.testing.assert_allclose(w, (depth_mm > 0) / np.count_nonzero(depth_mm > 0), rtol=1e-6)
    assert np.any((labels == 0) & (depth_mm > 0))
    np.testing.assert_array_equal(y, labels)  # class k is part id k, 0 = not hand


def test_seg_dataset_is_deterministic_given_the_seed(synth_dir):
    def first(seed):
        dataset = seg_dataset(synth_dir, 8, size=32, shuffle=True, seed=seed, augment=AugmentConfig(30.0, 0.1))
        return next(iter(dataset))[1].numpy()

    np.testing.assert_array_equal(first(3), first(3))
    assert not np.array_equal(first(3), first(4))


def test_identity_transform_keeps_images_and_joints():
    images = np.random.default_rng(0).integers(0, 21, size=(2, 9, 9)).astype(np.uint8)
    out = transform_images(images, tf.zeros(2), tf.ones(2))
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out.numpy(), images)
    joints = np.random.default_rng(1).normal(size=(2, 14, 3)).astype(np.float32)
    np.testing.assert_allclose(transform_joints(joints, tf.zeros(2), tf.ones(2)).numpy(), joints, atol=1e-6)


@pytest.mark.parametrize("angle_deg, scale", [(90.0, 1.0), (-30.0, 1.1), (45.0, 0.9)])
def test_images_and_joints_move_together(angle_deg, scale):
    size = 33
    center = (size - 1) / 2
    # A joint at the centre depth, in half-cube units (x right, y up): crop column = c + x S / 2,
    # row = c - y S / 2.
    joint = np.array([0.25, 0.375, 0.0], np.float32)
    image = np.zeros((1, size, size), np.float32)
    row, col = round(center - joint[1] * size / 2), round(center + joint[0] * size / 2)
    image[0, row - 1:row + 2, col - 1:col + 2] = 1.0  # a 3x3 blob: nearest sampling keeps some of it
    angle = tf.constant([np.radians(angle_deg)], tf.float32)
    moved_image = transform_images(image, angle, tf.constant([scale])).numpy()[0]
    moved_joint = transform_joints(joint[None, None], angle, tf.constant([scale])).numpy()[0, 0]
    row, col = np.argwhere(moved_image == 1.0).mean(axis=0)
    assert col == pytest.approx(center + moved_joint[0] * size / 2, abs=1.0)
    assert row == pytest.approx(center - moved_joint[1] * size / 2, abs=1.0)
    assert moved_joint[2] == joint[2]


def test_augmentation_keeps_labels_on_depth(synth_dir):
    arrays = load_arrays(synth_dir, ["depth_mm", "labels"])
    out = augment_batch(
        {name: tf.constant(a) for name, a in arrays.items()}, tf.constant([1, 2]), AugmentConfig(180.0, 0.2)
    )
    depth, labels = out["depth_mm"].numpy(), out["labels"].numpy()
    assert not np.array_equal(labels, arrays["labels"])
    # Nearest neighbour on both, sampled at the same places: every output pixel's (depth, label) pair is a
    # pixel of its input frame (no blended depth, no label moved off its depth; the arm keeps label 0).
    assert (depth[labels > 0] > 0).all()
    for frame in range(len(depth)):
        pairs = set(zip(arrays["depth_mm"][frame].ravel().tolist(), arrays["labels"][frame].ravel().tolist()))
        assert set(zip(depth[frame].ravel().tolist(), labels[frame].ravel().tolist())) <= pairs
    assert ((depth > 0) & (labels == 0)).any()  # the synthetic forearm: depth, not hand


def test_one_epoch_writes_model_metrics_and_logs(synth_dir, tmp_path):
    out = tmp_path / "run"
    result = train_segmentation(synth_dir, out, TINY_TRAINING, val_dir=synth_dir, progress=False)
    assert result.model_path == out / MODEL_NAME and result.model_path.is_file()
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["frames"] == 48 and metrics["size"] == 32 and metrics["epochs"] == 1
    assert math.isfinite(metrics["history"]["loss"][0])
    assert 0.0 <= metrics["val"]["per_pixel_accuracy"] <= 1.0 and metrics["val"]["frames"] == 48
    assert not (out / BACKUP_DIR).exists()  # a finished run leaves no backup folder
    assert (out / LOG_DIR / f"{FIT_NAME}.csv").read_text().count("\n") == 2  # header + 1 epoch
    model = keras.saving.load_model(result.model_path)
    assert model.output_shape == (None, 32, 32, 21)
    # The JSON's validation accuracy is the saved model's.
    scores, _ = evaluate_model(model, synth_dir)
    assert scores.per_pixel_accuracy == pytest.approx(metrics["val"]["per_pixel_accuracy"], abs=1e-6)


def test_training_lowers_the_loss(synth_dir, tmp_path):
    config = replace(TINY_TRAINING, epochs=2, augment=AugmentConfig(), learning_rate=1e-2, batch_size=8)
    result = train_segmentation(synth_dir, tmp_path / "run", config, progress=False)
    losses = result.metrics["history"]["loss"]
    assert losses[-1] < losses[0]
    assert "val_loss" not in result.metrics["history"]  # no validation set, no empty column


def test_bfloat16_training_saves_a_float32_model(synth_dir, tmp_path):
    config = replace(TINY_TRAINING, augment=AugmentConfig(), precision="mixed")  # bfloat16 on a CPU
    result = train_segmentation(synth_dir, tmp_path / "bf16", config, progress=False)
    assert math.isfinite(result.metrics["history"]["loss"][0])
    assert (result.metrics["run"]["precision"], result.metrics["config"]["precision"]) == ("mixed_bfloat16", "mixed")
    model = keras.saving.load_model(result.model_path)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    float32 = train_segmentation(synth_dir, tmp_path / "fp32", replace(config, precision="float32"), progress=False)
    # Trained in bfloat16, not float32 under another name.
    assert not _weights_equal(result.model_path, float32.model_path)


def test_an_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="precision.*float16"):
        replace(TINY_TRAINING, precision="float16")


def test_the_metrics_record_the_devices_strategy_and_precision(synth_dir, tmp_path):
    result = train_segmentation(synth_dir, tmp_path, TINY_TRAINING, progress=False)
    assert result.metrics["run"] == {
        "devices": [device.name for device in tf.config.list_logical_devices()], "strategy": "default",
        "replicas": 1, "replica_devices": [], "precision": "float32"}


def _weights_equal(a, b) -> bool:
    weights = list(zip(keras.saving.load_model(a).get_weights(), keras.saving.load_model(b).get_weights()))
    return bool(weights) and all(np.array_equal(x, y) for x, y in weights)


@pytest.fixture(scope="module")
def uninterrupted(synth_dir, tmp_path_factory):
    """Two augmented, validated epochs of `TINY_TRAINING`, never interrupted."""
    config = replace(TINY_TRAINING, epochs=2)
    return train_segmentation(synth_dir, tmp_path_factory.mktemp("reference"), config, val_dir=synth_dir,
                              progress=False)


def test_an_uninterrupted_run_is_repeatable(uninterrupted, synth_dir, tmp_path):
    again = train_segmentation(synth_dir, tmp_path, replace(TINY_TRAINING, epochs=2), val_dir=synth_dir,
                               progress=False)
    assert _weights_equal(again.model_path, uninterrupted.model_path)
    assert again.metrics["history"] == uninterrupted.metrics["history"]


class StopAtEpochBegin(StopAfter):
    """Raise when epoch `epoch` begins: a kill right after the previous epoch's checkpoint."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise Interrupt()


@pytest.mark.parametrize("kill", [StopAfter(epoch=1, batch=1), StopAtEpochBegin(epoch=1, batch=0)],
                         ids=["mid-epoch", "after-checkpoint"])
def test_a_killed_run_resumes_to_the_uninterrupted_weights(uninterrupted, synth_dir, tmp_path, kill, capsys):
    config = replace(TINY_TRAINING, epochs=2)
    with pytest.raises(Interrupt):
        train_segmentation(synth_dir, tmp_path, config, val_dir=synth_dir, progress=False, callbacks=[kill])
    assert (tmp_path / BACKUP_DIR / FIT_NAME).is_dir() and not (tmp_path / MODEL_NAME).exists()
    record = RecordEpochs()
    capsys.readouterr()
    result = train_segmentation(synth_dir, tmp_path, config, val_dir=synth_dir, callbacks=[record])
    assert record.epochs == [1]  # epoch 0 was done before the kill
    shown = capsys.readouterr().out
    assert "Epoch 2/2" in shown and "Epoch 1/2" not in shown  # the progress bar counts the whole run's epochs
    assert _weights_equal(result.model_path, uninterrupted.model_path)
    # The optimiser's state came back too: its step count (and so the learning-rate schedule) went on.
    assert record.steps == 2 * 3
    # The history covers all epochs, those before the kill too, as in the uninterrupted run.
    assert result.metrics["history"] == uninterrupted.metrics["history"]
    assert result.metrics["val"] == uninterrupted.metrics["val"]
    assert (tmp_path / LOG_DIR / f"{FIT_NAME}.csv").read_text() == (
        uninterrupted.model_path.parent / LOG_DIR / f"{FIT_NAME}.csv").read_text()
    assert not (tmp_path / BACKUP_DIR).exists()


def _cli_train(out, data, *options, crash_at=None):
    env = {key: value for key, value in os.environ.items() if key != faults.ENV}
    if crash_at:
        env[faults.ENV] = crash_at
    command = [sys.executable, "-m", "keras_hpe.cli.main", "train", "seg", "--data", str(data), "--out", str(out),
               "--epochs", "2", "--batch", "16", "--quiet", *options]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_sigkilled_run_resumes_exactly(synth_dir, tmp_path):
    """`keras-hpe train seg` killed by SIGKILL in epoch 2 (48 frames: 3 batches an epoch), then run again."""
    reference = train_segmentation(synth_dir, tmp_path / "reference", get_preset("quick").seg, epochs=2,
                                   batch_size=16, progress=False)
    out = tmp_path / "killed"
    killed = _cli_train(out, synth_dir, crash_at=f"fit.batch/{FIT_NAME}:5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert json.loads((out / BACKUP_DIR / FIT_NAME / "state.json").read_text())["epochs_done"] == 1
    done = _cli_train(out, synth_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _weights_equal(out / MODEL_NAME, reference.model_path)
    assert json.loads((out / METRICS_NAME).read_text())["history"] == reference.metrics["history"]


def test_resuming_with_other_settings_is_refused(synth_dir, tmp_path):
    config = replace(TINY_TRAINING, epochs=2)
    with pytest.raises(Interrupt):
        train_segmentation(synth_dir, tmp_path, config, progress=False, callbacks=[StopAfter(epoch=1, batch=0)])
    with pytest.raises(UserError, match=rf"{tmp_path}.*different: seed\b.*delete {tmp_path / BACKUP_DIR / FIT_NAME}"):
        train_segmentation(synth_dir, tmp_path, config, seed=1, progress=False)
    with pytest.raises(UserError, match=r"different: config\.epochs\b"):
        train_segmentation(synth_dir, tmp_path, config, epochs=3, progress=False)
    assert (tmp_path / BACKUP_DIR / FIT_NAME / "state.json").is_file()  # the interrupted run's state is kept


def test_a_second_training_into_a_locked_folder_is_refused(synth_dir, tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(UserError, match=f"{tmp_path} is being written by another process"):
            train_segmentation(synth_dir, tmp_path, TINY_TRAINING, progress=False)
    assert not (tmp_path / MODEL_NAME).exists()


def test_a_failing_run_leaves_no_output_folder(synth_dir, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        train_segmentation(synth_dir, tmp_path / "a" / "out", TINY_TRAINING, val_dir=tmp_path / "none",
                           progress=False)
    with pytest.raises(UserError, match="seed"):
        train_segmentation(synth_dir, tmp_path / "a" / "out", TINY_TRAINING, seed=-1, progress=False)
    assert not (tmp_path / "a").exists()


def test_missing_data_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        train_segmentation(tmp_path / "nothing", tmp_path / "out", TINY_TRAINING, progress=False)


def test_data_without_labels_is_a_user_error(sensor_dir, tmp_path):
    with pytest.raises(UserError, match="no part labels"):
        train_segmentation(sensor_dir, tmp_path / "out", TINY_TRAINING, progress=False)
    with pytest.raises(UserError, match="no part labels"):
        evaluate_model(build_segmentation_model(replace(TINY_MODEL, size=32)), sensor_dir)


def test_data_of_another_crop_size_than_the_model_is_a_user_error(synth_dir):
    model = build_segmentation_model(replace(TINY_MODEL, size=48))
    with pytest.raises(UserError, match="32x32.*48x48"):
        evaluate_model(model, synth_dir)


def test_validation_data_of_another_size_is_a_user_error(synth_dir, tmp_path):
    from keras_hpe.data.synth import generate_synth

    other = tmp_path / "synth16"
    generate_synth(other, 4, seed=5, size=16, progress=False)
    with pytest.raises(UserError, match="16x16.*32x32"):
        train_segmentation(synth_dir, tmp_path / "out", TINY_TRAINING, val_dir=other, progress=False)


def test_presets_name_their_sources():
    paper = get_preset("paper").seg
    assert (paper.optimizer, paper.learning_rate, paper.batch_size, paper.epochs) == ("sgd", 0.1, 1, 100)
    with pytest.raises(UserError, match="unknown preset"):
        get_preset("huge")
