"""`models.loading.load_model`: missing, foreign, damaged and wrong-kind model files are one-line UserErrors."""

import json
import zipfile

import keras
import numpy as np
import pytest
from conftest import assert_one_line_error

from keras_hpe.cli.main import main
from keras_hpe.errors import UserError
from keras_hpe.models.loading import load_model
from keras_hpe.models.regression import RegressionConfig, build_direct_regression
from keras_hpe.training.reg_predict import load_pipeline


@pytest.fixture(scope="module")
def reg_model_path(tmp_path_factory):
    """A tiny untrained 32 x 32 direct-regression model on disk."""
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "reg_direct.keras"
    build_direct_regression(RegressionConfig(input_size=32)).save(path)
    return path


def test_each_kind_loads_uncompiled(seg_model_path, reg_model_path):
    assert load_model(seg_model_path, "segmentation").output_shape == (None, 32, 32, 21)
    regression = load_model(reg_model_path, "regression")
    assert regression.output_shape == (None, 14, 3) and not regression.compiled


def test_a_model_of_the_other_kind_is_named(seg_model_path, reg_model_path):
    with pytest.raises(UserError, match=r"is a regression model \(joints output \(14, 3\)\); expected a segmentation"):
        load_model(reg_model_path, "segmentation")
    with pytest.raises(UserError, match=r"is a segmentation model \(per-pixel output \(32, 32, 21\)\); expected a reg"):
        load_model(seg_model_path, "regression")


def test_a_segmentation_model_without_the_not_hand_class_must_be_retrained(tmp_path, synth_dir, capsys):
    inputs = keras.Input((32, 32, 1))
    old = keras.Model(inputs, keras.layers.Conv2D(20, 1, activation="softmax")(inputs))  # the 20-part network
    path = tmp_path / "seg_synth.keras"
    old.save(path)
    with pytest.raises(UserError, match=rf"{path} is a segmentation model of 20 parts only .*predates the "
                                        r"not-hand class; retrain it"):
        load_model(path, "segmentation")
    with pytest.raises(UserError, match=r"not a keras_hpe segmentation or regression model.*expected a regression"):
        load_model(path, "regression")
    assert main(["evaluate-seg", "--model", str(path), "--data", str(synth_dir)]) == 2
    assert_one_line_error(capsys.readouterr().err, "predates the not-hand class")


def _damaged_copies(seg_model_path, folder):
    content = seg_model_path.read_bytes()
    (folder / "empty.keras").write_bytes(b"")
    (folder / "truncated.keras").write_bytes(content[: len(content) // 2])
    (folder / "garbage.keras").write_bytes(b"not a model" * 10)
    with zipfile.ZipFile(folder / "other.keras", "w") as archive:
        archive.writestr("notes.txt", "a zip, not a model")
    with zipfile.ZipFile(seg_model_path) as source, zipfile.ZipFile(folder / "bad_config.keras", "w") as archive:
        for name in source.namelist():
            archive.writestr(name, b"{not json" if name == "config.json" else source.read(name))


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.keras", "does not exist"),
        ("empty.keras", "is not a Keras .keras model file"),
        ("truncated.keras", "is not a Keras .keras model file"),
        ("garbage.keras", "is not a Keras .keras model file"),
        ("other.keras", "is not a Keras .keras model file"),
        ("bad_config.keras", "cannot load model"),
    ],
)
def test_unreadable_model_files(seg_model_path, tmp_path, name, message):
    _damaged_copies(seg_model_path, tmp_path)
    with pytest.raises(UserError, match=message) as error:
        load_model(tmp_path / name, "segmentation")
    assert str(tmp_path / name) in str(error.value) and "File not found" not in str(error.value)


def test_cli_names_the_kind_of_a_wrong_model(seg_model_path, reg_model_path, synth_dir, tmp_path, capsys):
    assert main(["evaluate-seg", "--model", str(reg_model_path), "--data", str(synth_dir)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{reg_model_path} is a regression model")
    frame = tmp_path / "x.npy"
    np.save(frame, np.zeros((480, 640), np.float32))
    assert main(["predict", "--reg", str(seg_model_path), "--out", str(tmp_path / "out"), str(frame)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{seg_model_path} is a segmentation model")
    _damaged_copies(seg_model_path, tmp_path)
    assert main(["evaluate-seg", "--model", str(tmp_path / "garbage.keras"), "--data", str(synth_dir)]) == 2
    assert_one_line_error(capsys.readouterr().err, "is not a Keras .keras model file")


@pytest.mark.parametrize(
    "info, key",
    [
        ([1, 2], "JSON object"),
        ({"variant": 5}, "'variant'"),
        ({"variant": "cascade", "models": "reg_cascade.keras", "refine_cube_mm": 150.0}, "'models'"),
        ({"variant": "cascade", "models": ["a.keras", "../b.keras"], "refine_cube_mm": 150.0}, "'models'"),
        ({"variant": "cascade", "models": ["a.keras", "b.keras"], "refine_cube_mm": "150"}, "'refine_cube_mm'"),
        ({"variant": "semi", "seg_model": ["seg.keras"]}, "'seg_model'"),
    ],
)
def test_bad_json_beside_a_regression_model(tmp_path, info, key):
    model_path = tmp_path / "reg_x.keras"
    model_path.write_bytes(b"")  # load_pipeline reads the JSON before the model
    model_path.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(UserError, match=key) as error:
        load_pipeline(model_path)
    assert str(model_path.with_suffix(".json")) in str(error.value)
