"""The segmentation network: architecture, shapes, save/load and the prediction helper."""

import itertools

import keras
import numpy as np
import pytest

from keras_hpe.data.skeleton import NUM_LABELS, PART_NAMES
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import (
    UNDILATED_SEGMENTATION,
    SegmentationConfig,
    build_segmentation_model,
    labels_from_probs,
    model_crop_size,
    predict_parts,
    segmentation_input,
)
from keras_hpe.models.shifted_max_pooling import ShiftedMaxPooling
from keras_hpe.presets import get_preset

TINY = SegmentationConfig(
    size=16, filters=(4, 4, 4), kernel_sizes=(3, 3, 3), dilation_rates=(1, 2, 1), hidden_units=(8,)
)


def test_output_is_a_per_pixel_distribution_over_not_hand_and_20_parts():
    model = build_segmentation_model(TINY)
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 1)).astype(np.float32)
    probs = model.predict(x, verbose=0)
    assert probs.shape == (3, 16, 16, NUM_LABELS) and NUM_LABELS == len(PART_NAMES) == 21
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert model_crop_size(model) == 16


def test_architecture_follows_the_paper_structure():
    config = get_preset("paper").seg.model
    assert config == SegmentationConfig()
    model = build_segmentation_model(config)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [layer for layer in model.layers if isinstance(layer, ShiftedMaxPooling)]
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert [c.kernel_size for c in convs[:3]] == [(5, 5)] * 3
    assert all(c.kernel_size == (1, 1) for c in convs[3:])  # per-pixel fully connected layers
    assert len(convs) == 3 + len(config.hidden_units) + 1
    # The dense form of 2 x 2 poolings of stride 2: layer k's kernel and pooling window dilated 2^(k-1).
    assert [c.dilation_rate for c in convs[:3]] == [(1, 1), (2, 2), (4, 4)]
    assert [(p.pool_size, p.shift) for p in pools] == [(2, 1), (2, 2), (2, 4)]
    # Per-image normalisation: one group per channel, statistics over the pixels of each image.
    assert all(n.groups == n.input.shape[-1] for n in norms) and len(norms) == len(convs) - 1
    assert model.output_shape == (None, 64, 64, NUM_LABELS)


def test_undilated_network_pools_adjacent_pixels():
    model = build_segmentation_model(UNDILATED_SEGMENTATION)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.dilation_rate == (1, 1) for c in convs)
    assert [layer.shift for layer in model.layers if isinstance(layer, ShiftedMaxPooling)] == [1, 1, 1]


def strided_network_at_every_offset(model: keras.Model, x: np.ndarray, joint_statistics: bool) -> np.ndarray:
    """The strided network that `model` computes densely, run at every offset of its pooling grids, interleaved.

    Its convolutions are the model's kernels undilated, padding with zeros; each pooling is 2 x 2 with
    stride 2 and turns every map into four, one per offset of its grid (a shifted grid's last window
    overhangs the far edge and takes the maximum of the pixels inside). The normalisation takes its
    statistics over all offsets of an image together, or over each offset on its own.
    """
    maps = x[:, None]  # (batch, offset, height, width, channels)
    offsets = [(0, 0)]  # each map's first pixel in the input
    step = 1  # input pixels between neighbouring pixels of a map
    grids = list(itertools.product(range(2), repeat=2))
    for layer in model.layers[1:]:
        batch, count, height, width = maps.shape[:4]
        flat = maps.reshape((batch * count,) + maps.shape[2:])
        if isinstance(layer, ShiftedMaxPooling):
            padded = np.pad(flat, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)
            pooled = [keras.ops.max_pool(padded[:, dy:dy + height, dx:dx + width], 2, 2) for dy, dx in grids]
            maps = np.stack([keras.ops.convert_to_numpy(p) for p in pooled], axis=1)
            maps = maps.reshape((batch, count * len(grids)) + maps.shape[2:])
            offsets = [(oy + step * dy, ox + step * dx) for oy, ox in offsets for dy, dx in grids]
            step *= 2
        elif isinstance(layer, keras.layers.Conv2D):
            out = keras.ops.conv(flat, layer.kernel, padding="same")
            out = layer.activation(out + layer.bias if layer.use_bias else out)
            maps = keras.ops.convert_to_numpy(out).reshape((batch, count) + tuple(out.shape[1:]))
        elif isinstance(layer, keras.layers.GroupNormalization):
            axes = (1, 2, 3) if joint_statistics else (2, 3)
            mean, variance = maps.mean(axis=axes, keepdims=True), maps.var(axis=axes, keepdims=True)
            gamma, beta = (keras.ops.convert_to_numpy(w) for w in (layer.gamma, layer.beta))
            maps = (maps - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta
        else:  # per pixel (ReLU)
            maps = keras.ops.convert_to_numpy(layer(flat)).reshape(maps.shape)
    stitched = np.zeros((x.shape[0], step * maps.shape[2], step * maps.shape[3], maps.shape[4]), np.float32)
    for i, (oy, ox) in enumerate(offsets):
        stitched[:, oy::step, ox::step] = maps[:, i]
    return stitched


def test_default_network_is_the_strided_network_at_all_64_offsets():
    # The default's dilations (1, 2, 4) on a small crop: three poolings, 64 offsets of 2 x 2 maps.
    config = SegmentationConfig(size=16, filters=(3, 4, 4), kernel_sizes=(3, 5, 3), hidden_units=(6,))
    model = build_segmentation_model(config)
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.normal(size=(2, 16, 16, 1)).astype(np.float32)
    dense = keras.ops.convert_to_numpy(model(x))
    # Exact at every pixel, borders included, with the statistics of all offsets together ...
    joint = strided_network_at_every_offset(model, x, joint_statistics=True)
    np.testing.assert_allclose(dense, joint, rtol=0, atol=1e-5)
    # ... which is not the network that normalises each offset on its own.
    separate = strided_network_at_every_offset(model, x, joint_statistics=False)
    assert np.abs(dense - separate).max() > 1e-2


def test_normalisation_is_the_same_at_train_and_test_time():
    model = build_segmentation_model(TINY)
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 1)).astype(np.float32)
    train = keras.ops.convert_to_numpy(model(x, training=True))
    test = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(train, test, atol=1e-6)
    # And per image: a frame's output does not depend on the other frames of the batch.
    alone = keras.ops.convert_to_numpy(model(x[:1], training=True))
    np.testing.assert_allclose(alone, train[:1], atol=1e-5)


