"""The synth domain: rendered crops, their joints, and the data set on disk."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from keras_hpe.data.camera import xyz_to_uvd
from keras_hpe.data.crop import CUBE_MM, clip_to_cube, crop_window, uvd_to_crop
from keras_hpe.data.dataset import FIELDS, load_arrays, read_manifest
from keras_hpe.data.hand_model import PosePrior, ViewPrior, sample_hands
from keras_hpe.data.solids import ArmPrior, hand_solids, sample_arms
from keras_hpe.data.renderer import render
from keras_hpe.data.skeleton import JOINT_NAMES, JOINT_PARTS, NUM_PARTS
from keras_hpe.data.synth import SynthConfig, generate_synth, render_synth_frames
from keras_hpe.errors import UserError

SIZE = 32


def frontal_open(noise_deg: float, out_of_plane_deg: float = 0.0, back: float = 0.5) -> SynthConfig:
    """Open hands facing the camera (palm or back), any roll, the forearm in the palm's plane (not in front of it)."""
    return SynthConfig(
        pose=PosePrior(family_weights={"open": 1.0}, noise_deg=noise_deg),
        view=ViewPrior(out_of_plane_deg=out_of_plane_deg, back_facing_probability=back),
        arm=ArmPrior(flexion_deg=0.0, extension_deg=0.0),
    )


def test_same_seed_same_frames_and_fields():
    a = render_synth_frames(np.random.default_rng(3), 6, SIZE)
    b = render_synth_frames(np.random.default_rng(3), 6, SIZE)
    c = render_synth_frames(np.random.default_rng(4), 6, SIZE)
    assert set(a) == set(FIELDS)
    for name in FIELDS:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["depth_mm"], c["depth_mm"])
    assert a["depth_mm"].shape == (6, SIZE, SIZE) and a["depth_mm"].dtype == np.float32
    assert a["labels"].shape == (6, SIZE, SIZE) and a["labels"].dtype == np.uint8
    assert a["joints_uvd"].shape == (6, 14, 3) and a["joints_xyz"].dtype == np.float32
    assert a["center_uvd"].shape == (6, 3)


def test_frames_are_consistent_crops():
    frames = render_synth_frames(np.random.default_rng(5), 40, SIZE)
    depth, labels, center = frames["depth_mm"], frames["labels"], frames["center_uvd"]
    assert np.all(labels[depth == 0] == 0) and np.any(labels[depth > 0] == 0)  # no data is not hand; so is the arm
    assert labels.max() <= NUM_PARTS
    near = np.abs(depth - center[:, 2, None, None]) <= CUBE_MM / 2
    assert np.all(near | (depth == 0))
    assert np.all((labels > 0).mean(axis=(1, 2)) > 0.03)  # every crop shows a hand
    np.testing.assert_allclose(center, xyz_to_uvd(frames["joints_xyz"].astype(np.float64).mean(axis=1)), rtol=1e-5)
    np.testing.assert_allclose(frames["joints_uvd"], xyz_to_uvd(frames["joints_xyz"]), rtol=1e-4, atol=1e-2)


def test_frontal_open_hand_shows_all_parts():
    frames = render_synth_frames(np.random.default_rng(6), 16, 64, config=frontal_open(noise_deg=0.0))
    for labels in frames["labels"]:
        assert set(np.unique(labels)) == set(range(NUM_PARTS + 1))
    # With pose noise and +-30 deg out of plane, nearly all still do.
    frames = render_synth_frames(np.random.default_rng(7), 64, 64, config=frontal_open(10.0, 30.0))
    complete = [len(np.unique(labels)) == NUM_PARTS + 1 for labels in frames["labels"]]
    assert np.mean(complete) > 0.85


