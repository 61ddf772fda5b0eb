"""`keras-hpe evaluate-joints`, run in-process through the real entry point."""

import json

import numpy as np
import pytest

from keras_hpe.cli.main import main
from keras_hpe.data.camera import xyz_to_uvd
from keras_hpe.data.skeleton import JOINT_NAMES
from keras_hpe.evaluation.joints import COMMUNITY_NYU_CAMERA, evaluate_joints, read_joints_txt


def write_joints(path, uvd: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(f"{v:.3f}" for v in row) for row in uvd.reshape(len(uvd), -1)) + "\n")


@pytest.fixture()
def joint_files(tmp_path):
    """Ground truth and a prediction 5 mm off (3, 4, 0) in xyz, 12 frames, as uvd text."""
    rng = np.random.default_rng(0)
    gt_xyz = np.concatenate([rng.uniform(-120, 120, (12, 14, 2)), rng.uniform(650, 950, (12, 14, 1))], axis=-1)
    gt, pred = tmp_path / "gt.txt", tmp_path / "pred.txt"
    write_joints(gt, xyz_to_uvd(gt_xyz, COMMUNITY_NYU_CAMERA))
    write_joints(pred, xyz_to_uvd(gt_xyz + [3.0, 4.0, 0.0], COMMUNITY_NYU_CAMERA))
    return gt, pred


def test_prints_summary_and_json_last_line(joint_files, capsys):
    gt, pred = joint_files
    assert main(["evaluate-joints", "--gt", str(gt), "--pred", str(pred)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert set(summary) == {"mean_3d_mm", "per_joint_mm", "mean_2d_px", "frames"}
    assert summary["frames"] == 12
    assert list(summary["per_joint_mm"]) == list(JOINT_NAMES)
    # The files hold 3 decimals, so the 5 mm offset survives to ~0.01 mm; the exact
    # figure is what the library computes from the same files.
    assert summary["mean_3d_mm"] == pytest.approx(5.0, abs=0.02)
    expected = evaluate_joints(read_joints_txt(pred), read_joints_txt(gt))
    assert summary["mean_3d_mm"] == expected.mean_3d_mm
    assert summary["mean_2d_px"] == expected.mean_2d_px
    text = "\n".join(out[:-1])
    assert f"mean 3D error: {expected.mean_3d_mm:.3f} mm" in text
    assert "camera community (fx 588.03, fy 587.07" in text
    assert all(name in text for name in JOINT_NAMES)


def test_writes_curve_and_accepts_exact_camera(joint_files, tmp_path, capsys):
    gt, pred = joint_files
    curve = tmp_path / "out" / "curve.png"
    argv = ["evaluate-joints", "--gt", str(gt), "--pred", str(pred), "--curve", str(curve), "--curve-mode", "mean"]
    assert main(argv) == 0
    community = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert curve.read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate-joints", "--gt", str(gt), "--pred", str(pred), "--camera", "nyu"]) == 0
    exact = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exact["mean_3d_mm"] != community["mean_3d_mm"]
    assert abs(exact["mean_3d_mm"] - community["mean_3d_mm"]) < 1e-3


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate-joints", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--gt", "--pred", "--curve", "--curve-mode", "--camera", "--name"):
        assert option in text


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such joints file"),
        ("short_line", "line 3: expected 42 numbers"),
        ("frames", "has 11 frames but"),
        ("nan", "line 1: NaN"),
    ],
)
def test_bad_input_exits_2_with_one_line(joint_files, capsys, case, message):
    gt, pred = joint_files
    lines = pred.read_text().splitlines()
    if case == "missing":
        pred = pred.with_name("absent.txt")
    elif case == "short_line":
        lines[2] = " ".join(lines[2].split()[:-1])
    elif case == "frames":
        lines = lines[:-1]
    elif case == "nan":
        lines[0] = lines[0].replace(lines[0].split()[4], "nan", 1)
    if case != "missing":
        pred.write_text("\n".join(lines) + "\n")
    assert main(["evaluate-joints", "--gt", str(gt), "--pred", str(pred)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err
    assert err.startswith("keras-hpe: error:") and message in err
    assert captured.out == ""
