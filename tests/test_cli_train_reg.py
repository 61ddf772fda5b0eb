"""`keras-hpe train reg` and `keras-hpe evaluate-reg`: a run end to end, and bad inputs -> exit 2, one line."""

import argparse
import json

import keras
import numpy as np
import pytest

from conftest import assert_one_line_error
from keras_hpe.cli import evaluate_reg, main
from keras_hpe.cli.train_reg import add_reg_parser
from keras_hpe.data.dataset import generate_dataset
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.outputs import folder_lock


def _parser() -> argparse.ArgumentParser:
    """`keras-hpe` with a `train` group holding `reg`, and `evaluate-reg`, as cli/main.py wires them."""
    parser = argparse.ArgumentParser(prog="keras-hpe")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train").add_subparsers(dest="train_command", required=True)
    add_reg_parser(train)
    evaluate_reg.add_parser(commands)
    return parser


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(main, "build_parser", _parser)
    return main.main


@pytest.fixture(scope="module")
def depth_only(tmp_path_factory):
    """A 32 x 32 data set of depth and crop centres only: no joints to regress or score."""
    def make_shard(rng, count):
        return {"depth_mm": rng.uniform(500, 700, (count, 32, 32)).astype("float32"),
                "center_uvd": np.tile(np.float32([320, 240, 600]), (count, 1))}

    out = tmp_path_factory.mktemp("data") / "depth_only"
    generate_dataset(out, 4, make_shard=make_shard, domain="sensor", size=32, seed=0,
                     fields=["depth_mm", "center_uvd"], progress=False)
    return out


@pytest.fixture(scope="module")
def seg48(tmp_path_factory):
    """A segmentation model for 48 x 48 crops: the wrong size for the 32 x 32 test data."""
    path = tmp_path_factory.mktemp("seg") / "seg_synth.keras"
    build_segmentation_model(SegmentationConfig(size=48, filters=(4, 4, 4), hidden_units=(8,))).save(path)
    return path


def test_train_then_evaluate(cli, sensor_dir, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    out = tmp_path / "out"
    code = cli(["train", "reg", "--variant", "direct", "--data", str(sensor_dir), "--out", str(out),
                "--epochs", "1", "--batch", "16", "--quiet", "--strategy", "mirrored", "--precision", "mixed"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["variant"] == "direct" and summary["frames"] == 32 and summary["epochs"] == 1
    assert (out / "reg_direct.keras").is_file() and (out / "reg_direct.json").is_file()
    # This machine has no GPU: a MirroredStrategy over its CPU, and mixed precision there is bfloat16.
    run = json.loads((out / "reg_direct.json").read_text())["run"]
    assert (run["strategy"], run["replicas"], run["precision"]) == ("MirroredStrategy", 1, "mixed_bfloat16")

    code = cli(["evaluate-reg", "--model", str(out / "reg_direct.keras"), "--data", str(sensor_dir),
                "--out", str(tmp_path / "eval"), "--batch", "16"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(printed[-1])
    assert summary["variant"] == "direct" and summary["frames"] == 32 and summary["mean_3d_mm"] > 0
    assert set(summary["per_joint_mm"]) >= {"palm", "thumb_tip"}
    assert (tmp_path / "eval" / "reg_direct_curve.png").stat().st_size > 0
    rows = (tmp_path / "eval" / "reg_direct_pred_uvd.txt").read_text().splitlines()
    assert len(rows) == 32 and len(rows[0].split()) == 42


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "reg", "--variant", "full", "--data", "{data}", "--out", "{tmp}/o"], "--seg"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o", "--seg", "{seg}"], "--seg"),
        (["train", "reg", "--variant", "semi", "--data", "{data}", "--out", "{tmp}/o", "--seg", "{seg}"], "48x48"),
        (["train", "reg", "--variant", "direct", "--data", "{tmp}/nothing", "--out", "{tmp}/o"], "does not exist"),
        (["train", "reg", "--variant", "sideways", "--data", "{data}", "--out", "{tmp}/o"], "variant"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o", "--epochs", "0"], "epochs"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o/a", "--val", "{depth_only}"],
         "joints_xyz"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o", "--val", "{tmp}/nothing"],
         "does not exist"),
        (["train", "reg", "--variant", "semi", "--data", "{data}", "--out", "{tmp}/o/a", "--seg", "{tmp}/none.keras"],
         "does not exist"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o", "--seed", "-1"], "seed"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o", "--strategy", "tpu"],
         "strategy must be one of auto, mirrored, default, got 'tpu'"),
        (["train", "reg", "--variant", "direct", "--data", "{data}", "--out", "{tmp}/o", "--precision", "half"],
         "precision must be one of auto, float32, mixed, got 'half'"),
        (["evaluate-reg", "--model", "{tmp}/none.keras", "--data", "{data}"], "does not exist"),
        (["evaluate-reg", "--model", "{seg}", "--data", "{data}"], "is a segmentation model"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(cli, sensor_dir, seg48, depth_only, tmp_path, capsys, argv, message):
    values = {"data": sensor_dir, "tmp": tmp_path, "seg": seg48, "depth_only": depth_only}
    assert cli([arg.format(**values) for arg in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keras-hpe: error:") and message in err[0]
    assert not (tmp_path / "o").exists()  # a failed training leaves no --out folder


def test_a_second_training_into_a_locked_folder_is_a_one_line_error(cli, sensor_dir, tmp_path, capsys):
    with folder_lock(tmp_path / "out"):
        code = cli(["train", "reg", "--variant", "direct", "--data", str(sensor_dir), "--out", str(tmp_path / "out"),
                    "--quiet"])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, f"{tmp_path / 'out'} is being written by another process")
