"""TF Serving export: a SavedModel that plain TensorFlow loads and that gives the pipeline's outputs."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from clients import run_client
from keras_hpe.cli import export as export_cli
from keras_hpe.errors import UserError
from keras_hpe.export import METADATA_FILE, existing_versions, export_estimator
from keras_hpe.models.regression import RegressionConfig, build_direct_regression, build_regression
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.data.dataset import load_arrays
from keras_hpe.pipeline import HandPoseEstimator, load_estimator

SIZE = 32

# The SavedModel in plain TensorFlow, in a process where keras_hpe is not importable (tests/clients.py).
SAVED_MODEL_CLIENT = """
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[3]).signatures["serving_default"]
outputs = serve(depth_mm=tf.constant(inputs["depth_mm"]), center_uvd=tf.constant(inputs["center_uvd"]))
np.savez(sys.argv[4], **{name: value.numpy() for name, value in outputs.items()})
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    estimator = HandPoseEstimator(
        build_regression(RegressionConfig(input_size=SIZE), variant="separate"),
        build_segmentation_model(SegmentationConfig(size=SIZE)),
    )
    out = tmp_path_factory.mktemp("saved_models") / "keras_hpe"
    return estimator, export_estimator(estimator, out)


def _inputs(n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    v, u = np.mgrid[:SIZE, :SIZE]
    # A bump of depth around the centre, nothing at the corners.
    depth = 600 + 0.2 * ((u - SIZE / 2) ** 2 + (v - SIZE / 2) ** 2) + rng.normal(0, 2, (n, SIZE, SIZE))
    depth[:, ((u - SIZE / 2) ** 2 + (v - SIZE / 2) ** 2) > (0.4 * SIZE) ** 2] = 0
    center = np.stack([rng.uniform(250, 390, n), rng.uniform(180, 300, n), np.full(n, 600.0)], -1)
    return {"depth_mm": depth.astype(np.float32), "center_uvd": center.astype(np.float32)}


def test_saved_model_loads_without_keras_hpe_and_matches(exported, tmp_path):
    estimator, path = exported
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    inputs = _inputs()
    served = run_client(SAVED_MODEL_CLIENT, inputs, path, tmp_path)
    expected = estimator.predict(inputs["depth_mm"], inputs["center_uvd"])
    assert set(served) == {"joints_xyz", "joints_uvd", "parts"}
    np.testing.assert_allclose(served["joints_xyz"], expected["joints_xyz"], atol=1e-3)
    np.testing.assert_allclose(served["joints_uvd"], expected["joints_uvd"], atol=1e-3)
    assert served["parts"].dtype == np.uint8
    assert np.mean(served["parts"] == expected["parts"]) > 0.999
    metadata = json.loads((path / METADATA_FILE).read_text())
    assert metadata["size"] == SIZE and len(metadata["joint_names"]) == 14 and metadata["cascade"] is None


def test_signature_has_named_inputs_and_outputs(exported):
    _, path = exported
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    for name in ("depth_mm", "center_uvd", "joints_xyz", "joints_uvd", "parts"):
        assert f"['{name}']" in shown
    assert f"shape: (-1, {SIZE}, {SIZE})" in shown


def _export_cli(*argv) -> int:
    parser = argparse.ArgumentParser()
    export_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", *map(str, argv)])
    return args.func(args)


def test_cli_exports_a_cascade_that_serves_as_the_keras_pipeline(cascade_path, sensor_dir, tmp_path, capsys):
    out = tmp_path / "hpe"
    assert _export_cli("--reg", cascade_path, "--out", out) == 0
    assert "(cascade: second cube 180 mm)" in capsys.readouterr().out
    arrays = load_arrays(sensor_dir, ["depth_mm", "center_uvd"])
    inputs = {"depth_mm": arrays["depth_mm"], "center_uvd": arrays["center_uvd"].astype(np.float32)}
    served = run_client(SAVED_MODEL_CLIENT, inputs, out / "1", tmp_path)
    expected = load_estimator(cascade_path).predict(inputs["depth_mm"], inputs["center_uvd"])
    difference = np.abs(served["joints_xyz"] - expected["joints_xyz"])
    print(f"cascade SavedModel: |served - Keras| mean {difference.mean():.6f} mm, max {difference.max():.6f} mm")
    assert set(served) == {"joints_xyz", "joints_uvd"} and difference.max() < 1e-3
    np.testing.assert_allclose(served["joints_uvd"], expected["joints_uvd"], atol=1e-3)
    metadata = json.loads((out / "1" / METADATA_FILE).read_text())
    assert metadata["cascade"] == {"refine_model": "regression_direct", "refine_cube_mm": 180.0}
    assert metadata["outputs"] == ["joints_xyz", "joints_uvd"]


def test_cli_refuses_a_broken_cascade_before_writing(cascade_path, seg_model_path, tmp_path):
    out = tmp_path / "hpe"
    with pytest.raises(UserError, match="takes no segmentation; do not give --seg"):
        _export_cli("--reg", cascade_path, "--seg", seg_model_path, "--out", out)
    # The JSON names a second model that is not there.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("reg_cascade.keras", "reg_cascade.json"):
        (broken / name).write_bytes((cascade_path.parent / name).read_bytes())
    with pytest.raises(UserError, match=f"model file {broken / 'reg_cascade_refine.keras'} does not exist"):
        _export_cli("--reg", broken / "reg_cascade.keras", "--out", out)
    assert not out.exists()


def test_cli_exports_next_version_of_a_direct_model(tmp_path):
    reg_path = tmp_path / "reg_direct.keras"
    build_direct_regression(RegressionConfig(input_size=SIZE)).save(reg_path)
    out = tmp_path / "models" / "hpe"
    (out / "3").mkdir(parents=True)
    assert _export_cli("--reg", reg_path, "--out", out) == 0
    assert existing_versions(out) == [3, 4]
    assert sorted(p.name for p in out.iterdir()) == ["3", "4"]  # no temporary left behind
    metadata = json.loads((out / "4" / METADATA_FILE).read_text())
    assert metadata["outputs"] == ["joints_xyz", "joints_uvd"] and metadata["segmentation_model"] is None

    with pytest.raises(UserError, match="already exists"):
        _export_cli("--reg", reg_path, "--out", out, "--version", "4")
    seg_path = tmp_path / "seg.keras"
    build_segmentation_model(SegmentationConfig(size=SIZE)).save(seg_path)
    with pytest.raises(UserError, match="do not give --seg"):
        _export_cli("--reg", reg_path, "--seg", seg_path, "--out", out)
    with pytest.raises(UserError, match="does not exist"):
        _export_cli("--reg", tmp_path / "missing.keras", "--out", out)
    assert existing_versions(out) == [3, 4]
