"""Shared fixtures: tiny data sets (32 x 32 crops) rendered once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

TINY_SIZE = 32


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """48 synthetic frames with dense labels."""
    from keras_hpe.data.synth import generate_synth

    out = tmp_path_factory.mktemp("data") / "synth"
    generate_synth(out, 48, seed=0, size=TINY_SIZE, shard_size=32, progress=False)
    return out


@pytest.fixture(scope="session")
def sensor_dir(tmp_path_factory):
    """32 simulated-real training frames: depth and joints only."""
    from keras_hpe.data.sensor import generate_sensor

    out = tmp_path_factory.mktemp("data") / "sensor"
    generate_sensor(out, 32, seed=1, size=TINY_SIZE, shard_size=16, progress=False)
    return out


@pytest.fixture(scope="session")
def sensor_eval_dir(tmp_path_factory):
    """16 simulated-real evaluation frames, with their clean part labels."""
    from keras_hpe.data.sensor import generate_sensor

    out = tmp_path_factory.mktemp("data") / "sensor_eval"
    generate_sensor(out, 16, seed=2, size=TINY_SIZE, eval_labels=True, progress=False)
    return out
