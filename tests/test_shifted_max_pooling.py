"""ShiftedMaxPooling: the paper's resolution-preserving pooling over shifted copies of a map."""

import itertools
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpe.models.shifted_max_pooling import ShiftedMaxPooling


def naive_shifted_max(x: np.ndarray, pool_size: int, shift: int) -> np.ndarray:
    """Max over the copies shifted by (dy, dx) * shift in the window, pixels outside the map never winning."""
    before = (pool_size - 1) // 2 * shift
    after = (pool_size - 1) * shift - before
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), constant_values=-np.inf)
    height, width = x.shape[1:3]
    taps = range(0, (pool_size - 1) * shift + 1, shift)
    return np.max([padded[:, dy:dy + height, dx:dx + width] for dy in taps for dx in taps], axis=0)


@pytest.mark.parametrize("pool_size, shift", [(1, 1), (2, 1), (3, 1), (4, 1), (2, 2), (2, 3), (3, 2), (2, 4)])
def test_equals_naive_shifted_maximum(pool_size, shift):
    # 11 x 9 is a multiple of none of the shifts > 1.
    x = np.random.default_rng(10 * pool_size + shift).normal(size=(3, 11, 9, 4)).astype(np.float32)
    out = keras.ops.convert_to_numpy(ShiftedMaxPooling(pool_size, shift)(x))
    np.testing.assert_array_equal(out, naive_shifted_max(x, pool_size, shift))


def test_default_window_is_pixel_and_right_lower_neighbours():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 2, 2, 0] = 1.0
    out = keras.ops.convert_to_numpy(ShiftedMaxPooling()(x))[0, :, :, 0]
    expected = np.zeros((4, 4), np.float32)
    expected[1:3, 1:3] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_shift_spaces_the_window_taps():
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 5, 6, 0] = 1.0
    out = keras.ops.convert_to_numpy(ShiftedMaxPooling(2, shift=4)(x))[0, :, :, 0]
    expected = np.zeros((8, 8), np.float32)
    expected[[1, 1, 5, 5], [2, 6, 2, 6]] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_preserves_shape_and_symbolic_shape():
    layer = ShiftedMaxPooling(3, shift=2)
    assert tuple(layer(np.zeros((2, 7, 5, 3), np.float32)).shape) == (2, 7, 5, 3)
    assert tuple(layer(keras.Input((7, 5, 3))).shape) == (None, 7, 5, 3)


def test_passes_gradients_to_the_window_maxima():
    x = tf.Variable(np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ShiftedMaxPooling(2, shift=2)(x))
    grad = tape.gradient(loss, x).numpy()
    # Each output pixel sends gradient 1 to its window's maximum: the total is the pixel count.
    assert grad.sum() == pytest.approx(2 * 6 * 6 * 3)
    assert np.all(grad >= 0) and np.count_nonzero(grad) > 0


def test_dense_network_is_the_strided_network_at_every_offset_of_the_input():
    # conv 3x3 -> pool 2 -> ReLU -> conv 3x3 -> pool 2 -> ReLU -> 1x1, strided (pooling stride 2) and dense
    # (stride 1, the second conv dilated 2 and the second pooling shift 2), with the same weights.
    size, crop = 24, 20
    keras.utils.set_random_seed(3)

    def network(crop_size, second_dilation, pool):
        return keras.Sequential([
            keras.Input((crop_size, crop_size, 2)),
            keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
            pool(1),
            keras.layers.ReLU(),
            keras.layers.Conv2D(4, 3, dilation_rate=second_dilation, padding="same", use_bias=False),
            pool(2),
            keras.layers.ReLU(),
            keras.layers.Conv2D(3, 1),
        ])

    strided = network(crop, 1, lambda level: keras.layers.MaxPooling2D(2))
    dense = network(size, 2, lambda level: ShiftedMaxPooling(2, shift=level))
    dense.set_weights(strided.get_weights())
    # What the dense default computed before pooling windows took `shift`: adjacent windows after conv 2.
    adjacent = network(size, 2, lambda level: ShiftedMaxPooling(2))
    adjacent.set_weights(strided.get_weights())

    x = np.random.default_rng(4).normal(size=(2, size, size, 2)).astype(np.float32)
    offsets = list(itertools.product(range(4), repeat=2))
    crops = np.concatenate([x[:, dy:dy + crop, dx:dx + crop] for dy, dx in offsets])
    outputs = np.split(keras.ops.convert_to_numpy(strided(crops)), len(offsets))  # each (2, 5, 5, 3)
    stitched = np.full((2, size, size, 3), np.nan, np.float32)
    for (dy, dx), out in zip(offsets, outputs):
        stitched[:, dy:dy + crop:4, dx:dx + crop:4] = out
    # Output q of a strided crop reads the crop's pixels 4q - 3 ... 4q + 6, all inside it for q = 1, 2, 3:
    # dense pixels 4 ... 15 (of 24), where neither network pads.
    inside = (slice(None), slice(4, 16), slice(4, 16))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense(x))[inside], stitched[inside], rtol=0, atol=1e-5)
    assert np.abs(keras.ops.convert_to_numpy(adjacent(x))[inside] - stitched[inside]).max() > 0.1


def test_get_config_round_trip():
    layer = ShiftedMaxPooling(pool_size=3, shift=4, name="pool")
    config = layer.get_config()
    assert (config["pool_size"], config["shift"]) == (3, 4)
    clone = ShiftedMaxPooling.from_config(config)
    assert (clone.pool_size, clone.shift, clone.name) == (3, 4, "pool")


def test_rejects_empty_window_zero_shift_and_unknown_size():
    with pytest.raises(ValueError, match="pool_size"):
        ShiftedMaxPooling(0)
    with pytest.raises(ValueError, match="shift"):
        ShiftedMaxPooling(2, shift=0)
    with pytest.raises(ValueError, match="known height and width"):
        ShiftedMaxPooling(2)(keras.Input((None, None, 3)))


def save_pool_model(path, layer: ShiftedMaxPooling) -> keras.Model:
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, layer(keras.layers.Conv2D(2, 3, padding="same")(inputs)))
    model.save(path)
    return model


def test_survives_keras_save_and_load(tmp_path):
    model = save_pool_model(tmp_path / "pool.keras", ShiftedMaxPooling(3, shift=2, name="pool"))
    loaded = keras.saving.load_model(tmp_path / "pool.keras")  # no custom_objects: the layer is registered
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 2)).astype(np.float32)
    assert isinstance(loaded.get_layer("pool"), ShiftedMaxPooling)
    assert (loaded.get_layer("pool").pool_size, loaded.get_layer("pool").shift) == (3, 2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_loads_models_saved_before_shift_existed(tmp_path):
    model = save_pool_model(tmp_path / "new.keras", ShiftedMaxPooling(2, name="pool"))
    # The same file as the layer without `shift` wrote it: its config lacks the key.
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                pool = next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "pool")
                del pool["config"]["shift"]
                data = json.dumps(config).encode()
            old.writestr(item, data)
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    assert loaded.get_layer("pool").shift == 1
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
