"""InstanceNormalization: Keras' GroupNormalization(groups=-1), written as TensorFlow's batch normalisation."""

import keras
import numpy as np
import pytest

from keras_hpe.models.instance_normalization import InstanceNormalization


def _pair(channels: int, dtype: str = "float32") -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """Keras' layer and ours, built, with the same random gamma and beta."""
    rng = np.random.default_rng(channels)
    weights = [rng.uniform(0.5, 1.5, channels).astype("float32"), rng.normal(size=channels).astype("float32")]
    keras_layer = keras.layers.GroupNormalization(groups=-1, dtype=dtype)
    ours = InstanceNormalization(dtype=dtype)
    for layer in (keras_layer, ours):
        layer.build((None, 8, 8, channels))
        layer.set_weights(weights)
    return keras_layer, ours


def test_equals_keras_group_normalization_with_one_group_per_channel():
    keras_layer, ours = _pair(5)
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(3, 8, 8, 5)).astype("float32")
    expected = keras.ops.convert_to_numpy(keras_layer(x))
    got = keras.ops.convert_to_numpy(ours(x))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Each image's channels are normalised over its own pixels.
    np.testing.assert_allclose(((got - ours.beta.numpy()) / ours.gamma.numpy()).mean(axis=(1, 2)), 0.0, atol=1e-5)


def test_bfloat16_inputs_are_normalised_in_float32():
    keras_layer, ours = _pair(4, "mixed_bfloat16")
    x = np.random.default_rng(2).normal(100.0, 0.5, size=(2, 8, 8, 4)).astype("float32")
    got, expected = (keras.ops.convert_to_numpy(keras.ops.cast(layer(x), "float32")) for layer in (ours, keras_layer))
    assert ours(x).dtype == "bfloat16"
    # A mean of 100 with a spread of 0.5: statistics in bfloat16 (3 significant digits) would lose the spread.
    np.testing.assert_allclose(got, expected, atol=0.05)
    assert got.std() > 0.5


def test_config_round_trip_and_save_load(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, InstanceNormalization(epsilon=1e-4, name="norm")(inputs))
    model.get_layer("norm").set_weights([np.full(3, 2.0, "float32"), np.full(3, -1.0, "float32")])
    config = model.get_layer("norm").get_config()
    assert config["groups"] == 3 and config["epsilon"] == 1e-4
    path = tmp_path / "norm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("norm")) is InstanceNormalization
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))


def test_rejects_other_groupings():
    with pytest.raises(ValueError, match="one group per channel"):
        InstanceNormalization(groups=2)(np.zeros((1, 4, 4, 4), "float32"))
    with pytest.raises(ValueError, match="last axis"):
        InstanceNormalization(axis=1)
