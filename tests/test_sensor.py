"""The `sensor` domain: the structured-light model on hand-made depth maps, the frames, the data sets."""

import json
from dataclasses import replace

import numpy as np
import pytest

from keras_hpe.data.camera import NYU_CAMERA
from keras_hpe.data.sensor import SensorConfig, apply_sensor_model
from keras_hpe.errors import UserError

FOCAL_BASELINE = NYU_CAMERA.fx * SensorConfig().baseline_mm
# Only the deterministic geometry: no noise, smoothing, random drop-outs or flying pixels.
CLEAN = SensorConfig(
    disparity_noise_px=0.0, lateral_sigma_px=0.0, edge_dropout=0.0, flying_pixel_prob=0.0, hole_fraction=0.0,
    disparity_step_px=0.0,
)


def plane(depth_mm: float, size: int = 160, spread_mm: float = 0.0) -> np.ndarray:
    """A fronto-parallel plane, optionally sloping by `spread_mm` across so quantisation phases vary."""
    return np.full((size, size), depth_mm) + np.linspace(-spread_mm / 2, spread_mm / 2, size)[None, :]


def sphere(radius_mm: float = 60.0, depth_mm: float = 700.0, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A sphere centred on the optical axis (approximately orthographic), with each pixel's radius / R."""
    rows, cols = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(rows, cols) * depth_mm / NYU_CAMERA.fx / radius_mm
    depth = np.where(r < 1, depth_mm - radius_mm * np.sqrt(np.clip(1 - r**2, 0, None)), 0.0)
    return depth, r


def box_on_plane(near_mm: float = 700.0, far_mm: float = 800.0) -> np.ndarray:
    """A box (columns 100-149, rows 40-119) in front of a plane."""
    depth = plane(far_mm, 200)
    depth[40:120, 100:150] = near_mm
    return depth


def test_deterministic_given_the_seed():
    depth, _ = sphere()
    first = apply_sensor_model(depth, np.random.default_rng(5))
    again = apply_sensor_model(depth, np.random.default_rng(5))
    other = apply_sensor_model(depth, np.random.default_rng(6))
    assert first.dtype == np.float32 and first.shape == depth.shape
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)


def test_axial_noise_grows_with_depth_squared():
    rng = np.random.default_rng(0)
    std = {}
    for z in (500.0, 1000.0):
        clean = plane(z, spread_mm=20.0 * (z / 500.0) ** 2)
        noisy = apply_sensor_model(clean, rng, replace(SensorConfig(), hole_fraction=0.0))
        seen = noisy > 0
        std[z] = np.std(noisy[seen] - clean[seen])
    assert std[500.0] > 0
    # Disparity noise and quantisation both scale depth errors by z^2 / (f b): a factor 4 here.
    assert 3.4 < std[1000.0] / std[500.0] < 4.6


def test_quantisation_steps_follow_the_disparity_formula():
    config = SensorConfig()
    noisy = apply_sensor_model(plane(800.0, spread_mm=30.0), np.random.default_rng(1), config)
    levels = np.unique(noisy[noisy > 0]).astype(np.float64)
    assert levels.size > 5
    # Every depth is f b / (k * step) for an integer k ...
    steps = FOCAL_BASELINE / (levels * config.disparity_step_px)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    # ... so neighbouring levels are z^2 step / (f b) apart (2.9 mm at 800 mm).
    expected = levels[:-1] ** 2 * config.disparity_step_px / FOCAL_BASELINE
    np.testing.assert_allclose(np.diff(levels), expected, rtol=0.01)


def test_random_holes_cover_about_the_configured_fraction():
    config = replace(SensorConfig(), hole_fraction=0.05)
    noisy = apply_sensor_model(plane(700.0, size=300), np.random.default_rng(2), config)
    interior = noisy[10:-10, 10:-10]
    missing = np.mean(interior == 0)
    assert 0.025 < missing < 0.1
    # Holes are blobs, not isolated pixels: most missing pixels have a missing neighbour.
    holes = interior == 0
    neighbours = holes[1:-1, :-2] | holes[1:-1, 2:] | holes[:-2, 1:-1] | holes[2:, 1:-1]
    assert np.mean(neighbours[holes[1:-1, 1:-1]]) > 0.8


