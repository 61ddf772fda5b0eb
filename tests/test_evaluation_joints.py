"""The NYU joint protocol: hand-computed errors, success curves, the community's arithmetic, bad input."""

import json

import numpy as np
import pytest

from keras_hpe.data.camera import NYU_CAMERA, xyz_to_uvd
from keras_hpe.data.skeleton import JOINT_NAMES
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import (
    COMMUNITY_NYU_CAMERA,
    DEFAULT_THRESHOLDS_MM,
    evaluate_joints,
    plot_success_curves,
    read_joints_txt,
    read_published_predictions,
    success_curve,
)

# Two frames of the community's NYU test ground truth
# (xinghaochen/awesome-hand-pose-estimation, evaluation/groundtruth/nyu/nyu_test_groundtruth_label.txt).
NYU_GT_LINES = (
    "169.221 199.638 736.417 174.367 231.459 753.061 201.866 178.164 738.589 197.205 215.419 754.288 "
    "223.877 167.132 744.248 216.841 208.579 765.762 251.366 181.044 755.201 241.480 218.524 767.166 "
    "259.781 248.899 744.346 258.638 265.921 755.060 250.256 297.869 770.414 183.641 321.276 788.841 "
    "209.660 326.919 794.200 210.217 268.604 778.299 ",
    "169.063 199.742 736.107 174.307 231.511 752.947 201.881 178.185 738.501 197.211 215.423 754.290 "
    "223.908 167.145 744.239 216.871 208.582 765.783 251.067 180.857 755.411 241.327 218.389 767.283 "
    "259.601 248.795 744.680 258.638 265.818 755.411 250.240 297.770 770.665 183.648 321.275 788.850 "
    "209.667 326.915 794.216 210.223 268.603 778.307 ",
)


