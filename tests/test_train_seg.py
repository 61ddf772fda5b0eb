"""Stage 1: the tf.data input, augmentation, training, resume and bad inputs."""

import json
import math
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpe.data.dataset import load_arrays
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
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
TINY_TRAINING = SegTrainingConfig(model=TINY_MODEL, batch_size=16, epochs=1, augment=AugmentConfig(10.0, 0.05))


def test_seg_dataset_yields_inputs_class_ids_and_hand_mask(synth_dir):
    batches = list(seg_dataset(synth_dir, 16, size=32))
    assert len(batches) == 3  # 48 frames
    labels = load_arrays(synth_dir, ["labels"])["labels"][:16]
    x, y, w = (t.numpy() for t in batches[0])
    assert x.shape == (16, 32, 32, 1) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(w, labels > 0)
    np.testing.assert_array_equal(y[labels > 0], labels[labels > 0].astype(np.int64) - 1)
    assert y.min() >= 0 and y.max() <= 19


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
    # Nearest neighbour on both: no blended depth, labels only where there is depth.
    np.testing.assert_array_equal(depth > 0, labels > 0)
    assert set(np.unique(labels)) <= set(np.unique(arrays["labels"]))
    assert np.isin(depth[depth > 0], arrays["depth_mm"][arrays["depth_mm"] > 0]).all()


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
    assert model.output_shape == (None, 32, 32, 20)
    # The JSON's validation accuracy is the saved model's.
    scores, _ = evaluate_model(model, synth_dir)
    assert scores.per_pixel_accuracy == pytest.approx(metrics["val"]["per_pixel_accuracy"], abs=1e-6)


def test_training_lowers_the_loss(synth_dir, tmp_path):
    config = replace(TINY_TRAINING, epochs=2, augment=AugmentConfig(), learning_rate=1e-2, batch_size=8)
    result = train_segmentation(synth_dir, tmp_path / "run", config, progress=False)
    losses = result.metrics["history"]["loss"]
    assert losses[-1] < losses[0]
    assert "val_loss" not in result.metrics["history"]  # no validation set, no empty column


def test_killed_run_resumes_from_the_backup(synth_dir, tmp_path):
    out = tmp_path / "run"
    config = replace(TINY_TRAINING, epochs=2, augment=AugmentConfig())
    with pytest.raises(Interrupt):
        train_segmentation(synth_dir, out, config, progress=False, callbacks=[StopAfter(epoch=1, batch=1)])
    assert (out / BACKUP_DIR / FIT_NAME).is_dir() and not (out / MODEL_NAME).exists()
    record = RecordEpochs()
    result = train_segmentation(synth_dir, out, config, progress=False, callbacks=[record])
    assert record.epochs == [1]  # epoch 0 was done before the kill
    # The optimiser's state came back too: its step count (and so the learning-rate schedule) went on.
    assert int(keras.saving.load_model(result.model_path).optimizer.iterations) == 2 * 3
    # The history covers all epochs, those before the kill too.
    assert len(result.metrics["history"]["loss"]) == 2
    assert len(json.loads((out / METRICS_NAME).read_text())["history"]["pixel_accuracy"]) == 2
    assert not (out / BACKUP_DIR / FIT_NAME).exists()


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