def test_the_forearm_is_not_hand_and_leaves_the_crop():
    """Label 0 with depth is exactly where the arm is the nearest surface; the hand is untouched elsewhere."""
    n = 40
    frames = render_synth_frames(np.random.default_rng(9), n, SIZE)
    rng = np.random.default_rng(9)  # the same draws: hands first, then their arms
    hands = sample_hands(rng, n)
    arms = sample_arms(rng, hands.scale)
    # The arm does not move the joints or the crop centre (the mean joint).
    np.testing.assert_array_equal(frames["joints_xyz"], hands.joints_xyz.astype(np.float32))
    center = xyz_to_uvd(hands.joints_xyz.mean(axis=1))
    window = crop_window(center)
    with_arm, with_arm_labels = render(hand_solids(hands, arm=arms), window, SIZE, SIZE)
    hand, hand_labels = render(hand_solids(hands), window, SIZE, SIZE)
    np.testing.assert_array_equal(frames["depth_mm"], clip_to_cube(with_arm, center[:, 2]))
    np.testing.assert_array_equal(frames["labels"], np.where(frames["depth_mm"] > 0, with_arm_labels, 0))
    is_hand = with_arm_labels > 0
    np.testing.assert_array_equal(with_arm_labels[is_hand], hand_labels[is_hand])
    np.testing.assert_array_equal(with_arm[is_hand], hand[is_hand])
    on_arm = (with_arm > 0) & ~is_hand
    assert np.all((hand[on_arm] == 0) | (with_arm[on_arm] < hand[on_arm]))  # the arm is the nearest surface there
    # In (nearly) every crop the arm shows, and it leaves the crop: through its border or the cube's depth range.
    arm = (frames["depth_mm"] > 0) & (frames["labels"] == 0)
    assert arm.any(axis=(1, 2)).mean() >= 0.9
    border = np.ones((SIZE, SIZE), dtype=bool)
    border[1:-1, 1:-1] = False
    at_border = (arm & border).any(axis=(1, 2))
    cut_by_depth = (on_arm & (frames["depth_mm"] == 0)).any(axis=(1, 2))
    assert at_border.mean() >= 0.5 and (at_border | cut_by_depth).mean() >= 0.9


def test_arm_prior_shapes_the_arm_and_is_in_the_manifest(synth_dir):
    """A wider arm prior gives more not-hand pixels; the manifest records the prior."""
    thin, thick = (
        render_synth_frames(np.random.default_rng(10), 24, SIZE, config=SynthConfig(arm=ArmPrior(**widths)))
        for widths in (
            {"wrist_width_mm": (45.0, 45.0), "elbow_width_mm": (60.0, 60.0)},
            {"wrist_width_mm": (70.0, 70.0), "elbow_width_mm": (95.0, 95.0)},
        )
    )
    np.testing.assert_array_equal(thin["joints_xyz"], thick["joints_xyz"])
    arm_pixels = [np.sum((f["depth_mm"] > 0) & (f["labels"] == 0)) for f in (thin, thick)]
    assert arm_pixels[1] > 1.3 * arm_pixels[0]
    assert np.all((thick["labels"] > 0) <= (thin["labels"] > 0))  # the wider arm hides more of the hand, never less
    params = read_manifest(synth_dir).params["config"]
    assert params["arm"] == json.loads(json.dumps(asdict(ArmPrior())))


@pytest.mark.parametrize("back", [0.0, 1.0])
def test_visible_joints_project_onto_their_parts(back):
    """In frontal views every joint projects within 2 px of a pixel of one of its parts.

    The wrist joints lie where the palm meets the forearm, which may cover the palm
    beside them: 3 px for those.
    """
    size = 48
    frames = render_synth_frames(np.random.default_rng(8), 24, size, config=frontal_open(5.0, 15.0, back))
    crop = uvd_to_crop(frames["joints_uvd"], frames["center_uvd"], size)
    rows, cols = np.mgrid[:size, :size]
    limit_px = [3.0 if name in ("wrist", "wrist_back") else 2.0 for name in JOINT_NAMES]
    for labels, joints in zip(frames["labels"], crop):
        for parts, (col, row, _), limit in zip(JOINT_PARTS, joints, limit_px):
            mask = np.isin(labels, parts)
            assert mask.any()
            assert np.hypot(rows[mask] - row, cols[mask] - col).min() <= limit


def test_generated_data_set(synth_dir):
    manifest = read_manifest(synth_dir)
    assert manifest.domain == "synth" and manifest.count == 48 and manifest.size == 32
    assert set(manifest.fields) == set(FIELDS)
    arrays = load_arrays(synth_dir)
    assert arrays["depth_mm"].shape == (48, 32, 32)
    assert np.all(arrays["labels"][arrays["depth_mm"] == 0] == 0)
    # The same call again returns the finished data set.
    assert generate_synth(synth_dir, 48, seed=0, size=32, shard_size=32, progress=False).count == 48


def test_generation_is_deterministic(tmp_path):
    for name in ("a", "b"):
        generate_synth(tmp_path / name, 10, seed=3, size=16, shard_size=4, progress=False)
    a, b = load_arrays(tmp_path / "a"), load_arrays(tmp_path / "b")
    for name in FIELDS:
        np.testing.assert_array_equal(a[name], b[name])


def test_bad_size_raises_user_error():
    with pytest.raises(UserError, match="crop size"):
        render_synth_frames(np.random.default_rng(0), 2, 0)