def hand_xyz(frames: int, seed: int = 0) -> np.ndarray:
    """Joints in a plausible NYU volume: x, y within +-150 mm, z 600-1000 mm."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-150, 150, (frames, 14, 2))
    z = rng.uniform(600, 1000, (frames, 14, 1))
    return np.concatenate([xy, z], axis=-1)


def test_known_xyz_offset_gives_5_mm():
    gt_xyz = hand_xyz(6)
    pred_xyz = gt_xyz + np.array([3.0, 4.0, 0.0])
    errors = evaluate_joints(xyz_to_uvd(pred_xyz, COMMUNITY_NYU_CAMERA), xyz_to_uvd(gt_xyz, COMMUNITY_NYU_CAMERA))
    assert errors.frames == 6
    assert errors.mean_3d_mm == pytest.approx(5.0, abs=1e-9)
    assert list(errors.per_joint_mm) == list(JOINT_NAMES)
    assert np.allclose(list(errors.per_joint_mm.values()), 5.0, atol=1e-9)
    assert errors.errors_mm.shape == (6, 14)


def test_pixel_offset_gives_exact_2d_error_and_projected_3d_error():
    rng = np.random.default_rng(1)
    depth_mm = 588.03
    gt = np.concatenate([rng.uniform(100, 500, (4, 14, 2)), np.full((4, 14, 1), depth_mm)], axis=-1)
    pred = gt + np.array([3.0, 4.0, 0.0])
    errors = evaluate_joints(pred, gt)
    assert errors.mean_2d_px == pytest.approx(5.0, abs=1e-9)
    # 3 px at the depth fx is 3 mm; 4 px is 4 * 588.03 / 587.07 mm.
    expected_mm = np.hypot(3.0, 4.0 * 588.03 / 587.07)
    assert errors.mean_3d_mm == pytest.approx(expected_mm, abs=1e-9)


def test_per_joint_means_and_overall_mean():
    gt_xyz = hand_xyz(5, seed=2)
    pred_xyz = gt_xyz.copy()
    pred_xyz[..., 2] += np.arange(1, 15)  # joint j off by j + 1 mm in depth
    pred_xyz[::2, 0, 2] += 10.0  # frames 0, 2, 4 of joint 0: 11 mm, others 1 mm
    errors = evaluate_joints(xyz_to_uvd(pred_xyz, COMMUNITY_NYU_CAMERA), xyz_to_uvd(gt_xyz, COMMUNITY_NYU_CAMERA))
    expected = np.arange(1.0, 15.0)
    expected[0] = (3 * 11 + 2 * 1) / 5
    assert np.allclose(list(errors.per_joint_mm.values()), expected, atol=1e-9)
    assert errors.per_joint_mm["palm"] == pytest.approx(14.0, abs=1e-9)
    assert errors.mean_3d_mm == pytest.approx(expected.mean(), abs=1e-9)


def test_success_curve_modes_count_errors_at_or_below_threshold():
    errors_mm = np.array([[1.0, 2.0], [3.0, 10.0], [0.0, 0.5], [80.0, 81.0]])
    thresholds = np.array([0.0, 1.0, 2.0, 6.5, 10.0, 80.0, 81.0])
    # Frame maxima 2, 10, 0.5, 81; frame means 1.5, 6.5, 0.25, 80.5.
    assert success_curve(errors_mm, thresholds, "max").tolist() == [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert success_curve(errors_mm, thresholds, "mean").tolist() == [0, 0.25, 0.5, 0.75, 0.75, 0.75, 1.0]
    assert success_curve(errors_mm, thresholds, "joint").tolist() == [1 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1.0]
    with pytest.raises(UserError, match="mode"):
        success_curve(errors_mm, thresholds, "median")


def test_curves_of_evaluate_joints():
    gt_xyz = hand_xyz(4, seed=3)
    pred_xyz = gt_xyz.copy()
    pred_xyz[:, 5, 2] += np.array([0.5, 12.0, 30.0, 90.0])  # one joint off per frame
    errors = evaluate_joints(xyz_to_uvd(pred_xyz, COMMUNITY_NYU_CAMERA), xyz_to_uvd(gt_xyz, COMMUNITY_NYU_CAMERA))
    assert errors.thresholds_mm.tolist() == DEFAULT_THRESHOLDS_MM.tolist() == list(range(81))
    max_curve = errors.curves["max"]
    assert max_curve[0] == 0.0 and max_curve[1] == 0.25 and max_curve[12] == 0.5
    assert max_curve[29] == 0.5 and max_curve[30] == 0.75 and max_curve[80] == 0.75
    joint_curve = errors.curves["joint"]
    assert joint_curve[0] == pytest.approx(52 / 56) and joint_curve[80] == pytest.approx(55 / 56)
    assert np.all(np.diff(errors.curves["mean"]) >= 0)


def test_matches_the_community_nyu_arithmetic():
    """Same numbers as the community code's pixel2world with fx=588.03, fy=-587.07, u0=320, v0=240."""
    gt = np.array([[float(t) for t in line.split()] for line in NYU_GT_LINES]).reshape(-1, 14, 3)
    rng = np.random.default_rng(4)
    pred = gt + rng.normal(0, [4.0, 4.0, 15.0], gt.shape)

    def community_xyz(uvd):
        xyz = uvd.copy()
        xyz[:, :, 0] = (xyz[:, :, 0] - 320) * xyz[:, :, 2] / 588.03
        xyz[:, :, 1] = (xyz[:, :, 1] - 240) * xyz[:, :, 2] / -587.07
        return xyz

    reference = np.sqrt(np.sum((community_xyz(gt) - community_xyz(pred)) ** 2, axis=2))
    errors = evaluate_joints(pred, gt)
    assert np.array_equal(errors.errors_mm, reference)
    assert errors.mean_3d_mm == np.mean(np.mean(reference, axis=0))
    # The exact Kinect intrinsics give the same figure to well within 0.001 mm.
    exact = evaluate_joints(pred, gt, camera=NYU_CAMERA)
    assert exact.mean_3d_mm != errors.mean_3d_mm
    assert abs(exact.mean_3d_mm - errors.mean_3d_mm) < 1e-3


def test_to_dict_is_json_ready():
    gt_xyz = hand_xyz(3, seed=5)
    errors = evaluate_joints(xyz_to_uvd(gt_xyz + 1.0), xyz_to_uvd(gt_xyz))
    summary = json.loads(json.dumps(errors.to_dict()))
    assert summary["frames"] == 3
    assert set(summary["per_joint_mm"]) == set(JOINT_NAMES)
    assert len(summary["curves"]["max"]) == len(summary["thresholds_mm"]) == 81
    assert summary["mean_3d_mm"] == pytest.approx(errors.mean_3d_mm)


