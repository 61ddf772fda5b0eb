"""The stage-3 regression networks: shapes, save/load, per-joint gradients, a tiny fit, config errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpe.data.skeleton import NUM_JOINTS, NUM_LABELS, NUM_PARTS
from keras_hpe.errors import UserError
from keras_hpe.models.grouped_conv2d import GroupedConv2D
from keras_hpe.models.regression import (
    RegressionConfig,
    build_direct_regression,
    build_regression,
    part_channels,
)

SIZE = 32
CONFIG = RegressionConfig(input_size=SIZE)


def make_inputs(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Depth in [-1, 1) (a hand everywhere) and a one-hot segmentation of 4x4 part blocks."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(-1, 0.9, size=(frames, SIZE, SIZE, 1)).astype("float32")
    blocks = rng.integers(1, NUM_LABELS, size=(frames, SIZE // 4, SIZE // 4))
    labels = np.kron(blocks, np.ones((1, 4, 4), dtype=blocks.dtype))
    return depth, np.eye(NUM_LABELS, dtype="float32")[labels][..., 1:]


def build(variant: str, config: RegressionConfig = CONFIG) -> keras.Model:
    return build_direct_regression(config) if variant == "direct" else build_regression(config, variant)


def model_inputs(variant: str, depth, segmentation):
    return depth if variant == "direct" else [depth, segmentation]


@pytest.mark.parametrize("variant", ["separate", "shared", "direct"])
def test_output_shape_and_save_load(variant, tmp_path):
    model = build(variant)
    depth, segmentation = make_inputs(3)
    inputs = model_inputs(variant, depth, segmentation)
    expected = model.predict_on_batch(inputs)
    assert expected.shape == (3, NUM_JOINTS, 3)
    assert model.output_names == ["joints"]
    assert [i.name for i in model.inputs] == (["depth"] if variant == "direct" else ["depth", "segmentation"])
    path = tmp_path / f"{variant}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict_on_batch(inputs), expected, rtol=1e-6, atol=1e-6)


def test_direct_regression_accepts_another_crop_size():
    model = build_direct_regression(RegressionConfig(input_size=16))
    assert model.input_shape == (None, 16, 16, 1)
    assert model.predict_on_batch(np.zeros((2, 16, 16, 1), "float32")).shape == (2, NUM_JOINTS, 3)


def test_separate_variant_has_about_fourteen_times_the_shared_head():
    separate, shared = build("separate").count_params(), build("shared").count_params()
    assert 8 * shared < separate < 15 * shared


@pytest.mark.parametrize("variant", ["separate", "shared", "direct"])
def test_every_weight_gets_a_gradient(variant):
    model = build(variant)
    depth, segmentation = make_inputs(4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(model_inputs(variant, depth, segmentation), training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.path for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(g.numpy())]
    assert not dead


def test_separate_heads_do_not_share_weights():
    """Joint j's output reaches only joint j's block of every head layer (and the shared c1)."""
    model = build("separate")
    depth, segmentation = make_inputs(4)
    head_kernels = {name: model.get_layer(name).kernel for name in ("c211", "c222", "c241", "conv", "fc", "xyz")}
    c1 = model.get_layer("c1").kernel
    for joint in range(NUM_JOINTS):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model([depth, segmentation], training=True)[:, joint])
        grads = tape.gradient(loss, [c1, *head_kernels.values()])
        assert np.any(grads[0].numpy()), "the shared c1 should learn from every joint"
        for name, grad in zip(head_kernels, grads[1:]):
            grad = grad.numpy()
            # EinsumDense kernels have the joints first; grouped conv kernels have J output blocks last.
            blocks = grad if name in ("fc", "xyz") else np.stack(np.split(grad, NUM_JOINTS, axis=-1))
            touched = np.abs(blocks.reshape(NUM_JOINTS, -1)).sum(axis=1) > 0
            assert touched[joint] and touched.sum() == 1, f"{name}: joint {joint} reaches {np.flatnonzero(touched)}"


def test_segmentation_counts_only_on_hand_pixels():
    model = build("separate")
    depth, segmentation = make_inputs(2, seed=3)
    depth[:, :, SIZE // 2 :] = 1.0  # right half: no depth (background)
    _, other = make_inputs(2, seed=4)
    base = model.predict_on_batch([depth, segmentation])
    background_changed = segmentation.copy()
    background_changed[:, :, SIZE // 2 :] = other[:, :, SIZE // 2 :]
    hand_changed = segmentation.copy()
    hand_changed[:, :, : SIZE // 2] = other[:, :, : SIZE // 2]
    np.testing.assert_array_equal(model.predict_on_batch([depth, background_changed]), base)
    assert not np.allclose(model.predict_on_batch([depth, hand_changed]), base)


def test_tiny_fit_reduces_the_loss():
    keras.utils.set_random_seed(0)
    model = build("separate")
    depth, segmentation = make_inputs(16, seed=5)
    joints = np.random.default_rng(6).uniform(-0.5, 0.5, size=(16, NUM_JOINTS, 3)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit([depth, segmentation], joints, batch_size=8, epochs=6, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]


def test_grouped_conv_matches_per_group_convs():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 8, 8, 6)).astype("float32")
    grouped = GroupedConv2D(4, 3, padding="same", groups=2, use_bias=False)
    out = keras.ops.convert_to_numpy(grouped(x))
    kernel = keras.ops.convert_to_numpy(grouped.kernel)
    for g in range(2):
        expected = tf.nn.conv2d(x[..., 3 * g : 3 * g + 3], kernel[..., 2 * g : 2 * g + 2], 1, "SAME").numpy()
        np.testing.assert_allclose(out[..., 2 * g : 2 * g + 2], expected, rtol=1e-5, atol=1e-5)
    clone = GroupedConv2D.from_config(grouped.get_config())
    assert clone.groups == 2 and clone.filters == 4 and not clone.supports_jit


@pytest.mark.parametrize("groups", [1, 2])
def test_dilated_grouped_conv_matches_keras_conv(groups):
    # Keras' Conv2D runs a dilated convolution through SpaceToBatchND; the native kernel takes the dilation itself.
    x = np.random.default_rng(8).normal(size=(2, 16, 16, 4)).astype("float32")
    native = GroupedConv2D(6, 3, padding="same", dilation_rate=4, groups=groups)
    out = keras.ops.convert_to_numpy(native(x))
    keras_conv = keras.layers.Conv2D.from_config(native.get_config())
    keras_conv.build(x.shape)
    keras_conv.set_weights(native.get_weights())
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(keras_conv(x)), rtol=1e-5, atol=1e-5)


def test_config_dict_round_trip():
    config = RegressionConfig(input_size=48, c1_filters=8, opening_size=5)
    text = json.dumps(config.to_dict())
    assert RegressionConfig.from_dict(json.loads(text)) == config


@pytest.mark.parametrize(
    "values, message",
    [
        ({"input_size": 50}, r"input_size=50 must be divisible by c1_pool \* conv_stride"),
        ({"opening_size": 2}, "opening_size must be an odd integer"),
        ({"c1_filters": 0}, "c1_filters must be an integer >= 1"),
        ({"joint_parts": ((1,),) * (NUM_JOINTS - 1)}, f"must list {NUM_JOINTS} joints"),
        ({"joint_parts": ((NUM_PARTS + 1,),) * NUM_JOINTS}, f"part ids in 1..{NUM_PARTS}"),
    ],
)
def test_bad_config_raises_user_error(values, message):
    with pytest.raises(UserError, match=message):
        RegressionConfig(**values)


def test_bad_variant_and_unknown_config_field_raise_user_error():
    with pytest.raises(UserError, match="variant"):
        build_regression(CONFIG, "joint")
    with pytest.raises(UserError, match="no field"):
        RegressionConfig.from_dict({"input_size": 32, "dropout": 0.5})


def test_part_channels_are_one_hot_of_parts_with_not_hand_all_zero():
    labels = np.array([[0, 1, 7], [20, 0, 3]], np.uint8)
    channels = part_channels(labels).numpy()
    assert channels.shape == (2, 3, NUM_PARTS) and channels.dtype == np.float32
    np.testing.assert_array_equal(channels.sum(axis=-1), labels > 0)  # not hand (0): an all-zero row
    np.testing.assert_array_equal(channels.argmax(axis=-1)[labels > 0], labels[labels > 0] - 1)  # part p -> p - 1
    np.testing.assert_array_equal(channels, np.eye(NUM_LABELS, dtype=np.float32)[labels][..., 1:])
