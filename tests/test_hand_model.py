"""The parametric hand: priors, angle limits, shape ranges, kinematics."""

import numpy as np
import pytest

from keras_hpe.data.hand_model import (
    ANGLE_LIMITS_DEG,
    DIP_COUPLING,
    FINGER_SPLAY_DEG,
    Hand,
    PosePrior,
    ShapePrior,
    ViewPrior,
    sample_angles,
    sample_hand,
    sample_hands,
)
from keras_hpe.data.skeleton import JOINT_NAMES
from keras_hpe.errors import UserError

FRONTAL = ViewPrior(roll_deg=(0.0, 0.0), out_of_plane_deg=0.0, back_facing_probability=0.0)
OPEN = PosePrior(family_weights={"open": 1.0}, noise_deg=0.0, dip_noise_deg=0.0)


def joint(hand: Hand, name: str) -> np.ndarray:
    return hand.joints_xyz[..., JOINT_NAMES.index(name), :]


def test_same_seed_same_hand_and_different_seed_differs():
    a = sample_hands(np.random.default_rng(7), 5)
    b = sample_hands(np.random.default_rng(7), 5)
    c = sample_hands(np.random.default_rng(8), 5)
    for name in vars(a):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.joints_xyz, c.joints_xyz)
    single = sample_hand(np.random.default_rng(7))
    assert single.joints_xyz.shape == (14, 3) and single.keypoints_xyz.shape == (21, 3)


def test_joint_angles_within_limits_and_dip_follows_pip():
    angles = sample_angles(np.random.default_rng(0), 4000)
    assert angles.shape == (4000, 5, 4)
    assert np.all(angles >= ANGLE_LIMITS_DEG[..., 0]) and np.all(angles <= ANGLE_LIMITS_DEG[..., 1])
    # Every angle explores a good part of its range.
    span = angles.max(axis=0) - angles.min(axis=0)
    assert np.all(span >= 0.5 * (ANGLE_LIMITS_DEG[..., 1] - ANGLE_LIMITS_DEG[..., 0]))
    pip, dip = angles[:, 1:, 2].ravel(), angles[:, 1:, 3].ravel()
    inside = (pip > 10) & (DIP_COUPLING * pip < ANGLE_LIMITS_DEG[1, 3, 1] - 10)
    assert abs(np.median(dip[inside] - DIP_COUPLING * pip[inside])) < 2.0
    # Fingers keep their order in the palm plane (no crossing): splay + abduction decreases.
    assert np.all(np.diff(FINGER_SPLAY_DEG + angles[:, 1:, 1], axis=-1) <= 1e-9)


def test_shape_scale_range_and_bone_lengths_fixed_by_shape():
    hands = sample_hands(np.random.default_rng(1), 500)
    assert np.all((hands.scale >= 0.8) & (hands.scale <= 1.2))
    assert hands.scale.min() < 0.85 and hands.scale.max() > 1.15
    digits = hands.keypoints_xyz[:, 1:].reshape(-1, 5, 4, 3)
    bones = np.linalg.norm(np.diff(digits, axis=2), axis=-1) / hands.scale[:, None, None]
    # Scale-free bone lengths stay near an adult hand's (mm): 15-60.
    assert np.all((bones > 15) & (bones < 60))
    wrist_width = np.linalg.norm(joint(hands, "wrist") - joint(hands, "wrist_back"), axis=-1) / hands.scale
    assert np.all((wrist_width > 35) & (wrist_width < 55))


def test_rotation_is_proper_and_viewpoints_cover_the_prior():
    hands = sample_hands(np.random.default_rng(2), 2000)
    r = hands.rotation
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    # In-plane: the finger direction's image angle covers the full circle.
    up = r[:, :, 1]
    roll = np.degrees(np.arctan2(up[:, 0], up[:, 1]))
    assert np.histogram(roll, bins=8, range=(-180, 180))[0].min() > 100
    # Out of plane: the palm normal tilts at least 60 deg from the camera axis, both faces seen.
    palm_normal = r @ np.array([0.0, 0.0, -1.0])
    tilt = np.degrees(np.arccos(np.abs(palm_normal[:, 2])))
    assert tilt.max() > 60
    assert 0.4 < np.mean(palm_normal[:, 2] < 0) < 0.6  # palm (normal towards the camera) vs back
    d = hands.joints_xyz[..., 2]
    assert np.all((d > 400) & (d < 1200))