def test_read_joints_txt_round_trip(tmp_path):
    path = tmp_path / "pred.txt"
    path.write_text("\n".join(NYU_GT_LINES) + "\n\n")  # trailing spaces and a blank last line
    uvd = read_joints_txt(path)
    assert uvd.shape == (2, 14, 3) and uvd.dtype == np.float64
    assert uvd[0, 0].tolist() == [169.221, 199.638, 736.417]
    assert uvd[1, 13].tolist() == [210.223, 268.603, 778.307]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        (NYU_GT_LINES[0] + "\n" + " ".join(["1"] * 41) + "\n", r"line 2: expected 42 numbers .* found 41"),
        (NYU_GT_LINES[0] + "\n\n" + NYU_GT_LINES[1], r"line 2: expected 42 numbers .* found 0"),
        (NYU_GT_LINES[0] + "\n" + NYU_GT_LINES[1].replace("169.063", "nan"), "line 2: NaN"),
        (NYU_GT_LINES[0].replace("736.417", "0.0") + "\n", "line 1: a joint has depth <= 0"),
        (NYU_GT_LINES[1].replace("752.947", "-5") + "\n", "line 1: a joint has depth <= 0"),
        (NYU_GT_LINES[0] + "\n" + NYU_GT_LINES[1].replace("174.307", "17a.3"), "line 2: not a number"),
    ],
)
def test_read_joints_txt_bad_input(tmp_path, content, message):
    path = tmp_path / "joints.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        read_joints_txt(path)
    assert "joints.txt" in str(error.value) and "\n" not in str(error.value)


def test_read_joints_txt_missing_or_binary_file(tmp_path):
    with pytest.raises(UserError, match="no such joints file"):
        read_joints_txt(tmp_path / "absent.txt")
    binary = tmp_path / "joints.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(UserError, match="joints.png: not a text file"):
        read_joints_txt(binary)


def test_published_predictions_by_method_name(tmp_path):
    (tmp_path / "Tompson.txt").write_text("\n".join(NYU_GT_LINES) + "\n")
    (tmp_path / "DeepPrior++.txt").write_text("\n".join(NYU_GT_LINES[::-1]) + "\n")
    (tmp_path / "README.md").write_text("not a method")
    predictions = read_published_predictions(tmp_path, 2)
    assert list(predictions) == ["DeepPrior++", "Tompson"]
    assert predictions["Tompson"][0, 0].tolist() == [169.221, 199.638, 736.417]
    with pytest.raises(UserError, match=r"DeepPrior\+\+.txt has 2 lines, but the test split evaluated has 3 frames"):
        read_published_predictions(tmp_path, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"holds no \*.txt file"):
        read_published_predictions(tmp_path / "empty", 2)
    with pytest.raises(UserError, match="prediction folder .*absent does not exist"):
        read_published_predictions(tmp_path / "absent", 2)


def test_evaluate_joints_bad_arrays():
    gt = xyz_to_uvd(hand_xyz(4, seed=6))
    with pytest.raises(UserError, match="3 frames but ground truth has 4"):
        evaluate_joints(gt[:3], gt)
    with pytest.raises(UserError, match=r"shape \(N>0, 14, 3\)"):
        evaluate_joints(gt[:, :13], gt[:, :13])
    with pytest.raises(UserError, match="prediction: frame 2 has NaN"):
        evaluate_joints(np.where(np.arange(4)[:, None, None] == 2, np.nan, gt), gt)
    bad_depth = gt.copy()
    bad_depth[1, 3, 2] = 0.0
    with pytest.raises(UserError, match="ground truth: frame 1 has a joint with depth <= 0"):
        evaluate_joints(gt, bad_depth)


def test_plot_success_curves_writes_png(tmp_path):
    gt_xyz = hand_xyz(20, seed=7)
    rng = np.random.default_rng(7)
    results = {
        name: evaluate_joints(xyz_to_uvd(gt_xyz + rng.normal(0, sigma, gt_xyz.shape)), xyz_to_uvd(gt_xyz))
        for name, sigma in [("direct regression", 12.0), ("full method", 6.0)]
    }
    out = tmp_path / "figures" / "curves.png"
    assert plot_success_curves(results, out, mode="joint", title="test") == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporary left behind
    with pytest.raises(UserError, match="mode"):
        plot_success_curves(results, out, mode="best")
    with pytest.raises(UserError, match="no results"):
        plot_success_curves({}, out)
