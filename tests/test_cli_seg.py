"""`keras-hpe train seg` and `keras-hpe evaluate-seg` end to end on tiny data."""

import argparse
import json

import pytest

from conftest import assert_one_line_error
from interruptions import Interrupt, StopAfter
from keras_hpe.cli import main as cli_main
from keras_hpe.presets import get_preset
from keras_hpe.training.seg import train_segmentation

MODULES = ("keras_hpe.cli.train", "keras_hpe.cli.evaluate_seg")


@pytest.fixture(scope="module", autouse=True)
def seg_commands():
    """Only this stage's command modules: these tests do not depend on the other command groups."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_main, "COMMAND_MODULES", MODULES)
        yield


def run_cli(capsys, *argv):
    code = cli_main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(synth_dir, tmp_path_factory):
    """A quick-preset model trained for one epoch through the CLI."""
    out = tmp_path_factory.mktemp("seg")
    code = cli_main.main(["train", "seg", "--data", str(synth_dir), "--out", str(out), "--epochs", "1",
                          "--batch", "16", "--quiet"])
    assert code == 0
    return out


def test_train_seg_writes_the_model_and_prints_json(trained, capsys):
    assert (trained / "seg_synth.keras").is_file()
    metrics = json.loads((trained / "seg_synth.json").read_text())
    assert metrics["epochs"] == 1 and metrics["batch_size"] == 16
    assert metrics["config"]["model"]["size"] == 32  # the model takes the data's crop size


def test_evaluate_seg_on_synthetic_data(trained, synth_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(capsys, "evaluate-seg", "--model", trained / "seg_synth.keras", "--data", synth_dir,
                              "--out", out, "--examples", "3")
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["frames"] == 48 and 0.0 <= summary["per_pixel_accuracy"] <= 1.0
    assert "palm" in stdout and "mean per-class accuracy" in stdout
    for name in ("scores.json", "confusion.png", "examples.png"):
        assert (out / name).stat().st_size > 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["per_pixel_accuracy"] == summary["per_pixel_accuracy"]
    assert len(scores["confusion"]) == 20


def test_evaluate_seg_on_the_sensor_eval_split(trained, sensor_eval_dir, capsys):
    code, stdout, _ = run_cli(capsys, "evaluate-seg", "--model", trained / "seg_synth.keras", "--data", sensor_eval_dir)
    assert code == 0
    assert json.loads(stdout.strip().splitlines()[-1])["frames"] == 16


def test_evaluate_seg_without_labels_is_a_one_line_error(trained, sensor_dir, capsys):
    code, _, err = run_cli(capsys, "evaluate-seg", "--model", trained / "seg_synth.keras", "--data", sensor_dir)
    assert code == 2
    assert "no part labels" in err and len(err.strip().splitlines()) == 1


def test_evaluate_seg_missing_model_is_a_one_line_error(synth_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate-seg", "--model", tmp_path / "none.keras", "--data", synth_dir)
    assert code == 2 and "does not exist" in err


def test_train_seg_missing_data_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "seg", "--data", tmp_path / "none", "--out", tmp_path / "out", "--quiet")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("option, value", [("--strategy", "tpu"), ("--precision", "float16")])
def test_train_seg_unknown_strategy_or_precision_is_a_one_line_error(synth_dir, tmp_path, option, value, capsys):
    code, _, err = run_cli(capsys, "train", "seg", "--data", synth_dir, "--out", tmp_path / "out", option, value,
                           "--quiet")
    assert code == 2
    assert_one_line_error(err, f"{option.strip('-')} must be one of")
    assert not (tmp_path / "out").exists()


def test_train_seg_bad_batch_is_a_user_error(synth_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "seg", "--data", synth_dir, "--out", tmp_path / "out", "--batch", "0",
                           "--quiet")
    assert code == 2 and "batch size" in err


def test_rerunning_an_interrupted_run_with_another_seed_is_a_one_line_error(synth_dir, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(Interrupt):
        train_segmentation(synth_dir, out, get_preset("quick").seg, epochs=2, batch_size=16, progress=False,
                           callbacks=[StopAfter(epoch=1, batch=0)])
    options = ["train", "seg", "--data", synth_dir, "--out", out, "--epochs", "2", "--batch", "16", "--quiet"]
    code, _, err = run_cli(capsys, *options, "--seed", "1")
    assert code == 2
    line = assert_one_line_error(err, str(out))
    assert "different: seed" in line and f"delete {out / 'backup' / 'seg'}" in line


def test_every_option_has_help():
    parser = cli_main.build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    train = [a for a in subparsers.choices["train"]._actions if isinstance(a, argparse._SubParsersAction)][0]
    for command in (train.choices["seg"], train.choices["seg-weak"], subparsers.choices["evaluate-seg"]):
        for action in command._actions:
            assert action.help, f"{command.prog} {action.option_strings} has no --help text"