def test_save_and_load_keeps_predictions(tmp_path):
    model = build_segmentation_model(TINY)
    path = tmp_path / "seg.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_config_round_trip_and_validation():
    assert SegmentationConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(UserError, match="one entry per conv layer"):
        SegmentationConfig(filters=(8, 8), kernel_sizes=(3, 3, 3))


def test_segmentation_input_is_lcn_of_normalised_depth():
    depth_mm = np.zeros((2, 32, 32), np.float32)
    depth_mm[:, 12:20, 12:20] = np.linspace(450, 550, 8, dtype=np.float32)
    x = keras.ops.convert_to_numpy(segmentation_input(depth_mm, np.array([500.0, 500.0])))
    assert x.shape == (2, 32, 32, 1)
    assert np.all(np.isfinite(x))
    # Local contrast normalisation removes the local mean: flat background far from the hand is ~0,
    # the hand is not.
    assert abs(x[0, 0, 0, 0]) < 1e-3 and np.abs(x[0, 12:20, 12:20]).max() > 0.1


def test_segmentation_input_fills_holes_inside_the_hand_first():
    depth_mm = np.zeros((1, 32, 32), np.float32)
    depth_mm[0, 8:24, 8:24] = 500.0
    holed = depth_mm.copy()
    holed[0, 15, 15] = 0.0
    filled, with_hole = (keras.ops.convert_to_numpy(segmentation_input(d, np.array([500.0]))) for d in (depth_mm, holed))
    np.testing.assert_allclose(with_hole, filled, atol=1e-6)


def test_predict_parts_labels_pixels_without_depth_not_hand():
    model = build_segmentation_model(TINY)
    rng = np.random.default_rng(3)
    depth_mm = rng.uniform(400, 600, size=(5, 16, 16)).astype(np.float32)
    depth_mm[:, :3] = 0
    probs, labels = predict_parts(model, depth_mm, np.full(5, 500.0), batch_size=2)
    assert probs.shape == (5, 16, 16, NUM_LABELS) and labels.shape == (5, 16, 16) and labels.dtype == np.uint8
    assert np.all(labels[:, :3] == 0)
    np.testing.assert_array_equal(labels[:, 3:], probs[:, 3:].argmax(-1))  # class k is part id k
    # Batching does not change the result (per-image normalisation).
    probs_one, _ = predict_parts(model, depth_mm[:1], np.full(1, 500.0))
    np.testing.assert_allclose(probs_one, probs[:1], atol=1e-5)


def test_labels_from_probs_are_the_argmax_with_not_hand_zero():
    probs = np.zeros((1, 2, 3, NUM_LABELS), np.float32)
    probs[..., 20] = 0.6
    probs[0, :, 2, 0] = 0.9  # the network says not hand
    depth_mm = np.array([[[0.0, 500.0, 500.0], [500.0, 0.0, 500.0]]], np.float32)
    np.testing.assert_array_equal(labels_from_probs(probs, depth_mm), [[[0, 20, 0], [20, 0, 0]]])


def test_predict_parts_rejects_other_crop_size():
    model = build_segmentation_model(TINY)
    with pytest.raises(UserError, match=r"\(N, 16, 16\)"):
        predict_parts(model, np.ones((2, 32, 32), np.float32), np.ones(2))
    with pytest.raises(UserError, match="center_d_mm"):
        predict_parts(model, np.ones((2, 16, 16), np.float32), np.ones(3))
