"""Inference copies and estimator options: every faster path against the float32 reference."""

import keras
import numpy as np
import pytest

from keras_hpe.data.dataset import load_arrays
from keras_hpe.errors import UserError
from keras_hpe.models.cloning import clone_with
from keras_hpe.models.grouped_conv2d import GroupedConv2D
from keras_hpe.models.inference import inference_copy
from keras_hpe.models.instance_normalization import InstanceNormalization
from keras_hpe.models.regression import RegressionConfig, build_regression
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.pipeline import REFERENCE, HandPoseEstimator, InferenceOptions

SIZE = 32


def saved_before_instance_normalization(model: keras.Model) -> keras.Model:
    """`model` as files saved before InstanceNormalization hold it: Keras' GroupNormalization(groups=-1)."""

    def edit(layer, config):
        return (keras.layers.GroupNormalization if isinstance(layer, InstanceNormalization) else type(layer)), config

    return clone_with(model, edit)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    segmentation = build_segmentation_model(SegmentationConfig(size=SIZE))
    # Trained networks have non-trivial normalisation weights; the initial ones are all 1 and 0.
    rng = np.random.default_rng(0)
    for layer in segmentation.layers:
        if isinstance(layer, InstanceNormalization):
            gamma, beta = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.3, beta.shape).astype("float32")])
    return saved_before_instance_normalization(segmentation), build_regression(RegressionConfig(input_size=SIZE))


@pytest.fixture(scope="module")
def frames(sensor_dir):
    arrays = load_arrays(sensor_dir, ["depth_mm", "center_uvd"])
    return arrays["depth_mm"], arrays["center_uvd"].astype(np.float32)


def test_copy_swaps_in_fused_layers_and_gives_logits_with_the_same_argmax(models):
    segmentation, _ = models
    copy = inference_copy(segmentation)
    types = {layer.name: type(layer) for layer in copy.layers}
    assert types["conv1_norm"] is InstanceNormalization and types["conv2"] is GroupedConv2D
    assert [layer.name for layer in copy.layers] == [layer.name for layer in segmentation.layers]
    for original, copied in zip(segmentation.weights, copy.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(copied), keras.ops.convert_to_numpy(original))
    x = np.random.default_rng(1).normal(size=(4, SIZE, SIZE, 1)).astype("float32")
    probabilities = segmentation.predict_on_batch(x)
    logits = copy.predict_on_batch(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), probabilities, atol=1e-5)
    assert np.mean(logits.argmax(-1) == probabilities.argmax(-1)) > 0.9999


def test_bfloat16_copy_runs_only_the_spatial_convolutions_and_their_pooling_in_bfloat16(models):
    segmentation, regression = models
    copy = inference_copy(segmentation, "bfloat16")
    sixteen_bit = sorted(layer.name for layer in copy.layers if layer.dtype_policy.compute_dtype == "bfloat16")
    # conv1 sees one channel (the depth) and the 1 x 1 layers are per pixel: they stay float32.
    assert sixteen_bit == ["conv2", "conv3", "pool2", "pool3"]
    assert all(layer.dtype_policy.variable_dtype == "float32" for layer in copy.layers)
    with pytest.raises(UserError, match="precision"):
        inference_copy(regression, "float16")


@pytest.mark.parametrize("options", [InferenceOptions(inference_copies=False), InferenceOptions(frozen=False),
                                     InferenceOptions()])
def test_float32_paths_give_the_reference_joints(models, frames, options):
    segmentation, regression = models
    depth_mm, center_uvd = frames
    expected = HandPoseEstimator(regression, segmentation, options=REFERENCE).predict(depth_mm, center_uvd)
    got = HandPoseEstimator(regression, segmentation, options=options).predict(depth_mm, center_uvd)
    difference = np.linalg.norm(got["joints_xyz"] - expected["joints_xyz"], axis=-1)
    print(f"{options}: joints {difference.mean():.2e} mm from the reference on average, {difference.max():.2e} at "
          f"most; {np.mean(got['parts'] == expected['parts']):.6f} of the part labels equal")
    # float32 rounding (1e-4 mm measured on a quick reproduction's 1,000 test frames); a flipped part label moves a
    # joint by millimetres.
    assert difference.max() < 1e-3 and np.mean(got["parts"] == expected["parts"]) > 0.9999


def test_bfloat16_path_stays_near_the_reference(models, frames):
    segmentation, regression = models
    depth_mm, center_uvd = frames
    expected = HandPoseEstimator(regression, segmentation, options=REFERENCE).predict(depth_mm, center_uvd)
    bfloat16 = HandPoseEstimator(regression, segmentation, options=InferenceOptions(precision="bfloat16"))
    got = bfloat16.predict(depth_mm, center_uvd)
    difference = np.linalg.norm(got["joints_xyz"] - expected["joints_xyz"], axis=-1)
    equal = np.mean(got["parts"] == expected["parts"])
    print(f"bfloat16: joints {difference.mean():.4f} mm from the reference on average, {difference.max():.4f} at "
          f"most; {equal:.5f} of the part labels equal")
    # Measured here: 0.035 mm on average (1.1 mm at most), 99.80% of the labels equal; on a quick reproduction's
    # 1,000 real test frames 0.31 mm and 99.94% (models.inference), the same mean 3D error to 0.001 mm.
    assert difference.mean() < 0.1 and equal > 0.995
    assert bfloat16.info.precision == "bfloat16"


def test_frozen_graph_reads_the_weights_at_its_first_call(models, frames):
    segmentation, regression = models
    depth_mm, center_uvd = frames
    estimator = HandPoseEstimator(regression, segmentation)
    first = estimator.predict(depth_mm[:2], center_uvd[:2])
    output = estimator.regression.get_layer("xyz")
    output.set_weights([w + 1.0 for w in output.get_weights()])
    np.testing.assert_array_equal(estimator.predict(depth_mm[:2], center_uvd[:2])["joints_xyz"], first["joints_xyz"])
    moved = estimator.serve(depth_mm[:2], center_uvd[:2])["joints_xyz"].numpy()  # the graph with variables
    assert np.abs(moved - first["joints_xyz"]).max() > 1.0


def test_bad_options_raise_user_error():
    with pytest.raises(UserError, match="precision must be one of"):
        InferenceOptions(precision="float16")
    with pytest.raises(UserError, match="inference_copies=True"):
        InferenceOptions(precision="bfloat16", inference_copies=False)
