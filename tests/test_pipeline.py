"""HandPoseEstimator: the in-graph chain agrees with the NumPy composition of its pieces, and a cascade with
its evaluation."""

import keras
import numpy as np
import pytest

from keras_hpe.data.camera import uvd_to_xyz, uvd_to_xyz_tf, xyz_to_uvd, xyz_to_uvd_tf
from keras_hpe.data.crop import crop_to_joints, normalize_depth, recrop_depth
from keras_hpe.data.dataset import load_arrays
from keras_hpe.data.skeleton import NUM_PARTS
from keras_hpe.errors import UserError
from keras_hpe.models.regression import RegressionConfig, build_direct_regression, build_regression
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model, predict_parts
from keras_hpe.pipeline import HandPoseEstimator, load_estimator
from keras_hpe.training.reg_predict import load_pipeline, predict_joints_xyz

SIZE = 32


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    segmentation = build_segmentation_model(SegmentationConfig(size=SIZE))
    regression = build_regression(RegressionConfig(input_size=SIZE), variant="shared")
    direct = build_direct_regression(RegressionConfig(input_size=SIZE))
    return segmentation, regression, direct


@pytest.fixture(scope="module")
def frames(sensor_dir):
    arrays = load_arrays(sensor_dir, ["depth_mm", "center_uvd"])
    return arrays["depth_mm"][:6], arrays["center_uvd"][:6].astype(np.float32)


