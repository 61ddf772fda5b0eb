"""`keras-hpe predict` on NYU-format PNGs and .npy depth images: outputs, centres, the cascade, bad frames.

Streaming (folders, lists, batches, resuming): test_predict_stream.py."""

import argparse
import io
import json

import numpy as np
import pytest

from conftest import prediction_records
from keras_hpe.cli import predict as predict_cli
from keras_hpe.data.camera import xyz_to_uvd
from keras_hpe.data.crop import center_of_mass_uvd, crop_depth
from keras_hpe.data.nyu import read_depth_png, write_nyu_like
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import read_joints_txt
from keras_hpe.pipeline import load_estimator

SIZE = 32


@pytest.fixture(scope="module")
def setup(predict_models, tmp_path_factory):
    """The models' folder, and two NYU PNGs and an .npy holding the first one's depth."""
    folder = tmp_path_factory.mktemp("predict")
    pngs = sorted(write_nyu_like(folder / "nyu", "test", 2, seed=3).glob("*.png"))
    npy = folder / "frame.npy"
    np.save(npy, read_depth_png(pngs[0]).astype(np.uint16))
    return predict_models, [*pngs, npy]


def _run(root, *argv, models=None):
    parser = argparse.ArgumentParser()
    predict_cli.add_parser(parser.add_subparsers())
    models = models if models is not None else ["--seg", root / "seg.keras", "--reg", root / "reg.keras"]
    args = parser.parse_args(["predict", *map(str, models), *map(str, argv)])
    return args.func(args)


def test_predict_writes_joints_and_overlays(setup, tmp_path):
    root, inputs = setup
    out = tmp_path / "out"
    assert _run(root, *inputs, "--out", out, "--batch-size", "2", "--overlays", "all", "--no-progress") == 0
    frames = prediction_records(out)
    assert [f["file"] for f in frames] == [str(p) for p in inputs]
    for frame, path in zip(frames, inputs):
        depth = read_depth_png(path) if path.suffix == ".png" else np.load(path).astype(np.float32)
        np.testing.assert_allclose(frame["center_uvd"], center_of_mass_uvd(depth))
        xyz, uvd = np.asarray(frame["joints_xyz_mm"]), np.asarray(frame["joints_uvd"])
        assert xyz.shape == (14, 3)
        np.testing.assert_allclose(xyz_to_uvd(xyz), uvd, atol=0.05)
        assert (out / frame["overlay"]).stat().st_size > 1000
    # The .npy holds the first PNG's depth: same input, same joints.
    np.testing.assert_allclose(frames[2]["joints_xyz_mm"], frames[0]["joints_xyz_mm"], atol=1e-2)
    # joints.txt: the NYU text format that evaluate-joints reads, the same joints.
    np.testing.assert_array_equal(read_joints_txt(out / "joints.txt"), [f["joints_uvd"] for f in frames])


def test_given_centres_are_used(setup, tmp_path):
    root, inputs = setup
    png = inputs[0]
    centre = center_of_mass_uvd(read_depth_png(png)) + [6.0, -4.0, 10.0]
    centers = tmp_path / "centres.csv"
    centers.write_text(f"file,u,v,d\n{png.name},{centre[0]},{centre[1]},{centre[2]}\n")
    out = tmp_path / "out"
    assert _run(root, png, "--out", out, "--centers", centers) == 0
    [frame] = prediction_records(out)
    assert frame["center_source"] == "given"
    np.testing.assert_allclose(frame["center_uvd"], centre)
    estimator = load_estimator(root / "reg.keras", root / "seg.keras")
    crop = crop_depth(read_depth_png(png), centre, SIZE)
    expected = estimator.predict(crop[None], centre[None].astype(np.float32))["joints_xyz"][0]
    np.testing.assert_allclose(frame["joints_xyz_mm"], expected, atol=1e-2)


def test_bfloat16_precision_predicts_near_float32(setup, tmp_path):
    root, inputs = setup
    joints = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        assert _run(root, *inputs, "--out", out, "--overlays", "0", "--no-progress", "--precision", precision) == 0
        joints[precision] = np.array([frame["joints_xyz_mm"] for frame in prediction_records(out)])
        # Part of the run's identity: a run is not resumed in another precision.
        assert json.loads((out / "state.json").read_text())["identity"]["models"]["estimator"]["precision"] == precision
    # Equal here (this untrained network's labels do not flip); a flipped label moves a joint by millimetres.
    assert np.linalg.norm(joints["bfloat16"] - joints["float32"], axis=-1).mean() < 1.0
    with pytest.raises(UserError, match="precision must be one of"):
        _run(root, *inputs, "--out", tmp_path / "bad", "--precision", "float16")


