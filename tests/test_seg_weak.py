"""Stage 2: the 9 : 1 mix of synthetic and restored real frames, fine-tuning, resume and bad inputs."""

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from keras_hpe.data.dataset import read_manifest
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.outputs import folder_lock
from keras_hpe.presets import AugmentConfig, SegTrainingConfig
from keras_hpe.restoration.pseudo_labels import restore_dataset
from keras_hpe.training.inputs import seg_dataset
from keras_hpe.training.fit import BACKUP_DIR
from keras_hpe.training.seg_weak import FIT_NAME, METRICS_NAME, MODEL_NAME, mixed_seg_dataset, train_segmentation_weak
from interruptions import Interrupt, RecordEpochs, StopAfter

TINY_TRAINING = SegTrainingConfig(batch_size=16, augment=AugmentConfig())  # the architecture is the init model's


@pytest.fixture(scope="module")
def restored_dir(seg_model_path, dictionary_dir, sensor_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2") / "restored"
    return restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, progress=False).out_dir


def frame_inputs(data_dir):
    """Each frame's network input (S * S,), as the mix's per-frame pipeline makes it."""
    return np.stack([x.numpy().reshape(-1) for x, _, _ in seg_dataset(data_dir, 1, size=32)])


def test_mix_draws_frames_from_both_sources_at_the_given_odds(synth_dir, sensor_eval_dir):
    # The real evaluation split stands for the restored set here: any labelled set mixes alike.
    synth, real = frame_inputs(synth_dir), frame_inputs(sensor_eval_dir)
    batches = list(mixed_seg_dataset(synth_dir, sensor_eval_dir, 16, 25, size=32, seed=0))
    assert len(batches) == 25
    x = np.concatenate([b[0].numpy().reshape(len(b[0]), -1) for b in batches])
    nearest_synth = np.abs(x[:, None] - synth[None]).max(axis=-1).min(axis=1)
    nearest_real = np.abs(x[:, None] - real[None]).max(axis=-1).min(axis=1)
    # Every drawn frame is one of the two sets' frames, unchanged (no augmentation asked for).
    assert np.all(np.minimum(nearest_synth, nearest_real) < 1e-5)
    real_share = np.mean(nearest_real < nearest_synth)
    assert 0.04 < real_share < 0.2  # 0.1 expected of 400 frames
    mixed_batches = sum(0 < np.mean(nearest_real[i:i + 16] < nearest_synth[i:i + 16]) < 1 for i in range(0, 400, 16))
    assert mixed_batches > 0  # frames, not whole batches, are drawn from either set


def test_mix_is_deterministic_given_the_seed_and_checks_its_odds(synth_dir, sensor_eval_dir):
    def first_labels(seed):
        return next(iter(mixed_seg_dataset(synth_dir, sensor_eval_dir, 8, 2, size=32, seed=seed)))[1].numpy()

    np.testing.assert_array_equal(first_labels(3), first_labels(3))
    assert not np.array_equal(first_labels(3), first_labels(4))
    with pytest.raises(UserError, match="share"):
        mixed_seg_dataset(synth_dir, sensor_eval_dir, 8, 2, size=32, synth_weight=1.0)


AUGMENTED = replace(TINY_TRAINING, augment=AugmentConfig(10.0, 0.05))


def test_fine_tuning_writes_the_model_and_a_killed_run_resumes_exactly(seg_model_path, synth_dir, restored_dir,
                                                                        sensor_eval_dir, tmp_path):
    def fine_tune(out, **kwargs):
        # Batches of 4: a few restored frames still make an epoch of several steps to be killed in.
        return train_segmentation_weak(seg_model_path, synth_dir, restored_dir, out, AUGMENTED, epochs=2,
                                       batch_size=4, val_dir=sensor_eval_dir, progress=False, **kwargs)

    reference = fine_tune(tmp_path / "reference")
    out = tmp_path / "weak"
    with pytest.raises(Interrupt):
        fine_tune(out, callbacks=[StopAfter(epoch=1, batch=1)])
    assert (out / BACKUP_DIR / FIT_NAME).is_dir() and not (out / MODEL_NAME).exists()
    record = RecordEpochs()
    result = fine_tune(out, callbacks=[record])
    assert record.epochs == [1]  # epoch 0 was done before the kill
    steps = int(np.ceil(read_manifest(restored_dir).count / 0.1 / 4))  # every restored frame about once
    assert steps >= 2
    fine_tuned = keras.saving.load_model(result.model_path)
    assert record.steps == 2 * steps  # the resumed optimiser went on from the first epoch's steps
    initial = keras.saving.load_model(seg_model_path)
    assert any(not np.allclose(a, b) for a, b in zip(initial.get_weights(), fine_tuned.get_weights()))
    weights = zip(fine_tuned.get_weights(), keras.saving.load_model(reference.model_path).get_weights())
    assert all(np.array_equal(a, b) for a, b in weights)  # exactly the uninterrupted run's
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["steps_per_epoch"] == steps and metrics["synth_weight"] == 0.9
    assert len(metrics["history"]["loss"]) == 2 and metrics["restored"]["method"] == "integrate"
    assert metrics["history"] == reference.metrics["history"] and metrics["val"] == reference.metrics["val"]
    assert 0.0 <= metrics["val"]["per_pixel_accuracy"] <= 1.0
    assert not (out / BACKUP_DIR / FIT_NAME).exists()


def test_resuming_with_other_settings_or_into_a_locked_folder_is_refused(seg_model_path, synth_dir, restored_dir,
                                                                         tmp_path):
    def fine_tune(**kwargs):
        return train_segmentation_weak(seg_model_path, synth_dir, restored_dir, tmp_path, TINY_TRAINING, epochs=2,
                                       progress=False, **kwargs)

    with pytest.raises(Interrupt):
        fine_tune(callbacks=[StopAfter(epoch=1, batch=0)])
    with pytest.raises(UserError, match=rf"{tmp_path}.*different: synth_weight\b.*delete"):
        fine_tune(synth_weight=0.8)
    with pytest.raises(UserError, match=r"different: seed\b"):
        fine_tune(seed=2)
    with folder_lock(tmp_path):
        with pytest.raises(UserError, match="another process"):
            fine_tune()
    assert (tmp_path / BACKUP_DIR / FIT_NAME / "state.json").is_file()


def test_a_set_not_made_by_restore_is_refused(seg_model_path, synth_dir, sensor_eval_dir, tmp_path):
    with pytest.raises(UserError, match="not a restored data set"):
        train_segmentation_weak(seg_model_path, synth_dir, sensor_eval_dir, tmp_path / "weak", TINY_TRAINING,
                                epochs=1, progress=False)


def test_data_of_another_size_than_the_model_is_refused(synth_dir, restored_dir, tmp_path):
    path = tmp_path / "seg64.keras"
    build_segmentation_model(SegmentationConfig(size=64, filters=(4, 4, 4), hidden_units=(4,))).save(path)
    with pytest.raises(UserError, match="32x32 crops but the model takes 64x64"):
        train_segmentation_weak(path, synth_dir, restored_dir, tmp_path / "weak", TINY_TRAINING, epochs=1,
                                progress=False)
