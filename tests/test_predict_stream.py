"""`keras-hpe predict` as a batch job: folders and lists of frames, batches, skipped frames, resuming after a kill.

Memory is not asserted here: benchmarks/predict_memory_benchmark.py measures it.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_one_line_error, prediction_records
from keras_hpe.cli.main import main
from keras_hpe.data.nyu import read_depth_png, write_nyu_like
from keras_hpe.evaluation.joints import read_joints_txt
from keras_hpe.faults import ENV as CRASH_ENV

FRAMES = 7


@pytest.fixture(scope="module")
def setup(predict_models, tmp_path_factory):
    """The models' folder, and a folder of 7 NYU PNGs."""
    return predict_models, write_nyu_like(tmp_path_factory.mktemp("stream") / "nyu", "test", FRAMES, seed=5)


def _argv(root, *argv, reg="reg.keras"):
    return ["predict", "--seg", str(root / "seg.keras"), "--reg", str(root / reg), "--no-progress", *map(str, argv)]


def _files(out) -> dict[str, bytes]:
    """Every file in a prediction folder, by relative path."""
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}


def test_folders_and_lists_name_frames_in_order(setup, tmp_path, capsys):
    root, folder = setup
    pngs = sorted(folder.glob("*.png"))
    mixed = tmp_path / "mixed"
    (mixed / "sub").mkdir(parents=True)
    (mixed / "a.PNG").write_bytes(pngs[0].read_bytes())
    np.save(mixed / "b.npy", read_depth_png(pngs[1]).astype(np.uint16))
    (mixed / "notes.txt").write_text("not a frame")
    (mixed / ".c.npy").write_bytes(b"")  # hidden: a copy in progress
    np.save(mixed / "sub" / "d.npy", read_depth_png(pngs[2]))  # folders are not searched below their top
    listing = tmp_path / "lists" / "frames.txt"
    listing.parent.mkdir()
    listing.write_text(f"# a frame, a folder, a frame relative to the list\n{pngs[2]}\n\n../mixed\n  ../mixed/b.npy \n")
    out = tmp_path / "out"
    assert main(_argv(root, pngs[3], mixed, "--list", listing, "--out", out)) == 0
    relative = listing.parent / "../mixed"
    expected = [pngs[3], mixed / "a.PNG", mixed / "b.npy", pngs[2], relative / "a.PNG", relative / "b.npy",
                relative / "b.npy"]
    records = prediction_records(out)
    assert [record["file"] for record in records] == [str(path) for path in expected]
    assert "7 of 7 frame(s) predicted" in capsys.readouterr().out
    uvd = np.asarray([record["joints_uvd"] for record in records])
    np.testing.assert_array_equal(read_joints_txt(out / "joints.txt"), uvd)
    # The same depth named twice, or as PNG and .npy, gives the same joints; other frames others.
    np.testing.assert_array_equal(uvd[1], uvd[4])
    np.testing.assert_array_equal(uvd[2], uvd[5])
    assert not np.allclose(uvd[0], uvd[3])


@pytest.mark.parametrize("case", ["missing list", "missing entry", "only comments", "empty folder", "text file",
                                  "batch 0", "negative overlays", "no centre"])
def test_what_the_command_line_names_wrongly_is_refused_before_any_work(setup, tmp_path, capsys, case):
    root, folder = setup
    png = sorted(folder.glob("*.png"))[0]
    listing, empty = tmp_path / "frames.txt", tmp_path / "empty"
    empty.mkdir()
    centres = tmp_path / "centres.json"
    centres.write_text(json.dumps({png.name: [320.0, 240.0, 700.0]}))
    listing.write_text({"missing entry": f"{png}\ngone.png\n", "only comments": "# none yet\n\n"}.get(case, ""))
    argv, message = {
        "missing list": (["--list", tmp_path / "none.txt"], f"frame list {tmp_path / 'none.txt'} does not exist"),
        "missing entry": (["--list", listing], f"{listing} line 2: {tmp_path / 'gone.png'}: no such file"),
        "only comments": (["--list", listing], f"frame list {listing} names no frames"),
        "empty folder": ([empty], f"folder {empty} holds no depth frames (.png, .npy)"),
        "text file": ([listing], f"{listing}: unsupported depth image type '.txt'"),
        "batch 0": ([png, "--batch", "0"], "--batch must be >= 1, got 0"),
        "negative overlays": ([png, "--overlays", "-1"], "--overlays must be >= 0 or 'all', got -1"),
        "no centre": ([folder, "--centers", centres], f"{sorted(folder.glob('*.png'))[1]}: no centre for this file"),
    }[case]
    out = tmp_path / "out"
    assert main(_argv(root, *argv, "--out", out)) == 2
    assert_one_line_error(capsys.readouterr().err, message)
    assert not out.exists()


def test_batches_give_the_joints_of_batch_1_and_overlays_are_spread(setup, tmp_path):
    root, folder = setup
    joints, overlays = {}, {}
    for batch, count in ((1, "3"), (3, "3"), (FRAMES, "0")):
        out = tmp_path / f"batch{batch}"
        assert main(_argv(root, folder, "--batch", batch, "--overlays", count, "--out", out)) == 0
        joints[batch] = read_joints_txt(out / "joints.txt")
        overlays[batch] = sorted(p.name for p in (out / "overlays").glob("*.png"))
        assert [record["overlay"] for record in prediction_records(out) if record["overlay"]] == [
            f"overlays/{name}" for name in overlays[batch]]
    assert joints[1].shape == (FRAMES, 14, 3)
    # Written with 3 decimals: a last-digit difference of float32 rounding is allowed.
    np.testing.assert_allclose(joints[3], joints[1], atol=1.5e-3)
    np.testing.assert_allclose(joints[FRAMES], joints[1], atol=1.5e-3)
    # 3 overlays spread over 7 frames: frames 0, 2 and 4 (lines 1, 3, 5); none asked, none drawn.
    assert overlays[1] == overlays[3] == [f"{line:06d}_depth_1_{line:07d}.png" for line in (1, 3, 5)]
    assert overlays[FRAMES] == []