def test_predict_with_a_cascade(setup, cascade_path, seg_model_path, tmp_path, capsys):
    from conftest import assert_one_line_error

    from keras_hpe.cli.main import main

    root, inputs = setup
    out = tmp_path / "out"
    assert _run(root, *inputs[:2], "--out", out, models=["--reg", cascade_path]) == 0
    models = json.loads((out / "state.json").read_text())["identity"]["models"]["estimator"]
    assert (models["refine_model"], models["refine_cube_mm"]) == ("regression_direct", 180.0)
    assert models["segmentation_model"] is None
    estimator = load_estimator(cascade_path)
    frames = prediction_records(out)
    assert len(frames) == 2
    for frame, path in zip(frames, inputs):
        centre = np.asarray(frame["center_uvd"], dtype=np.float32)
        crop = crop_depth(read_depth_png(path), centre, SIZE)
        expected = estimator.predict(crop[None], centre[None])
        np.testing.assert_allclose(frame["joints_xyz_mm"], expected["joints_xyz"][0], atol=1e-2)
        np.testing.assert_allclose(frame["joints_uvd"], expected["joints_uvd"][0], atol=1e-2)
        assert (out / frame["overlay"]).stat().st_size > 1000

    capsys.readouterr()
    argv = ["predict", "--reg", cascade_path, "--seg", seg_model_path, "--out", tmp_path / "refused", inputs[0]]
    assert main([str(a) for a in argv]) == 2
    assert_one_line_error(capsys.readouterr().err, "(cascade) takes no segmentation; do not give --seg")
    assert not (tmp_path / "refused").exists()


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, depth_mm=np.ones((480, 640), np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.png", b"not a png", "cannot read"),
        ("small.npy", np.ones((100, 120), np.float32), "expected a"),
        ("empty.npy", np.zeros((480, 640), np.float32), "empty depth"),
        ("nan.npy", np.where(np.eye(480, 640) > 0, np.nan, 500).astype(np.float32), "NaN"),
        ("negative.npy", np.full((480, 640), -5.0, np.float32), "negative"),
        ("depth.txt", b"1 2 3", "unsupported"),
        ("zero_bytes.npy", b"", "empty, truncated or damaged"),
        ("archive.npy", _npz_bytes(), "got an .npz archive"),
        ("huge.npy", np.full((480, 640), 1e30), "above 65535 mm"),
        ("float32_max.npy", np.full((480, 640), 3e38, np.float32), "above 65535 mm"),
        ("far.npy", np.full((480, 640), 60000, np.uint16), "60000 mm deep, outside any depth camera's range"),
        ("near.npy", np.full((480, 640), 50.0, np.float32), "50 mm deep, outside any depth camera's range"),
    ],
)
def test_bad_inputs_are_one_line_user_errors(setup, tmp_path, name, content, message):
    root, _ = setup
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message) as error:
        _run(root, path, "--out", out)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    if path.suffix == ".txt":  # not a depth frame: refused before any work
        assert not out.exists()
    else:  # a frame that cannot be predicted: recorded and skipped
        [record] = prediction_records(out)
        assert record["file"] == str(path) and message in record["error"] and "joints_uvd" not in record
        assert (out / "joints.txt").read_text().split() == ["nan"] * 42


@pytest.mark.parametrize("depth_mm, shown", [(1e30, "1e+30"), (60000.0, "60000"), (50.0, "50")])
def test_given_centres_outside_the_depth_range_are_refused(setup, tmp_path, capsys, depth_mm, shown):
    from conftest import assert_one_line_error

    from keras_hpe.cli.main import main

    root, inputs = setup
    centers = tmp_path / "centres.json"
    centers.write_text(json.dumps({inputs[0].name: [320.0, 240.0, depth_mm]}))
    argv = ["predict", "--seg", root / "seg.keras", "--reg", root / "reg.keras", "--centers", centers,
            "--out", tmp_path / "out", inputs[0]]
    assert main([str(a) for a in argv]) == 2
    line = assert_one_line_error(capsys.readouterr().err, f"centres file {centers}: the centre of {inputs[0].name!r}")
    assert f"is {shown} mm deep, outside any depth camera's range (100 mm to 10 m)" in line
    assert not (tmp_path / "out").exists()
