"""The barycenter quality measure and the accept/reject gate."""

import numpy as np
import pytest

from keras_hpe.data.camera import NYU_CAMERA
from keras_hpe.data.crop import crop_window
from keras_hpe.data.skeleton import JOINT_PARTS
from keras_hpe.errors import UserError
from keras_hpe.restoration.quality import (
    accept_restored,
    barycenter_qualities,
    barycenter_quality,
    gate_restorations,
)

SIZE = 32
CENTER_UVD = np.array([300.0, 250.0, 600.0])


def _frame():
    """Parts 1..20 as 5 x 5 blocks on a 4 x 5 grid, at depths that vary per part."""
    labels = np.zeros((SIZE, SIZE), np.uint8)
    depth = np.zeros((SIZE, SIZE), np.float32)
    for part in range(1, 21):
        row, col = divmod(part - 1, 5)
        block = np.s_[1 + 7 * row:6 + 7 * row, 1 + 6 * col:6 + 6 * col]
        labels[block] = part
        depth[block] = 560 + 4 * part
    return labels, depth


def _pixel_xyz(depth):
    """xyz of every crop pixel from the crop's definition, written out independently."""
    u0, v0, u1, v1 = crop_window(CENTER_UVD)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    u = u0 + (cols + 0.5) * (u1 - u0) / SIZE
    v = v0 + (rows + 0.5) * (v1 - v0) / SIZE
    cam = NYU_CAMERA
    return np.stack([(u - cam.cx) * depth / cam.fx, (cam.cy - v) * depth / cam.fy, depth], axis=-1)


def _true_barycenters(labels, depth):
    xyz = _pixel_xyz(depth)
    return np.stack([xyz[np.isin(labels, parts) & (depth > 0)].mean(axis=0) for parts in JOINT_PARTS])


def test_quality_is_zero_at_the_barycenters_and_grows_with_offset():
    labels, depth = _frame()
    joints = _true_barycenters(labels, depth)
    assert barycenter_quality(labels, depth, CENTER_UVD, joints) == pytest.approx(0.0, abs=1e-6)
    moved = joints.copy()
    moved[0] += [3.0, 4.0, 0.0]  # 5 mm off on the pinky tip: the mean over the 14 joints
    assert barycenter_quality(labels, depth, CENTER_UVD, moved) == pytest.approx(5.0 / 14, abs=1e-6)


def test_a_joint_whose_part_is_absent_does_not_count():
    labels, depth = _frame()
    joints = _true_barycenters(labels, depth)
    lost = labels.copy()
    lost[lost == 20] = 19  # the pinky tip's part (20) disappears; 19 moves pinky mid's barycenter
    mid = _pixel_xyz(depth)[np.isin(lost, JOINT_PARTS[1])].mean(axis=0)
    expected = np.linalg.norm(mid - joints[1]) / 13  # the 13 joints the map shows
    assert barycenter_quality(lost, depth, CENTER_UVD, joints) == pytest.approx(expected, rel=1e-9)
    # A pinky tip far from its joint costs more than no pinky tip: removing it is an improvement.
    far = joints.copy()
    far[0] += [30.0, 40.0, 0.0]
    gate = gate_restorations(labels[None], lost[None], depth[None], CENTER_UVD[None], far[None])
    assert gate.raw_quality_mm[0] == pytest.approx(50.0 / 14) and gate.accepted[0]
    # A map that shows no part at all is the worst there is.
    nothing = np.zeros_like(labels)
    assert barycenter_quality(nothing, depth, CENTER_UVD, joints) == np.inf
    assert not gate_restorations(labels[None], nothing[None], depth[None], CENTER_UVD[None], far[None]).accepted[0]


def test_pixels_without_depth_are_ignored():
    labels, depth = _frame()
    joints = _true_barycenters(labels, depth)
    depth_holes = depth.copy()
    depth_holes[1, 1:6] = 0  # a row of the palm block loses its depth
    joints_holes = _true_barycenters(labels, depth_holes)
    assert barycenter_quality(labels, depth_holes, CENTER_UVD, joints_holes) == pytest.approx(0.0, abs=1e-6)
    assert barycenter_quality(labels, depth_holes, CENTER_UVD, joints) > 0.01