def test_frontal_open_hand_anatomy():
    """Palm to the camera, fingers up: a right hand has its thumb on the image right (+x)."""
    hand = sample_hands(np.random.default_rng(3), 4, pose_prior=OPEN, view_prior=FRONTAL)
    for finger in ("pinky", "ring", "middle", "index"):
        assert np.all(joint(hand, f"{finger}_tip")[:, 1] > joint(hand, f"{finger}_mid")[:, 1] + 20)
        assert np.all(joint(hand, f"{finger}_mid")[:, 1] > joint(hand, "palm")[:, 1] + 20)
    x = {name: joint(hand, name)[:, 0] for name in JOINT_NAMES}
    assert np.all((x["pinky_tip"] < x["ring_tip"]) & (x["ring_tip"] < x["middle_tip"]))
    assert np.all((x["middle_tip"] < x["index_tip"]) & (x["index_tip"] < x["thumb_tip"]))
    assert np.all(x["wrist_back"] < x["wrist"])  # ulnar end left, radial end right
    assert np.all(joint(hand, "palm")[:, 1] > joint(hand, "wrist")[:, 1])
    # Bending the PIPs moves the fingertips towards the camera (the palm faces it).
    fist = sample_hands(np.random.default_rng(3), 4, pose_prior=PosePrior({"fist": 1.0}, 0.0, 0.0), view_prior=FRONTAL)
    assert np.all(joint(fist, "middle_tip")[:, 2] < joint(fist, "palm")[:, 2])


def test_pose_families_shape_the_pose():
    point = sample_hands(np.random.default_rng(4), 50, pose_prior=PosePrior({"point": 1.0}), view_prior=FRONTAL)
    index_reach = np.linalg.norm(joint(point, "index_tip") - joint(point, "palm"), axis=-1)
    middle_reach = np.linalg.norm(joint(point, "middle_tip") - joint(point, "palm"), axis=-1)
    assert np.all(index_reach > middle_reach + 30)


def test_bad_priors_raise_user_error():
    with pytest.raises(UserError, match="unknown families"):
        sample_angles(np.random.default_rng(0), 3, PosePrior(family_weights={"wave": 1.0}))
    with pytest.raises(UserError, match="not all 0"):
        sample_angles(np.random.default_rng(0), 3, PosePrior(family_weights={"open": 0.0}))
    with pytest.raises(UserError, match=">= 1"):
        sample_hands(np.random.default_rng(0), 0, ShapePrior())



def apart(hands: Hand, clearance: float) -> np.ndarray:
    """(n,) by brute force: points along the phalanges of two digits keep `clearance` x their radii apart."""
    n = len(hands.scale)
    digits = hands.keypoints_xyz[:, 1:].reshape(n, 5, 4, 3)
    s = np.linspace(0.0, 1.0, 21)[:, None]
    points = digits[:, :, :3, None] + s * (digits[:, :, 1:, None] - digits[:, :, :3, None])  # (n, 5, 3, 21, 3)
    radius = np.broadcast_to(hands.segment_radius_mm[..., None], points.shape[:-1])
    points, radius = points.reshape(n, 5, -1, 3), radius.reshape(n, 5, -1)
    ok = np.ones(n, dtype=bool)
    for a in range(5):
        for b in range(a + 1, 5):
            gap = np.linalg.norm(points[:, a, :, None] - points[:, b, None], axis=-1)
            ok &= np.all(gap >= clearance * (radius[:, a, :, None] + radius[:, b, None]) - 0.5, axis=(1, 2))
    return ok


def test_digits_do_not_interpenetrate():
    clearance = PosePrior().min_clearance
    assert apart(sample_hands(np.random.default_rng(6), 100), clearance).mean() > 0.98
    # Without the redraws the same prior gives colliding poses: the check has teeth.
    free = sample_hands(np.random.default_rng(6), 100, pose_prior=PosePrior(max_redraws=0))
    assert apart(free, clearance).mean() < 0.99