def test_silhouette_drop_outs_exist_and_are_bounded():
    depth, r = sphere()
    noisy = apply_sensor_model(depth, np.random.default_rng(3), replace(SensorConfig(), hole_fraction=0.0))
    assert not np.any((noisy > 0) & (depth == 0))
    lost = (noisy == 0) & (depth > 0)
    # The outer ~2 px lose at least the edge drop-out rate; the inside of the sphere loses nothing.
    rim = (r > 0.96) & (r < 1)
    assert np.mean(lost[rim]) > 0.8 * SensorConfig().edge_dropout
    assert not np.any(lost[r < 0.9])
    assert 0.02 < lost.sum() / (depth > 0).sum() < 0.2


def test_grazing_surfaces_are_dropped():
    depth, r = sphere()
    noisy = apply_sensor_model(depth, np.random.default_rng(4), replace(CLEAN, edge_band_px=1))
    lost = (noisy == 0) & (depth > 0)
    # Incidence on a sphere is asin(r / R): drop-outs start at 70 degrees (r = 0.94 R) and rise towards the rim
    # (the outermost pixel ring is the silhouette, left to the edge model).
    assert not np.any(lost[r < 0.9])
    steep, moderate = lost[(r > 0.96) & (r < 0.99)], lost[(r > 0.9) & (r < 0.94)]
    assert np.mean(steep) > 0.25 and np.mean(steep) > 3 * np.mean(moderate)


def test_projector_shadow_falls_on_the_far_side_from_the_projector():
    noisy = apply_sensor_model(box_on_plane(), np.random.default_rng(0), replace(CLEAN, edge_band_px=1))
    row = noisy[80]
    left_gap = np.flatnonzero(row[60:100] == 0)
    # Shadow width f b (1/z_near - 1/z_far) = 7.9 px, just left of the box (the projector is on +u).
    expected = FOCAL_BASELINE * (1 / 700.0 - 1 / 800.0)
    assert abs(left_gap.size - expected) <= 1.0
    assert left_gap.max() == 39
    assert np.all(row[150:190] > 0)


def test_flying_pixels_lie_between_the_surfaces_at_depth_edges():
    depth = box_on_plane()
    between = {}
    for prob in (0.0, 1.0):
        noisy = apply_sensor_model(depth, np.random.default_rng(0), replace(CLEAN, flying_pixel_prob=prob))
        between[prob] = (noisy > 702) & (noisy < 798)
    assert not between[0.0].any()
    assert between[1.0].sum() > 50
    # They sit on the box's outline (near side of the edge), not inside surfaces.
    rows, cols = np.nonzero(between[1.0])
    on_outline = (np.isin(rows, (40, 119)) & (cols >= 100) & (cols < 150)) | (
        np.isin(cols, (100, 149)) & (rows >= 40) & (rows < 120)
    )
    assert np.all(on_outline)


def test_range_limits_and_empty_input():
    config = SensorConfig()
    assert not np.any(apply_sensor_model(plane(350.0), np.random.default_rng(0), config))
    assert not np.any(apply_sensor_model(np.zeros((20, 20)), np.random.default_rng(0), config))
    with pytest.raises(UserError, match="shape"):
        apply_sensor_model(np.zeros((2, 3, 4)), np.random.default_rng(0), config)


def test_config_from_json_overrides_a_subset(tmp_path):
    path = tmp_path / "camera.json"
    path.write_text(json.dumps({"baseline_mm": 50, "disparity_noise_px": 0.1}))
    config = SensorConfig.from_json(path)
    assert config.baseline_mm == 50.0 and config.disparity_noise_px == 0.1
    assert config.disparity_step_px == SensorConfig().disparity_step_px
    assert SensorConfig(**config.to_dict()) == config