def test_a_bad_frame_is_recorded_and_skipped(setup, tmp_path, capsys):
    root, folder = setup
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    bad = sorted(damaged.glob("*.png"))[3]
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated PNG in the middle of the run
    runs = {}
    for name, frames in (("intact", folder), ("damaged", damaged)):
        runs[name] = tmp_path / name
        code = main(_argv(root, frames, "--batch", "2", "--out", runs[name]))
        assert code == (0 if name == "intact" else 2)
    line = assert_one_line_error(capsys.readouterr().err, "1 of 7 frame(s) skipped")
    assert f"the first: cannot read NYU depth image {bad}" in line
    records = prediction_records(runs["damaged"])
    assert records[3]["file"] == str(bad) and str(bad) in records[3]["error"]
    joints = (runs["damaged"] / "joints.txt").read_text().splitlines()
    assert joints[3].split() == ["nan"] * 42
    # Every other frame is predicted, as without the bad one.
    intact = (runs["intact"] / "joints.txt").read_text().splitlines()
    assert [line for k, line in enumerate(joints) if k != 3] == [line for k, line in enumerate(intact) if k != 3]
    # A finished run run again does nothing and says the same.
    before = _files(runs["damaged"])
    assert main(_argv(root, damaged, "--batch", "2", "--out", runs["damaged"])) == 2
    assert assert_one_line_error(capsys.readouterr().err) == line
    assert _files(runs["damaged"]) == before


def _cli(argv, crash_at=None):
    env = {key: value for key, value in os.environ.items() if key != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-m", "keras_hpe.cli.main", *argv], env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_killed_run_resumes_to_the_outputs_of_an_uninterrupted_one(setup, tmp_path):
    root, folder = setup
    runs = {name: tmp_path / name for name in ("uninterrupted", "killed")}
    argv = {name: _argv(root, folder, "--batch", "2", "--overlays", "3", "--out", out) for name, out in runs.items()}
    done = _cli(argv["uninterrupted"])
    assert done.returncode == 0, done.stderr
    # Killed after the third batch's lines were appended, before its state: two batches recorded.
    killed = _cli(argv["killed"], crash_at="predict.batch:3")
    assert killed.returncode == -9, killed.stderr
    assert len((runs["killed"] / "joints.txt").read_text().splitlines()) == 6
    assert json.loads((runs["killed"] / "state.json").read_text())["frames_done"] == 4
    half = runs["killed"] / "overlays" / ".000007_depth_1_0000007.png.x1y2z3w4.tmp"  # as a kill mid-picture leaves it
    half.mkdir()
    (half / "000007_depth_1_0000007.png").write_bytes(b"\x89PNG half")
    resumed = _cli(argv["killed"])
    assert resumed.returncode == 0, resumed.stderr
    assert "7 of 7 frame(s) predicted" in resumed.stdout
    reference = _files(runs["uninterrupted"])
    assert sorted(reference) == ["frames.jsonl", "joints.txt", "overlays/000001_depth_1_0000001.png",
                                 "overlays/000003_depth_1_0000003.png", "overlays/000005_depth_1_0000005.png",
                                 "state.json"]
    assert _files(runs["killed"]) == reference


def test_another_run_into_the_same_folder_is_refused(setup, tmp_path, capsys):
    root, folder = setup
    frames = tmp_path / "frames"
    shutil.copytree(folder, frames)
    out = tmp_path / "out"
    assert main(_argv(root, frames, "--out", out)) == 0
    before = _files(out)
    extra = tmp_path / "extra.npy"
    np.save(extra, read_depth_png(sorted(frames.glob("*.png"))[0]))
    attempts = [
        (_argv(root, frames, extra, "--out", out), "different: frames;"),
        (_argv(root, frames, "--out", out, reg="other_reg.keras"), "different: models;"),
        (_argv(root, frames, "--overlays", "all", "--out", out), "different: overlays;"),
    ]
    for argv, different in attempts:
        assert main(argv) == 2
        line = assert_one_line_error(capsys.readouterr().err, f"{out} holds the predictions of another run")
        assert different in line
    # A frame rewritten in place is another input too.
    rewritten = sorted(frames.glob("*.png"))[2]
    os.utime(rewritten, ns=(rewritten.stat().st_atime_ns, rewritten.stat().st_mtime_ns + 1_000_000_000))
    assert main(_argv(root, frames, "--out", out)) == 2
    assert_one_line_error(capsys.readouterr().err, "different: frames;")
    assert _files(out) == before


def test_joints_files_that_no_run_recorded_are_left_alone(setup, tmp_path, capsys):
    root, folder = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "joints.txt").write_text("mine\n")
    assert main(_argv(root, folder, "--out", out)) == 2
    assert_one_line_error(capsys.readouterr().err, f"{out / 'joints.txt'} exists but {out} holds no state.json")
    assert _files(out) == {"joints.txt": b"mine\n"}
