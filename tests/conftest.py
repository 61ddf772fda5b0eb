"""Shared fixtures: tiny data sets (32 x 32 crops) rendered once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

TINY_SIZE = 32


def visible_lines(text: str) -> list[str]:
    """The lines a terminal shows for `text`: a carriage return overwrites its line (progress bars)."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return [line for line in lines if line]


def tiny_reg_config():
    """Regression training settings of the tests: 32 x 32 networks of a few thousand weights, batches of 16, 1 epoch."""
    from keras_hpe.models.regression import RegressionConfig
    from keras_hpe.presets import RegTrainingConfig

    model = RegressionConfig(input_size=TINY_SIZE, c1_filters=4, inception_reduce=2, inception_filters=2,
                             conv_filters=4, fc_units=8, direct_width=1)
    return RegTrainingConfig(model=model, batch_size=16, epochs=1)


def assert_one_line_error(stderr: str, needle: str = "") -> str:
    """`stderr` shows exactly one line, the CLI's error, containing `needle`; returns it."""
    lines = visible_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("keras-hpe: error: "), stderr
    assert needle in lines[0] and "Traceback" not in stderr, stderr
    return lines[0]


def prediction_records(out) -> list[dict]:
    """The records of `keras-hpe predict --out OUT`'s frames.jsonl, one per frame."""
    import json

    return [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]


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


@pytest.fixture(scope="session")
def seg_model_path(tmp_path_factory):
    """A tiny untrained 32 x 32 segmentation model on disk (stands for stage 1's)."""
    import keras

    from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model

    keras.utils.set_random_seed(0)
    config = SegmentationConfig(size=TINY_SIZE, filters=(4, 8, 8), kernel_sizes=(3, 3, 3), dilation_rates=(1, 2, 2),
                                hidden_units=(8,))
    path = tmp_path_factory.mktemp("model") / "seg_synth.keras"
    build_segmentation_model(config).save(path)
    return path


@pytest.fixture(scope="session")
def predict_models(tmp_path_factory):
    """A folder of untrained 32 x 32 models of the default configs for `keras-hpe predict`: seg.keras,
    reg.keras (shared heads) and other_reg.keras (the same network with other weights)."""
    import keras

    from keras_hpe.models.regression import RegressionConfig, build_regression
    from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model

    root = tmp_path_factory.mktemp("predict_models")
    keras.utils.set_random_seed(0)
    build_segmentation_model(SegmentationConfig(size=TINY_SIZE)).save(root / "seg.keras")
    for name in ("reg.keras", "other_reg.keras"):
        build_regression(RegressionConfig(input_size=TINY_SIZE), variant="shared").save(root / name)
    return root


@pytest.fixture(scope="session")
def dictionary_dir(synth_dir, tmp_path_factory):
    """A patch dictionary (P = 7, 4 trees) from every synthetic frame of `synth_dir`."""
    from keras_hpe.data.dataset import load_arrays
    from keras_hpe.restoration.index import build_dictionary

    out = tmp_path_factory.mktemp("dictionary") / "dict"
    build_dictionary(load_arrays(synth_dir, ["labels"])["labels"], out, n_trees=4, progress=False)
    return out


@pytest.fixture(scope="session")
def cascade_path(sensor_dir, tmp_path_factory):
    """The reg_cascade.keras of a tiny cascade (variant (b)) trained one epoch on `sensor_dir`, its JSON beside it."""
    from keras_hpe.training.reg import train_regression

    out = tmp_path_factory.mktemp("reg") / "cascade"
    return train_regression(sensor_dir, out, "cascade", tiny_reg_config(), progress=False).model_paths[0]
