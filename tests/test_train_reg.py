"""Stage 3: regression training per variant, resume, coordinates back to mm, bad inputs."""

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from conftest import tiny_reg_config
from keras_hpe.data.camera import uvd_to_xyz, xyz_to_uvd
from keras_hpe.data.crop import crop_to_joints
from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import evaluate_joints, plot_success_curves
from keras_hpe.models.regression import RegressionConfig, build_direct_regression
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.outputs import folder_lock
from keras_hpe.pipeline import load_estimator
from keras_hpe.presets import AugmentConfig, RegTrainingConfig
from keras_hpe.training import reg, reg_data, reg_predict
from keras_hpe.training.fit import BACKUP_DIR, LOG_DIR
from keras_hpe.training.reg import MeanJointErrorMM, estimate_batch_norm_statistics, train_regression
from keras_hpe.training.reg_data import regression_dataset
from keras_hpe.training.reg_predict import RegressionPipeline, evaluate_variants, load_pipeline, predict_joints_xyz

TINY = tiny_reg_config()


def _save_seg(path, size):
    keras.utils.set_random_seed(0)
    build_segmentation_model(SegmentationConfig(size=size, filters=(4, 4, 4), hidden_units=(8,))).save(path)
    return path


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    """An untrained stage-1 segmentation model for 32 x 32 crops."""
    return _save_seg(tmp_path_factory.mktemp("seg") / "seg_synth.keras", 32)


@pytest.fixture(scope="module")
def trained(sensor_dir, seg_model, tmp_path_factory):
    """Every variant trained one epoch into one folder (semi with the shared head)."""
    out = tmp_path_factory.mktemp("reg")
    runs = {
        "direct": {},
        "cascade": {},
        "semi": {"seg_path": seg_model, "head": "shared"},
        "full": {"seg_path": seg_model},
    }
    results = {v: train_regression(sensor_dir, out, v, TINY, progress=False, **kw) for v, kw in runs.items()}
    return out, results


@pytest.mark.parametrize("variant", ["direct", "cascade", "semi", "full"])
def test_every_variant_trains_and_evaluates(trained, sensor_dir, variant):
    out, results = trained
    result = results[variant]
    expected = [f"reg_{variant}.keras"] + (["reg_cascade_refine.keras"] if variant == "cascade" else [])
    assert [p.name for p in result.model_paths] == expected
    assert all(p.is_file() for p in result.model_paths)
    saved = json.loads(result.metrics_path.read_text())
    assert saved["variant"] == variant and saved["models"] == expected
    assert all(np.isfinite(h["loss"]).all() and len(h["loss"]) == 1 for h in saved["history"].values())
    assert not (out / BACKUP_DIR / f"reg_{variant}").exists()  # removed once the fit ended
    pipeline = load_pipeline(result.model_paths[0])
    assert pipeline.variant == variant
    assert (pipeline.seg_path is not None) == (variant in ("semi", "full"))
    pred_xyz = predict_joints_xyz(pipeline, sensor_dir, batch_size=16)
    assert pred_xyz.shape == (32, 14, 3) and np.isfinite(pred_xyz).all() and (pred_xyz[..., 2] > 0).all()


def test_segmentation_is_cached_once_per_model_and_data(trained, sensor_dir, seg_model):
    out, results = trained
    cached = sorted((out / "seg_cache").glob("labels-*.npy"))
    assert len(cached) == 1  # semi and full used the same model on the same data
    labels = np.load(cached[0])
    assert labels.shape == (32, 32, 32) and labels.dtype == np.uint8
    depth = load_arrays(sensor_dir, ["depth_mm"])["depth_mm"]
    assert np.array_equal(labels == 0, depth == 0)  # background from depth only
    assert results["semi"].metrics["seg_sha256"] == results["full"].metrics["seg_sha256"]


