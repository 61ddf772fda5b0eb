"""Every command's output paths: never replace what the user owns, nothing half-written, one writer per folder."""

import contextlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import assert_one_line_error
from keras_hpe.cli.main import main
from keras_hpe.data.camera import xyz_to_uvd
from keras_hpe.data.dataset import read_manifest
from keras_hpe.data.nyu import write_nyu_like
from keras_hpe.faults import ENV as CRASH_ENV
from keras_hpe.models.regression import RegressionConfig, build_direct_regression, build_regression
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.outputs import LOCK_NAME

SIZE = 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synth_dir, sensor_eval_dir, seg_model_path, dictionary_dir):
    """Everything the commands read: data sets, models, a dictionary, joint files, NYU-format images."""
    root = tmp_path_factory.mktemp("cli_outputs")
    keras.utils.set_random_seed(0)
    build_direct_regression(RegressionConfig(input_size=SIZE)).save(root / "reg_direct.keras")
    build_segmentation_model(SegmentationConfig(size=SIZE)).save(root / "seg.keras")
    build_regression(RegressionConfig(input_size=SIZE), "shared").save(root / "reg.keras")
    rng = np.random.default_rng(0)
    xyz = np.concatenate([rng.uniform(-100, 100, (4, 14, 2)), rng.uniform(600, 900, (4, 14, 1))], axis=-1)
    for name, offset in (("gt.txt", 0.0), ("pred.txt", 5.0)):
        uvd = xyz_to_uvd(xyz + offset).reshape(4, -1)
        (root / name).write_text("\n".join(" ".join(f"{v:.3f}" for v in row) for row in uvd) + "\n")
    images = sorted(write_nyu_like(root / "nyu", "test", 3, seed=3).glob("*.png"))
    return {"root": root, "synth": synth_dir, "sensor_eval": sensor_eval_dir, "seg_synth": seg_model_path,
            "dictionary": dictionary_dir, "images": images}


# command -> (argv with OUT where the output goes, "file" or "folder")
COMMANDS = {
    "data show": (lambda i: ["data", "show", i["synth"], "--n", "2", "--out", "OUT"], "file"),
    "data synth": (lambda i: ["data", "synth", "--n", "4", "--size", "32", "--out", "OUT"], "folder"),
    "evaluate-joints": (lambda i: ["evaluate-joints", "--gt", i["root"] / "gt.txt", "--pred", i["root"] / "pred.txt",
                                   "--curve", "OUT"], "file"),
    "evaluate-seg": (lambda i: ["evaluate-seg", "--model", i["seg_synth"], "--data", i["sensor_eval"],
                                "--out", "OUT"], "folder"),
    "evaluate-reg": (lambda i: ["evaluate-reg", "--model", i["root"] / "reg_direct.keras", "--data",
                                i["sensor_eval"], "--out", "OUT"], "folder"),
    "dictionary build": (lambda i: ["dictionary", "build", "--data", i["synth"], "--trees", "1", "--no-progress",
                                    "--out", "OUT"], "folder"),
    "restore": (lambda i: ["restore", "--model", i["seg_synth"], "--index", i["dictionary"], "--data",
                           i["sensor_eval"], "--quiet", "--out", "OUT"], "folder"),
    "export": (lambda i: ["export", "--reg", i["root"] / "reg_direct.keras", "--out", "OUT"], "folder"),
    "predict": (lambda i: ["predict", *i["images"][:1], "--reg", i["root"] / "reg.keras", "--seg",
                           i["root"] / "seg.keras", "--out", "OUT"], "folder"),
}