def _numpy_joints(normalized: np.ndarray, center_uvd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    joints_xyz = crop_to_joints(normalized, uvd_to_xyz(center_uvd))
    return joints_xyz, xyz_to_uvd(joints_xyz)


def test_estimator_matches_numpy_composition(models, frames):
    segmentation, regression, _ = models
    depth_mm, center_uvd = frames
    estimator = HandPoseEstimator(regression, segmentation)
    out = {k: v.numpy() for k, v in estimator(depth_mm, center_uvd).items()}

    _, labels = predict_parts(segmentation, depth_mm, center_uvd[:, 2])
    depth = normalize_depth(depth_mm[..., None], center_uvd[:, 2]).numpy()
    # One-hot parts 1..20, not hand all zeros: what the regression network is trained on.
    one_hot = (labels[..., None] == np.arange(1, NUM_PARTS + 1)).astype(np.float32)
    normalized = regression.predict_on_batch([depth, one_hot])
    joints_xyz, joints_uvd = _numpy_joints(normalized, center_uvd)

    assert out["joints_xyz"].shape == (6, 14, 3) and out["joints_uvd"].shape == (6, 14, 3)
    np.testing.assert_allclose(out["joints_xyz"], joints_xyz, atol=1e-2)
    np.testing.assert_allclose(out["joints_uvd"], joints_uvd, atol=1e-2)
    assert out["parts"].dtype == np.uint8
    assert np.all(out["parts"][depth_mm == 0] == 0) and out["parts"].max() < 21
    assert np.mean(out["parts"] == labels) > 0.999
    # The joints move with the centre: a different centre gives different mm.
    shifted = estimator(depth_mm, center_uvd + np.float32([10, 0, 0]))["joints_xyz"].numpy()
    assert np.abs(shifted - out["joints_xyz"]).max() > 1.0


def test_pixels_predicted_not_hand_are_part_0_and_enter_no_mask(models, frames):
    _, regression, _ = models
    depth_mm, center_uvd = frames
    segmentation = build_segmentation_model(SegmentationConfig(size=SIZE))
    kernel, bias = segmentation.get_layer("parts").get_weights()
    bias[0] = 100.0  # class 0, not hand, wins at every pixel
    segmentation.get_layer("parts").set_weights([np.zeros_like(kernel), bias])
    out = HandPoseEstimator(regression, segmentation).predict(depth_mm, center_uvd)
    assert np.any(depth_mm > 0) and np.all(out["parts"] == 0)
    depth = normalize_depth(depth_mm[..., None], center_uvd[:, 2]).numpy()
    nothing = regression.predict_on_batch([depth, np.zeros(depth_mm.shape + (NUM_PARTS,), np.float32)])
    np.testing.assert_allclose(out["joints_xyz"], _numpy_joints(nothing, center_uvd)[0], atol=1e-2)


def test_direct_estimator_has_no_parts_and_matches(models, frames):
    _, _, direct = models
    depth_mm, center_uvd = frames
    out = HandPoseEstimator(direct).predict(depth_mm, center_uvd)
    normalized = direct.predict_on_batch(normalize_depth(depth_mm[..., None], center_uvd[:, 2]).numpy())
    joints_xyz, joints_uvd = _numpy_joints(normalized, center_uvd)
    assert set(out) == {"joints_xyz", "joints_uvd"}
    np.testing.assert_allclose(out["joints_xyz"], joints_xyz, atol=1e-2)
    np.testing.assert_allclose(out["joints_uvd"], joints_uvd, atol=1e-2)


def test_cascade_gives_the_joints_its_evaluation_scores(cascade_path, sensor_dir):
    """The one graph runs variant (b) as `evaluate-reg` does (training.reg_predict.predict_joints_xyz): same joints."""
    estimator = load_estimator(cascade_path)
    arrays = load_arrays(sensor_dir, ["depth_mm", "center_uvd"])
    depth_mm, center_uvd = arrays["depth_mm"], arrays["center_uvd"].astype(np.float32)
    out = estimator.predict(depth_mm, center_uvd, batch_size=16)
    evaluated = predict_joints_xyz(load_pipeline(cascade_path), sensor_dir, batch_size=16)
    difference = np.abs(out["joints_xyz"] - evaluated)
    print(f"cascade: |estimator - evaluation| mean {difference.mean():.6f} mm, max {difference.max():.6f} mm")
    assert set(out) == {"joints_xyz", "joints_uvd"} and out["joints_xyz"].shape == (32, 14, 3)
    assert difference.max() < 1e-3
    np.testing.assert_allclose(out["joints_uvd"], xyz_to_uvd(evaluated), atol=1e-2)
    assert estimator.info.cascade == {"refine_model": estimator.refine.name, "refine_cube_mm": 180.0}

    # The second step counts: its crops (around the first estimate) hold the hand, and it moves the joints.
    first = HandPoseEstimator(estimator.regression).predict(depth_mm, center_uvd)["joints_xyz"]
    crops, _ = recrop_depth(depth_mm, center_uvd, first.mean(axis=1), 300.0, 180.0)
    assert np.all(np.mean(crops.numpy() > 0, axis=(1, 2)) > 0.05)
    assert np.abs(first - out["joints_xyz"]).max() > 1.0


def test_frames_are_independent_of_the_batch(models, frames):
    # Inference mode everywhere: no batch statistics, so a frame's result does not depend on its neighbours.
    segmentation, regression, _ = models
    depth_mm, center_uvd = frames
    estimator = HandPoseEstimator(regression, segmentation)
    together = estimator.predict(depth_mm, center_uvd)
    one_by_one = estimator.predict(depth_mm, center_uvd, batch_size=1)
    for name in ("joints_xyz", "joints_uvd"):
        np.testing.assert_allclose(together[name], one_by_one[name], atol=1e-3)
    assert np.mean(together["parts"] == one_by_one["parts"]) > 0.999


def test_camera_tf_matches_numpy():
    rng = np.random.default_rng(0)
    uvd = np.stack([rng.uniform(0, 640, 50), rng.uniform(0, 480, 50), rng.uniform(300, 1200, 50)], -1)
    np.testing.assert_allclose(uvd_to_xyz_tf(uvd.astype(np.float32)).numpy(), uvd_to_xyz(uvd), rtol=1e-5, atol=1e-3)
    xyz = uvd_to_xyz(uvd)
    np.testing.assert_allclose(xyz_to_uvd_tf(xyz.astype(np.float32)).numpy(), uvd, rtol=1e-5, atol=1e-3)


def test_mismatched_models_are_user_errors(models):
    segmentation, regression, direct = models
    with pytest.raises(UserError, match="needs a segmentation"):
        HandPoseEstimator(regression)
    with pytest.raises(UserError, match="depth only"):
        HandPoseEstimator(direct, segmentation)
    with pytest.raises(UserError, match="crop size"):
        HandPoseEstimator(regression, build_segmentation_model(SegmentationConfig(size=48)))
    with pytest.raises(UserError, match="depth_mm must be"):
        HandPoseEstimator(direct).predict(np.zeros((2, 16, 16)), np.zeros((2, 3)))


def test_a_cascade_is_two_direct_models_and_a_cube(models):
    segmentation, regression, direct = models
    with pytest.raises(UserError, match="needs both"):
        HandPoseEstimator(direct, refine=direct)
    with pytest.raises(UserError, match="needs both"):
        HandPoseEstimator(direct, refine_cube_mm=180.0)
    with pytest.raises(UserError, match="two direct-regression models"):
        HandPoseEstimator(regression, segmentation, refine=direct, refine_cube_mm=180.0)
    with pytest.raises(UserError, match="takes 48x48 crops, the first 32x32"):
        HandPoseEstimator(direct, refine=build_direct_regression(RegressionConfig(input_size=48)), refine_cube_mm=180.0)
    for cube in (0.0, float("nan")):
        with pytest.raises(UserError, match="refine_cube_mm must be a number > 0"):
            HandPoseEstimator(direct, refine=direct, refine_cube_mm=cube)