def test_evaluate_variants_and_one_plot(trained, sensor_dir, seg_model, tmp_path):
    out, _ = trained
    variants = {"direct (a)": (out / "reg_direct.keras",), "semi (c)": (out / "reg_semi.keras", seg_model)}
    results = evaluate_variants(variants, sensor_dir, batch_size=16)
    assert list(results) == list(variants)
    assert all(r.frames == 32 and np.isfinite(r.mean_3d_mm) for r in results.values())
    assert plot_success_curves(results, tmp_path / "curves.png").stat().st_size > 0


def test_part_labels_are_never_read(sensor_eval_dir, seg_model, tmp_path, monkeypatch):
    """Training and evaluation on a labelled split read depth, joints and centres only."""
    requested = []

    def recording(read):
        def wrapper(path, fields=None, **kwargs):
            requested.append(fields)
            return read(path, fields, **kwargs)

        return wrapper

    for module in (reg, reg_data, reg_predict):
        for name in ("make_tf_dataset", "load_arrays"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, recording(getattr(module, name)))
    result = train_regression(sensor_eval_dir, tmp_path, "semi", TINY, seg_path=seg_model, progress=False)
    predict_joints_xyz(load_pipeline(result.model_paths[0]), sensor_eval_dir, batch_size=16)
    assert requested and all(fields is not None and "labels" not in fields for fields in requested)


def test_round_trip_from_network_output_to_mm(trained, sensor_dir, monkeypatch):
    """A network that outputs its training targets exactly gets the ground truth back, < 0.5 mm."""
    out, _ = trained
    targets = lambda model, data, progress: np.concatenate([y for _, y in data])  # noqa: E731
    monkeypatch.setattr(reg, "predict_crop_units", targets)
    monkeypatch.setattr(reg_predict, "predict_crop_units", targets)
    gt_uvd = load_arrays(sensor_dir, ["joints_uvd"])["joints_uvd"]
    camera = read_manifest(sensor_dir).camera_model
    for variant in ("direct", "cascade"):
        pred_xyz = predict_joints_xyz(load_pipeline(out / f"reg_{variant}.keras"), sensor_dir, batch_size=16)
        errors = evaluate_joints(xyz_to_uvd(pred_xyz, camera), gt_uvd, camera=camera)
        assert errors.mean_3d_mm < 0.5, variant
        assert errors.errors_mm.max() < 0.5, variant


def test_targets_are_centre_relative_half_cube_units(sensor_dir):
    arrays = load_arrays(sensor_dir, ["joints_xyz", "center_uvd"])
    camera = read_manifest(sensor_dir).camera_model
    targets = np.concatenate([y for _, y in regression_dataset(sensor_dir, 16, size=32)])
    back = crop_to_joints(targets, uvd_to_xyz(arrays["center_uvd"], camera))
    np.testing.assert_allclose(back, arrays["joints_xyz"], atol=0.05)


def test_joint_error_metric_in_mm_and_config_round_trip():
    metric = MeanJointErrorMM(half_cube_mm=150.0)
    truth = np.zeros((2, 14, 3), "float32")
    pred = truth.copy()
    pred[0, :, 0] = 0.1  # 15 mm on every joint of frame 0, 0 mm on frame 1
    metric.update_state(truth, pred)
    assert float(metric.result()) == pytest.approx(7.5, rel=1e-5)
    clone = MeanJointErrorMM.from_config(metric.get_config())
    assert clone.half_cube_mm == 150.0 and clone.name == "joint_error_mm"


