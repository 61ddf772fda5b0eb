"""ShiftedMaxPooling: the paper's resolution-preserving pooling over one-pixel shifts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpe.models.shifted_max_pooling import ShiftedMaxPooling


def naive_shifted_max(x: np.ndarray, pool_size: int) -> np.ndarray:
    """Max over all shifts (dy, dx) in the window, pixels outside the map never winning."""
    before = (pool_size - 1) // 2
    after = pool_size - 1 - before
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), constant_values=-np.inf)
    height, width = x.shape[1:3]
    shifts = [padded[:, dy:dy + height, dx:dx + width] for dy in range(pool_size) for dx in range(pool_size)]
    return np.max(shifts, axis=0)


@pytest.mark.parametrize("pool_size", [1, 2, 3, 4])
def test_equals_naive_shifted_maximum(pool_size):
    x = np.random.default_rng(pool_size).normal(size=(3, 11, 9, 4)).astype(np.float32)
    out = keras.ops.convert_to_numpy(ShiftedMaxPooling(pool_size)(x))
    np.testing.assert_allclose(out, naive_shifted_max(x, pool_size), rtol=0, atol=0)


def test_default_window_is_pixel_and_right_lower_neighbours():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 2, 2, 0] = 1.0
    out = keras.ops.convert_to_numpy(ShiftedMaxPooling()(x))[0, :, :, 0]
    expected = np.zeros((4, 4), np.float32)
    expected[1:3, 1:3] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_preserves_shape_and_symbolic_shape():
    layer = ShiftedMaxPooling(3)
    assert tuple(layer(np.zeros((2, 7, 5, 3), np.float32)).shape) == (2, 7, 5, 3)
    assert tuple(layer(keras.Input((7, 5, 3))).shape) == (None, 7, 5, 3)


def test_passes_gradients_to_the_window_maxima():
    x = tf.Variable(np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ShiftedMaxPooling(2)(x))
    grad = tape.gradient(loss, x).numpy()
    # Each output pixel sends gradient 1 to its window's maximum: the total is the pixel count.
    assert grad.sum() == pytest.approx(2 * 6 * 6 * 3)
    assert np.all(grad >= 0) and np.count_nonzero(grad) > 0


def test_get_config_round_trip():
    layer = ShiftedMaxPooling(pool_size=3, name="pool")
    config = layer.get_config()
    assert config["pool_size"] == 3
    clone = ShiftedMaxPooling.from_config(config)
    assert clone.pool_size == 3 and clone.name == "pool"


def test_rejects_empty_window():
    with pytest.raises(ValueError, match="pool_size"):
        ShiftedMaxPooling(0)


def test_survives_keras_save_and_load(tmp_path):
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, ShiftedMaxPooling(3, name="pool")(keras.layers.Conv2D(2, 3, padding="same")(inputs)))
    path = tmp_path / "pool.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the layer is registered
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 2)).astype(np.float32)
    assert isinstance(loaded.get_layer("pool"), ShiftedMaxPooling)
    assert loaded.get_layer("pool").pool_size == 3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