def test_gate_accepts_only_improvements():
    labels, depth = _frame()
    joints = _true_barycenters(labels, depth)
    noisy = labels.copy()
    noisy[1:6, 1:3] = 20  # part of the palm labelled pinky tip
    frames = np.stack([noisy, labels, labels])
    restored = np.stack([labels, labels, noisy])
    n = len(frames)
    gate = gate_restorations(frames, restored, np.stack([depth] * n), np.stack([CENTER_UVD] * n),
                             np.stack([joints] * n))
    assert gate.accepted.tolist() == [True, False, False]  # equal quality is not an improvement
    assert gate.rejection_rate == pytest.approx(2 / 3)
    assert np.allclose(gate.raw_quality_mm, barycenter_qualities(frames, np.stack([depth] * n),
                                                                 np.stack([CENTER_UVD] * n), np.stack([joints] * n)))
    assert accept_restored(10.0, 9.5) and not accept_restored(10.0, 10.0)


def test_wrong_shapes_raise_user_error():
    labels, depth = _frame()
    with pytest.raises(UserError, match="joints_xyz"):
        barycenter_quality(labels, depth, CENTER_UVD, np.zeros((13, 3)))
    with pytest.raises(UserError, match="depth_mm"):
        barycenter_quality(labels, depth[:-1], CENTER_UVD, np.zeros((14, 3)))


def test_not_hand_pixels_do_not_move_any_barycenter():
    labels, depth = _frame()
    joints = _true_barycenters(labels, depth)
    armed, arm_depth = labels.copy(), depth.copy()
    arm = (labels == 0)
    arm_depth[arm] = 650.0  # the arm: depth, label 0
    assert arm.any()
    assert barycenter_quality(armed, arm_depth, CENTER_UVD, joints) == pytest.approx(0.0, abs=1e-6)
    # The same pixels labelled palm do move the palm's barycenter: the gate would reject that map.
    as_palm = np.where(arm, 1, labels).astype(np.uint8)
    gate = gate_restorations(armed[None], as_palm[None], arm_depth[None], CENTER_UVD[None], joints[None])
    assert gate.raw_quality_mm[0] == pytest.approx(0.0, abs=1e-6) and gate.restored_quality_mm[0] > 1.0
    assert not gate.accepted[0]


def test_gate_explains_each_joint_and_the_parts_a_restoration_removed():
    labels, depth = _frame()
    joints = _true_barycenters(labels, depth)
    restored = labels.copy()
    restored[restored == 4] = 3  # the thumb's distal part (the thumb tip's) becomes its proximal part
    gate = gate_restorations(labels[None], restored[None], depth[None], CENTER_UVD[None], joints[None])
    assert not gate.accepted[0]
    assert np.flatnonzero(gate.vanished[0]).tolist() == [4]
    assert gate.raw_joint_mm[0] == pytest.approx(np.zeros(14), abs=1e-6)
    assert np.nanmean(gate.restored_joint_mm[0]) == pytest.approx(gate.restored_quality_mm[0])
    # The thumb tip's part is gone (NaN, not a joint that moved); the thumb mid (parts 3, 4) keeps its pixels,
    # while the thumb root (parts 2, 3) gains the distal part's.
    assert np.isnan(gate.restored_xyz[0, 8]).all() and np.isnan(gate.restored_joint_mm[0, 8])
    assert np.isnan(gate.restored_joint_mm[0]).sum() == 1
    moved = gate.moved_away(0, count=3)
    assert [joint for joint, _ in moved] == [10]  # no other joint moved: only one is named
    root = _pixel_xyz(depth)[np.isin(restored, JOINT_PARTS[10])].mean(axis=0)
    assert moved[0][1] == pytest.approx(np.linalg.norm(root - joints[10]))
