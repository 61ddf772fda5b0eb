"""PartMaskFocus and the max-pool morphology against SciPy / NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from keras_hpe.data.skeleton import JOINT_PARTS, NUM_LABELS, NUM_PARTS
from keras_hpe.errors import UserError
from keras_hpe.models.morphology import binary_dilation, binary_erosion, binary_opening
from keras_hpe.models.part_mask_focus import PartMaskFocus

SIZE, CELLS, CHANNELS = 32, 8, 4


def blocky_labels(rng, frames: int) -> np.ndarray:
    """Part labels 0..20 in 4x4 blocks plus 10% single-pixel specks, so that opening has work to do."""
    blocks = rng.integers(0, NUM_LABELS, size=(frames, SIZE // 4, SIZE // 4))
    labels = np.kron(blocks, np.ones((1, 4, 4), dtype=blocks.dtype))
    specks = rng.random(labels.shape) < 0.1
    return np.where(specks, rng.integers(0, NUM_LABELS, labels.shape), labels)


def reference_focus(features, labels, joint_parts, opening_size):
    """NumPy/SciPy: opened part masks, max-reduced to the feature grid, times the features."""
    frames, cells, channels = features.shape[0], features.shape[1], features.shape[-1]
    cell = labels.shape[1] // cells
    out = np.zeros((frames, cells, cells, len(joint_parts), channels), dtype=np.float32)
    for b in range(frames):
        for j, parts in enumerate(joint_parts):
            mask = np.isin(labels[b], parts)
            opened = ndimage.binary_opening(mask, structure=np.ones((opening_size, opening_size)))
            cell_mask = opened.reshape(cells, cell, cells, cell).max(axis=(1, 3))
            out[b, :, :, j] = features[b] * cell_mask[..., None]
    return out


@pytest.mark.parametrize("size", [1, 3, 5])
def test_morphology_matches_scipy(size):
    rng = np.random.default_rng(size)
    masks = (ndimage.uniform_filter(rng.random((3, SIZE, SIZE)), 3, axes=(1, 2)) > 0.5)
    structure = np.ones((size, size))
    batch = masks[..., None].astype("float32")
    for ours, scipy_op in (
        (binary_erosion, ndimage.binary_erosion),
        (binary_dilation, ndimage.binary_dilation),
        (binary_opening, ndimage.binary_opening),
    ):
        expected = np.stack([scipy_op(m, structure=structure) for m in masks])
        got = keras.ops.convert_to_numpy(ours(batch, size))[..., 0]
        np.testing.assert_array_equal(got, expected.astype("float32"), err_msg=ours.__name__)


@pytest.mark.parametrize("opening_size", [1, 3])
@pytest.mark.parametrize("as_probabilities", [False, True])
def test_focus_matches_numpy_reference(as_probabilities, opening_size):
    rng = np.random.default_rng(0)
    labels = blocky_labels(rng, 4)
    segmentation = np.eye(NUM_LABELS, dtype="float32")[labels][..., 1:]
    if as_probabilities:
        # Softmax-like probabilities whose argmax is the label; background pixels stay all 0.
        noisy = segmentation * 3.0 + rng.random(segmentation.shape).astype("float32")
        probabilities = np.exp(noisy) / np.exp(noisy).sum(-1, keepdims=True)
        segmentation = np.where(labels[..., None] > 0, probabilities, 0.0).astype("float32")
    features = rng.normal(size=(4, CELLS, CELLS, CHANNELS)).astype("float32")

    got = keras.ops.convert_to_numpy(PartMaskFocus(JOINT_PARTS, opening_size)([features, segmentation]))
    expected = reference_focus(features, labels, JOINT_PARTS, opening_size)

    np.testing.assert_allclose(got, expected, atol=0)
    kept = expected.any(axis=-1)
    assert 0 < kept.mean() < 1, "the test masks should be neither empty nor full"
    if opening_size > 1:
        without_opening = reference_focus(features, labels, JOINT_PARTS, 1).any(axis=-1)
        assert (without_opening & ~kept).any(), "opening should remove some specks in this test"


def test_focus_background_and_gradients():
    rng = np.random.default_rng(1)
    labels = blocky_labels(rng, 2)
    segmentation = np.eye(NUM_LABELS, dtype="float32")[labels][..., 1:]
    features = keras.Variable(rng.normal(size=(2, CELLS, CELLS, CHANNELS)).astype("float32"))
    layer = PartMaskFocus(opening_size=1)

    # All-zero segmentation = background everywhere: nothing is kept.
    empty = keras.ops.convert_to_numpy(layer([features, np.zeros_like(segmentation)]))
    assert not empty.any()

    seg = tf.Variable(segmentation)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer([features, seg]))
    grad_features, grad_seg = tape.gradient(total, [features, seg])
    masks = reference_focus(np.ones((2, CELLS, CELLS, 1), "float32"), labels, JOINT_PARTS, 1)[..., 0]
    # d(sum)/d(feature) counts the joints whose mask keeps that cell.
    np.testing.assert_allclose(grad_features.numpy(), np.repeat(masks.sum(-1, keepdims=True), CHANNELS, -1))
    assert grad_seg is None or not np.any(grad_seg.numpy())


def test_get_config_round_trip_and_save_load(tmp_path):
    layer = PartMaskFocus(joint_parts=((1,), (2, 3)), opening_size=3, name="focus")
    config = layer.get_config()
    assert config["joint_parts"] == [[1], [2, 3]] and config["opening_size"] == 3
    clone = PartMaskFocus.from_config(config)
    assert clone.joint_parts == layer.joint_parts and clone.opening_size == 3

    features_in = keras.Input((CELLS, CELLS, CHANNELS))
    segmentation_in = keras.Input((SIZE, SIZE, NUM_PARTS))
    model = keras.Model([features_in, segmentation_in], layer([features_in, segmentation_in]))
    rng = np.random.default_rng(2)
    inputs = [
        rng.normal(size=(2, CELLS, CELLS, CHANNELS)).astype("float32"),
        np.eye(NUM_LABELS, dtype="float32")[blocky_labels(rng, 2)][..., 1:],
    ]
    path = tmp_path / "focus.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("focus"), PartMaskFocus)
    expected = model.predict_on_batch(inputs)
    assert expected.shape == (2, CELLS, CELLS, 2, CHANNELS) and expected.any()
    np.testing.assert_array_equal(loaded.predict_on_batch(inputs), expected)


def test_bad_arguments_raise_user_error():
    features = np.zeros((1, CELLS, CELLS, CHANNELS), "float32")
    with pytest.raises(UserError, match="opening_size"):
        PartMaskFocus(opening_size=2)
    with pytest.raises(UserError, match="joint_parts"):
        PartMaskFocus(joint_parts=((1,), ()))
    with pytest.raises(UserError, match=r"part ids \[21\]"):
        PartMaskFocus(joint_parts=((21,),))([features, np.zeros((1, SIZE, SIZE, NUM_PARTS), "float32")])
    with pytest.raises(UserError, match="multiple of the feature map size"):
        PartMaskFocus()([features, np.zeros((1, 30, 30, NUM_PARTS), "float32")])