@pytest.mark.parametrize(
    "text, names",
    [
        ('{"baseline": 75}', ["baseline"]),
        ('{"baseline_mm": "75"}', ["baseline_mm"]),
        ('{"edge_band_px": 1.5}', ["edge_band_px"]),
        ('{"flying_pixel_prob": true}', ["flying_pixel_prob"]),
        ('{"hole_fraction": -0.1}', ["hole_fraction"]),
        ('{"grazing_start_deg": 80, "grazing_stop_deg": 75}', ["grazing_start_deg"]),
        ('{"baseline_mm": 75,}', ["valid JSON"]),
        ("[1, 2]", ["JSON object"]),
        ('{"edge_band_px": 1' + "0" * 400 + "}", ["edge_band_px", "[1, 10]"]),
    ],
)
def test_bad_config_json_names_the_file_and_the_field(tmp_path, text, names):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        SensorConfig.from_json(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    for name in names:
        assert name in message


def test_unreadable_config_names_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.json"):
        SensorConfig.from_json(tmp_path / "missing.json")


def test_frames_are_deterministic_and_eval_labels_do_not_change_them():
    from keras_hpe.data.sensor import render_sensor_frames

    train = render_sensor_frames(np.random.default_rng(7), 4, 32, eval_labels=False)
    again = render_sensor_frames(np.random.default_rng(7), 4, 32, eval_labels=True)
    assert set(train) == {"depth_mm", "joints_uvd", "joints_xyz", "center_uvd"}
    assert again["labels"].shape == (4, 32, 32) and again["labels"].dtype == np.uint8
    for name, array in train.items():
        np.testing.assert_array_equal(array, again[name])
    assert train["depth_mm"].shape == (4, 32, 32) and train["depth_mm"].dtype == np.float32
    assert train["joints_xyz"].shape == (4, 14, 3) and train["center_uvd"].shape == (4, 3)


def test_centre_comes_from_the_depth_not_from_ground_truth():
    from keras_hpe.data.camera import uvd_to_xyz
    from keras_hpe.data.sensor import render_sensor_frames

    frames = render_sensor_frames(np.random.default_rng(8), 12, 32)
    center_xyz = uvd_to_xyz(frames["center_uvd"])
    joints = frames["joints_xyz"]
    offset_mm = np.linalg.norm(center_xyz - joints.mean(axis=1), axis=-1)
    assert np.all(offset_mm > 1.0)
    # Close: near the palm (pulled towards the wrist by the forearm), the hand's joints inside the cube.
    palm_offset_mm = np.linalg.norm(center_xyz - joints[:, -1], axis=-1)
    assert np.median(palm_offset_mm) < 60.0
    assert np.mean(np.all(np.abs(joints - center_xyz[:, None]) < 150.0, axis=-1)) > 0.95
    # The centre depth is a measured depth: on the hand's near surface, in the sensor's range.
    assert np.all(np.abs(frames["center_uvd"][:, 2] - joints.mean(axis=1)[:, 2]) < 80.0)


def test_eval_labels_are_zero_without_depth_and_the_forearm_has_depth_but_no_label(sensor_eval_dir):
    from keras_hpe.data.dataset import load_arrays

    arrays = load_arrays(sensor_eval_dir)
    depth, labels = arrays["depth_mm"], arrays["labels"]
    assert not np.any(labels[depth == 0])
    assert np.mean(labels[depth > 0] > 0) > 0.3
    assert np.any((depth > 0) & (labels == 0))  # forearm pixels
    assert len(np.unique(labels)) > 10


def test_training_split_has_no_labels_and_eval_split_has_them(sensor_dir, sensor_eval_dir):
    from keras_hpe.data.dataset import load_arrays, read_manifest

    train, evaluation = read_manifest(sensor_dir), read_manifest(sensor_eval_dir)
    assert train.domain == evaluation.domain == "sensor"
    assert "labels" not in train.fields and "labels" in evaluation.fields
    assert train.count == 32 and len(train.shards) == 2
    assert set(load_arrays(sensor_dir)) == {"depth_mm", "joints_uvd", "joints_xyz", "center_uvd"}
    assert train.params["eval_labels"] is False and evaluation.params["eval_labels"] is True
    assert train.params["sensor"] == SensorConfig().to_dict()
    assert train.params["view_prior"]["distance_mm"] == [500.0, 1100.0]


def test_manifest_records_an_overridden_config(tmp_path):
    from keras_hpe.data.sensor import generate_sensor

    path = tmp_path / "camera.json"
    path.write_text(json.dumps({"baseline_mm": 50.0, "hole_fraction": 0.0}))
    config = SensorConfig.from_json(path)
    manifest = generate_sensor(tmp_path / "data", 2, seed=3, size=16, config=config, progress=False)
    assert manifest.params["sensor"]["baseline_mm"] == 50.0
    assert manifest.params["sensor"]["hole_fraction"] == 0.0
    assert manifest.params["sensor"]["disparity_step_px"] == SensorConfig().disparity_step_px
