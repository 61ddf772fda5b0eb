"""`keras-hpe restore` and `keras-hpe train seg-weak` on tiny data: a run, and bad inputs in one line."""

import json

import keras
import pytest

from keras_hpe.cli import main as cli_main
from keras_hpe.cli import train as cli_train
from keras_hpe.cli.train_seg_weak import add_seg_weak_parser
from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.restoration.index import build_dictionary

TINY_MODEL = SegmentationConfig(size=32, filters=(4, 8, 8), kernel_sizes=(3, 3, 3), dilation_rates=(1, 2, 2),
                                hidden_units=(8,))


@pytest.fixture(scope="module", autouse=True)
def stage2_commands():
    """Register this stage's commands (cli/main.py and cli/train.py list them once they are merged)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_main, "COMMAND_MODULES", ("keras_hpe.cli.restore", "keras_hpe.cli.train"))
        if add_seg_weak_parser not in cli_train.STAGES:
            patch.setattr(cli_train, "STAGES", (*cli_train.STAGES, add_seg_weak_parser))
        yield


def run_cli(capsys, *argv):
    code = cli_main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def save_model(path, size):
    keras.utils.set_random_seed(0)
    build_segmentation_model(TINY_MODEL if size == 32 else SegmentationConfig(size=size, filters=(4, 4, 4),
                                                                              hidden_units=(4,))).save(path)
    return path


@pytest.fixture(scope="module")
def work(synth_dir, tmp_path_factory):
    """A 32 x 32 and a 64 x 64 model, and dictionaries with patch sizes 7 and 5."""
    work = tmp_path_factory.mktemp("cli_restore")
    save_model(work / "seg32.keras", 32)
    save_model(work / "seg64.keras", 64)
    labels = load_arrays(synth_dir, ["labels"])["labels"]
    build_dictionary(labels, work / "dict7", patch=7, n_trees=4, progress=False)
    build_dictionary(labels, work / "dict5", patch=5, n_trees=4, progress=False)
    return work


def test_restore_writes_the_accepted_frames_and_prints_a_json_summary(work, sensor_dir, capsys):
    out = work / "restored"
    code, stdout, _ = run_cli(capsys, "restore", "--model", work / "seg32.keras", "--index", work / "dict7",
                              "--data", sensor_dir, "--out", out, "--chunk", "10", "--quiet")
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["frames"] == 32 and summary["accepted"] + summary["rejected"] == 32
    assert read_manifest(out).count == summary["accepted"]
    assert len((out / "quality.csv").read_text().splitlines()) == 1 + 32


def one_line_error(capsys, *argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_a_dictionary_with_another_patch_size_is_refused(work, sensor_dir, tmp_path, capsys):
    err = one_line_error(capsys, "restore", "--model", work / "seg32.keras", "--index", work / "dict5",
                         "--data", sensor_dir, "--out", tmp_path / "out")
    assert "patch size 5" in err and "--patch is 7" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_data_folder_is_refused(work, tmp_path, capsys):
    err = one_line_error(capsys, "restore", "--model", work / "seg32.keras", "--index", work / "dict7",
                         "--data", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert "nowhere" in err and "does not exist" in err


def test_a_model_of_another_crop_size_is_refused(work, sensor_dir, tmp_path, capsys):
    err = one_line_error(capsys, "restore", "--model", work / "seg64.keras", "--index", work / "dict7",
                         "--data", sensor_dir, "--out", tmp_path / "out")
    assert "32x32" in err and "64x64" in err


def test_a_missing_model_is_refused(work, sensor_dir, tmp_path, capsys):
    err = one_line_error(capsys, "restore", "--model", tmp_path / "none.keras", "--index", work / "dict7",
                         "--data", sensor_dir, "--out", tmp_path / "out")
    assert "none.keras" in err


def test_train_seg_weak_is_registered_with_help_on_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["train", "seg-weak", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--init", "--synth", "--restored", "--out", "--epochs", "--batch", "--synth-weight", "--seed"):
        assert option in text
    assert "default: 10" in text


def test_train_seg_weak_refuses_a_set_not_made_by_restore(work, synth_dir, sensor_eval_dir, tmp_path, capsys):
    err = one_line_error(capsys, "train", "seg-weak", "--init", work / "seg32.keras", "--synth", synth_dir,
                         "--restored", sensor_eval_dir, "--out", tmp_path / "weak", "--quiet")
    assert "not a restored data set" in err