def test_batch_norm_statistics_are_averages_over_training_batches():
    import tensorflow as tf

    inputs = keras.Input((3,))
    inner = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.9)])
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inner(inputs)))
    batches = np.random.default_rng(0).normal(5.0, 2.0, (4, 8, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((batches, np.zeros((4, 8, 1), "float32")))
    assert estimate_batch_norm_statistics(model, data, max_batches=3) == 3
    first, second = inner.layers[0], model.layers[-1]
    np.testing.assert_allclose(first.moving_mean.numpy(), batches[:3].mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), batches[:3].var(axis=1).mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(second.moving_mean.numpy(), 0.0, atol=1e-5)  # its input is already normalised
    assert first.momentum == 0.9 and second.momentum == 0.99


class StopAtBatch(keras.callbacks.Callback):
    """Raise KeyboardInterrupt after the `count`-th training batch of a run, counted over all its fits and epochs."""

    def __init__(self, count):
        super().__init__()
        self.count, self.seen = count, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.count:
            raise KeyboardInterrupt


TWO_EPOCHS = RegTrainingConfig(model=TINY.model, batch_size=16, epochs=2, augment=AugmentConfig(10.0, 0.05))
RUNS = {"direct": {}, "cascade": {}, "full": {"head": "shared"}}  # full: with --seg


def _train(variant, out, seg_model, sensor_dir, sensor_eval_dir, **kwargs):
    seg = {"seg_path": seg_model} if variant in ("semi", "full") else {}
    return train_regression(sensor_dir, out, variant, TWO_EPOCHS, val_dir=sensor_eval_dir, progress=False,
                            **RUNS[variant], **seg, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(sensor_dir, sensor_eval_dir, seg_model, tmp_path_factory):
    """Each variant of `RUNS` trained two epochs (augmented, validated) without interruption, once."""
    return {variant: _train(variant, tmp_path_factory.mktemp(f"reference_{variant}"), seg_model, sensor_dir,
                            sensor_eval_dir) for variant in RUNS}


# 32 frames in batches of 16: 2 batches per epoch, 4 per step; the cascade's second step starts at batch 5.
@pytest.mark.parametrize("variant, kill_at_batch", [
    ("direct", 3),  # mid-epoch 2
    ("cascade", 3),  # mid-epoch 2 of the first step
    ("cascade", 7),  # mid-epoch 2 of the second step
    ("full", 3),
])
def test_a_killed_run_resumes_to_the_uninterrupted_weights(uninterrupted, sensor_dir, sensor_eval_dir, seg_model,
                                                           tmp_path, variant, kill_at_batch):
    with pytest.raises(KeyboardInterrupt):
        _train(variant, tmp_path, seg_model, sensor_dir, sensor_eval_dir, callbacks=[StopAtBatch(kill_at_batch)])
    assert (tmp_path / BACKUP_DIR).is_dir() and not (tmp_path / f"reg_{variant}.json").exists()
    resumed = _train(variant, tmp_path, seg_model, sensor_dir, sensor_eval_dir)
    reference = uninterrupted[variant]
    assert [path.name for path in resumed.model_paths] == [path.name for path in reference.model_paths]
    for mine, theirs in zip(resumed.model_paths, reference.model_paths):
        weights = zip(keras.saving.load_model(mine).get_weights(), keras.saving.load_model(theirs).get_weights())
        assert all(np.array_equal(a, b) for a, b in weights), mine.name
    for key in ("history", "val"):
        assert resumed.metrics[key] == reference.metrics[key], key
    # The CSV logs hold every epoch once, also those before the kill.
    for step, history in resumed.metrics["history"].items():
        rows = (tmp_path / LOG_DIR / f"{step}.csv").read_text().splitlines()
        assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
        assert len(history["loss"]) == 2
    assert not (tmp_path / BACKUP_DIR).exists()


def test_resuming_with_another_seed_is_refused(sensor_dir, tmp_path):
    config = replace(TWO_EPOCHS, augment=AugmentConfig())
    with pytest.raises(KeyboardInterrupt):
        train_regression(sensor_dir, tmp_path, "direct", config, progress=False, callbacks=[StopAtBatch(3)])
    with pytest.raises(UserError, match=rf"{tmp_path}.*different: seed\b.*delete"):
        train_regression(sensor_dir, tmp_path, "direct", config, seed=1, progress=False)
    with pytest.raises(UserError, match=r"different: config\.learning_rate\b"):
        train_regression(sensor_dir, tmp_path, "direct", replace(config, learning_rate=1e-3), progress=False)
    assert (tmp_path / BACKUP_DIR / "reg_direct").is_dir()  # the interrupted run's state is kept


def test_a_second_training_into_a_locked_folder_is_refused(sensor_dir, tmp_path):
    with folder_lock(tmp_path / "out"):
        with pytest.raises(UserError, match="another process"):
            train_regression(sensor_dir, tmp_path / "out", "direct", TINY, progress=False)
    assert not (tmp_path / "out" / "reg_direct.keras").exists()


def test_bad_inputs(sensor_dir, seg_model, tmp_path):
    with pytest.raises(UserError, match="--seg"):
        train_regression(sensor_dir, tmp_path, "full", TINY, progress=False)
    with pytest.raises(UserError, match="--seg"):
        train_regression(sensor_dir, tmp_path, "direct", TINY, seg_path=seg_model, progress=False)
    with pytest.raises(UserError, match="shared"):
        train_regression(sensor_dir, tmp_path, "cascade", TINY, head="shared", progress=False)
    with pytest.raises(UserError, match="variant"):
        train_regression(sensor_dir, tmp_path, "deep", TINY, progress=False)
    with pytest.raises(UserError, match="48x48"):
        seg48 = _save_seg(tmp_path / "seg48.keras", 48)
        train_regression(sensor_dir, tmp_path, "semi", TINY, seg_path=seg48, progress=False)
    with pytest.raises(UserError, match="does not exist"):
        train_regression(tmp_path / "missing", tmp_path, "direct", TINY, progress=False)
    keras.utils.set_random_seed(0)
    model48 = tmp_path / "reg48.keras"
    build_direct_regression(RegressionConfig(input_size=48)).save(model48)
    with pytest.raises(UserError, match="48x48"):
        predict_joints_xyz(RegressionPipeline("direct", model48), sensor_dir)


def test_the_oracle_regresses_from_the_true_labels_of_labelled_data_only(sensor_dir, sensor_eval_dir, seg_model,
                                                                         tmp_path):
    with pytest.raises(UserError, match="no part labels: the oracle"):
        train_regression(sensor_dir, tmp_path / "unlabelled", "oracle", TINY, progress=False)
    with pytest.raises(UserError, match="do not give a segmentation model"):
        train_regression(sensor_eval_dir, tmp_path / "seg", "oracle", TINY, seg_path=seg_model, progress=False)
    assert not (tmp_path / "unlabelled").exists() and not (tmp_path / "seg").exists()
    result = train_regression(sensor_eval_dir, tmp_path / "oracle", "oracle", TINY, progress=False)
    pipeline = load_pipeline(result.model_paths[0])
    assert (pipeline.variant, pipeline.seg_path) == ("oracle", None)
    joints = predict_joints_xyz(pipeline, sensor_eval_dir)
    # Its masks are the true labels of the frames it predicts.
    true_labels = load_arrays(sensor_eval_dir, ["labels"])["labels"]
    data = regression_dataset(sensor_eval_dir, 16, size=32, segmentation=true_labels)
    model = keras.saving.load_model(result.model_paths[0])
    center_xyz = uvd_to_xyz(load_arrays(sensor_eval_dir, ["center_uvd"])["center_uvd"])
    expected = crop_to_joints(np.clip(model.predict(data.map(lambda x, y: x), verbose=0), -2, 2), center_xyz, 300.0)
    np.testing.assert_allclose(joints, expected, atol=1e-3)
    with pytest.raises(UserError, match="no part labels: the oracle"):
        predict_joints_xyz(pipeline, sensor_dir)
    with pytest.raises(UserError, match="cannot run on depth alone"):
        load_estimator(result.model_paths[0])  # so neither exported nor used by predict
