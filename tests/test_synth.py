"""The synth domain: rendered crops, their joints, and the data set on disk."""

import numpy as np
import pytest

from keras_hpe.data.camera import xyz_to_uvd
from keras_hpe.data.crop import CUBE_MM, uvd_to_crop
from keras_hpe.data.dataset import FIELDS, load_arrays, read_manifest
from keras_hpe.data.hand_model import PosePrior, ViewPrior
from keras_hpe.data.skeleton import JOINT_PARTS, NUM_PARTS
from keras_hpe.data.synth import SynthConfig, generate_synth, render_synth_frames
from keras_hpe.errors import UserError

SIZE = 32


def frontal_open(noise_deg: float, out_of_plane_deg: float = 0.0, back: float = 0.5) -> SynthConfig:
    """Open hands facing the camera (palm or back), any roll."""
    return SynthConfig(
        pose=PosePrior(family_weights={"open": 1.0}, noise_deg=noise_deg),
        view=ViewPrior(out_of_plane_deg=out_of_plane_deg, back_facing_probability=back),
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
    np.testing.assert_array_equal(labels == 0, depth == 0)
    assert labels.max() <= NUM_PARTS
    near = np.abs(depth - center[:, 2, None, None]) <= CUBE_MM / 2
    assert np.all(near | (depth == 0))
    assert np.all((depth > 0).mean(axis=(1, 2)) > 0.03)  # every crop shows a hand
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


@pytest.mark.parametrize("back", [0.0, 1.0])
def test_visible_joints_project_onto_their_parts(back):
    """In frontal views every joint projects within 2 px of a pixel of one of its parts."""
    size = 48
    frames = render_synth_frames(np.random.default_rng(8), 24, size, config=frontal_open(5.0, 15.0, back))
    crop = uvd_to_crop(frames["joints_uvd"], frames["center_uvd"], size)
    rows, cols = np.mgrid[:size, :size]
    for labels, joints in zip(frames["labels"], crop):
        for parts, (col, row, _) in zip(JOINT_PARTS, joints):
            mask = np.isin(labels, parts)
            assert mask.any()
            assert np.hypot(rows[mask] - row, cols[mask] - col).min() <= 2.0


def test_generated_data_set(synth_dir):
    manifest = read_manifest(synth_dir)
    assert manifest.domain == "synth" and manifest.count == 48 and manifest.size == 32
    assert set(manifest.fields) == set(FIELDS)
    arrays = load_arrays(synth_dir)
    assert arrays["depth_mm"].shape == (48, 32, 32)
    np.testing.assert_array_equal(arrays["labels"] == 0, arrays["depth_mm"] == 0)
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