def run(capsys, argv, out):
    code = main([str(out) if a == "OUT" else str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_path_of_the_wrong_kind_is_refused_and_left_alone(command, inputs, tmp_path, capsys):
    make_argv, kind = COMMANDS[command]
    argv = make_argv(inputs)
    if kind == "file":
        victim = tmp_path / "victim"
        victim.mkdir()
        (victim / "keep.txt").write_text("x")
        code, err = run(capsys, argv, victim)
        assert code == 2
        assert_one_line_error(err, f"{victim} is an existing folder")
        assert [p.name for p in victim.iterdir()] == ["keep.txt"]
    else:
        victim = tmp_path / "victim.txt"
        victim.write_text("x")
        code, err = run(capsys, argv, victim)
        assert code == 2
        assert_one_line_error(err, f"{victim} exists and is not a folder")
        assert victim.read_text() == "x"
    plain = tmp_path / "plain.txt"
    plain.write_text("y")
    code, err = run(capsys, argv, plain / "below")
    assert code == 2
    assert_one_line_error(err, f"{plain} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([victim.name, plain.name])


def test_evaluate_joints_never_deletes_the_curve_folder(inputs, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    code, err = run(capsys, COMMANDS["evaluate-joints"][0](inputs), victim)
    assert code == 2 and (victim / "keep.txt").read_text() == "x"


def test_evaluate_seg_checks_examples_before_writing_scores(inputs, tmp_path, capsys):
    out = tmp_path / "scores"
    code, err = run(capsys, [*COMMANDS["evaluate-seg"][0](inputs), "--examples", "0"], out)
    assert code == 2
    assert_one_line_error(err, "--examples must be >= 1")
    assert not out.exists()


def test_predict_writes_nothing_when_a_later_input_is_missing(inputs, tmp_path, capsys):
    missing = tmp_path / "gone.npy"
    out = tmp_path / "pred"
    argv = ["predict", *inputs["images"], missing, "--batch-size", "1", "--reg", inputs["root"] / "reg.keras",
            "--seg", inputs["root"] / "seg.keras", "--out", "OUT"]
    code, err = run(capsys, argv, out)
    assert code == 2
    assert_one_line_error(err, f"{missing}: no such file")
    assert not out.exists()


@contextlib.contextmanager
def lock_held_elsewhere(folder):
    """Another process holds `folder`'s lock (as a running writer would) while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text("4242")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(folder / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("command, what", [("predict", "prediction folder"), ("data synth", "data set folder")])
def test_a_folder_being_written_by_another_process_is_refused(command, what, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    with lock_held_elsewhere(out):
        code, err = run(capsys, COMMANDS[command][0](inputs), out)
    assert code == 2
    assert_one_line_error(err, f"{what} {out} is being written by another process (pid 4242)")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def _synth(out, seed, env=None):
    command = [sys.executable, "-m", "keras_hpe.cli.main", "data", "synth", "--n", "600", "--size", "32",
               "--seed", str(seed), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_concurrent_writers_of_one_data_set_never_mix(tmp_path):
    from keras_hpe.data.synth import generate_synth

    expected = {seed: tmp_path / f"alone{seed}" for seed in (7, 8)}
    for seed, folder in expected.items():
        generate_synth(folder, 600, seed=seed, size=32, progress=False)
    for race in range(10):
        out = tmp_path / f"race{race}"
        writers = [_synth(out, 7), _synth(out, 8)]
        results = [(writer.wait(120), writer.stderr.read()) for writer in writers]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, err in results if code == 2).strip()
        assert str(out) in loser and "\n" not in loser
        seed = read_manifest(out).seed
        assert (out / "shard-00000.npz").read_bytes() == (expected[seed] / "shard-00000.npz").read_bytes()
        assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.npz"]


def test_a_killed_writer_leaves_no_temporaries_after_the_resumed_run(tmp_path):
    out = tmp_path / "synth"
    killed = _synth(out, 7, {CRASH_ENV: "dataset.shard:1"})
    assert killed.wait(120) == -9
    (out / ".shard-00001.npz.x1y2z3w4.tmp").mkdir()  # as atomic_path leaves it when killed mid-write
    assert _synth(out, 7).wait(120) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.npz"]
    assert read_manifest(out).count == 600


def test_reproduce_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "synth").mkdir(parents=True)
    (out / "synth" / "mine.txt").write_text("x")
    code = main(["reproduce", "--preset", "tiny", "--out", str(out), "--reports", str(tmp_path / "reports"),
                 "--saved-models", str(tmp_path / "saved"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert_one_line_error(err, f"{out / 'synth'} exists and is not a stage folder")
    assert (out / "synth" / "mine.txt").read_text() == "x"
    assert sorted(p.name for p in out.iterdir()) == ["synth"]


def test_a_reproduction_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with lock_held_elsewhere(out):
        code = main(["reproduce", "--preset", "tiny", "--out", str(out), "--reports", str(tmp_path / "reports"),
                     "--saved-models", str(tmp_path / "saved"), "--no-progress"])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, f"reproduction folder {out} is being written by another process")
    assert not (tmp_path / "reports").exists()
