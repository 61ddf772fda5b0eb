"""Analytic ray casting: geometry against closed forms, occlusion, batching, conventions."""

import numpy as np
import pytest

from keras_hpe.data.camera import NYU_CAMERA, xyz_to_uvd
from keras_hpe.data.hand_model import Solids, hand_solids, sample_hands
from keras_hpe.data.renderer import full_image_window, render
from keras_hpe.errors import UserError

CAM = NYU_CAMERA
FULL = full_image_window(CAM)  # pixel (i, j) looks through (u, v) = (j, i)


def make_solids(capsules=(), ellipsoids=()) -> Solids:
    """capsules: (a, b, r, label); ellipsoids: (center, axes 3x3, radii, label)."""
    return Solids(
        capsule_a=np.array([c[0] for c in capsules], dtype=float).reshape(-1, 3),
        capsule_b=np.array([c[1] for c in capsules], dtype=float).reshape(-1, 3),
        capsule_radius_mm=np.array([c[2] for c in capsules], dtype=float),
        capsule_labels=np.array([c[3] for c in capsules], dtype=np.uint8),
        ellipsoid_center=np.array([e[0] for e in ellipsoids], dtype=float).reshape(-1, 3),
        ellipsoid_axes=np.array([e[1] for e in ellipsoids], dtype=float).reshape(-1, 3, 3),
        ellipsoid_radii_mm=np.array([e[2] for e in ellipsoids], dtype=float).reshape(-1, 3),
        ellipsoid_labels=np.array([e[3] for e in ellipsoids], dtype=np.uint8),
    )


def pixel_rays(window, width, height):
    u0, v0, u1, v1 = window
    u = u0 + (np.arange(width) + 0.5) * (u1 - u0) / width
    v = v0 + (np.arange(height) + 0.5) * (v1 - v0) / height
    uu, vv = np.meshgrid(u, v)
    return np.stack([(uu - CAM.cx) / CAM.fx, (CAM.cy - vv) / CAM.fy, np.ones_like(uu)], axis=-1)


def segment_distance(p, a, b):
    ab = b - a
    s = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + s[..., None] * ab), axis=-1)


def test_sphere_depth_and_silhouette_match_closed_form():
    center = np.array([0.0, 0.0, 600.0])
    depth, labels = render(make_solids(capsules=[(center, center, 50.0, 7)]), FULL, 640, 480)
    assert depth.dtype == np.float32 and labels.dtype == np.uint8 and depth.shape == (480, 640)
    # The ray through pixel (240, 320) is the optical axis: it meets the sphere at z = 550.
    assert depth[240, 320] == pytest.approx(550.0, abs=1e-3)
    # Silhouette of a sphere: a circle of radius f r / sqrt(d^2 - r^2) pixels.
    radius_px = CAM.fx * 50.0 / np.sqrt(600.0**2 - 50.0**2)
    assert np.count_nonzero(depth) == pytest.approx(np.pi * radius_px**2, rel=0.02)
    assert set(np.unique(labels)) == {0, 7}
    np.testing.assert_array_equal(labels == 0, depth == 0)


def random_solids(rng, n_capsules, n_ellipsoids):
    capsules = []
    for k in range(n_capsules):
        a = rng.uniform([-80, -80, 500], [80, 80, 700])
        capsules.append((a, a + rng.normal(0, 40, 3), rng.uniform(5, 20), k + 1))
    ellipsoids = []
    for k in range(n_ellipsoids):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        ellipsoids.append((rng.uniform([-80, -80, 500], [80, 80, 700]), q, rng.uniform(8, 40, 3), 10 + k))
    return make_solids(capsules, ellipsoids), capsules, ellipsoids


def inside(points, capsules, ellipsoids):
    """Which points lie inside any solid (the union), by their implicit functions."""
    result = np.zeros(points.shape[:-1], dtype=bool)
    for a, b, r, _ in capsules:
        result |= segment_distance(points, a, b) <= r
    for c, q, radii, _ in ellipsoids:
        local = ((points - c) @ q) / radii
        result |= np.sum(local**2, axis=-1) <= 1
    return result


def test_hits_are_first_surface_points_of_the_union():
    """Against the implicit solids: a hit is on a surface with free space just before it; a miss stays free."""
    rng = np.random.default_rng(0)
    solids, capsules, ellipsoids = random_solids(rng, 6, 3)
    window = (250.0, 170.0, 390.0, 310.0)
    depth, labels = render(solids, window, 48, 48)
    rays = pixel_rays(window, 48, 48)
    hit = depth > 0
    assert 0.1 < hit.mean() < 0.95
    t = depth[hit].astype(np.float64)[:, None]
    assert np.all(inside(rays[hit] * (t + 0.05), capsules, ellipsoids))
    assert not np.any(inside(rays[hit] * (t - 0.05), capsules, ellipsoids))
    # Along a missed ray, sampled every 0.5 mm, no point is inside any solid.
    steps = np.arange(400.0, 800.0, 0.5)
    assert not np.any(inside(rays[~hit][:, None, :] * steps[:, None], capsules, ellipsoids))
    # The label is that of a solid containing the point just behind the hit.
    for label in np.unique(labels[hit]):
        mask = labels == label
        points = rays[mask] * (depth[mask].astype(np.float64)[:, None] + 0.05)
        own = [c for c in capsules if c[3] == label], [e for e in ellipsoids if e[3] == label]
        assert np.all(inside(points, *own))


def test_nearest_solid_wins_and_rotated_ellipsoid_is_the_same():
    near = ([0.0, 0.0, 500.0], [0.0, 0.0, 500.0], 20.0, 3)
    far = ([0.0, 0.0, 560.0], [0.0, 0.0, 560.0], 60.0, 9)
    depth, labels = render(make_solids(capsules=[far, near]), (279, 199, 359, 279), 40, 40)
    assert labels[20, 20] == 3 and depth[20, 20] == pytest.approx(480.0, abs=0.01)
    assert labels[2, 20] == 9
    # An ellipsoid given with axes rotated by 90 degrees about z and radii swapped is the same solid.
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a = make_solids(ellipsoids=[([10.0, -5.0, 700.0], np.eye(3), [60.0, 25.0, 15.0], 4)])
    b = make_solids(ellipsoids=[([10.0, -5.0, 700.0], rot, [25.0, 60.0, 15.0], 4)])
    depth_a, _ = render(a, (220, 160, 420, 320), 50, 40)
    depth_b, _ = render(b, (220, 160, 420, 320), 50, 40)
    np.testing.assert_allclose(depth_a, depth_b, atol=1e-3)
    assert depth_a[20, 25] == pytest.approx(685.0, abs=0.5)
    # Wider than tall: 60 mm against 25 mm half-axes.
    rows, cols = np.nonzero(depth_a)
    assert np.ptp(cols) * (200 / 50) > 2 * np.ptp(rows) * (160 / 40)


def test_pixel_convention_of_the_window():
    """Pixel (i, j) looks through u = u0 + (j + 0.5) du, v = v0 + (i + 0.5) dv."""
    window = (300.0, 220.0, 340.0, 260.0)  # 1 px per pixel at 40 x 40
    for u, v, expected in ((310.5, 230.5, (10, 10)), (331.5, 224.5, (4, 31))):
        xyz = np.array([(u - CAM.cx) * 800 / CAM.fx, (CAM.cy - v) * 800 / CAM.fy, 800.0])
        depth, _ = render(make_solids(capsules=[(xyz, xyz, 0.4, 1)]), window, 40, 40)
        assert list(zip(*np.nonzero(depth))) == [expected]


def test_batch_equals_frames_rendered_one_by_one():
    hands = sample_hands(np.random.default_rng(1), 3)
    solids = hand_solids(hands, forearm=True)
    center = xyz_to_uvd(hands.joints_xyz.mean(axis=1))
    half = 150 * CAM.fx / center[:, 2]
    window = np.stack([center[:, 0] - half, center[:, 1] - half, center[:, 0] + half, center[:, 1] + half], -1)
    depth, labels = render(solids, window, 32, 32)
    assert depth.shape == (3, 32, 32)
    for k in range(3):
        d, lab = render(solids[k], window[k], 32, 32)
        np.testing.assert_array_equal(d, depth[k])
        np.testing.assert_array_equal(lab, labels[k])
    # The forearm has depth but no part label; hand parts are all labelled.
    assert np.any((depth > 0) & (labels == 0))
    hand_only, hand_labels = render(hand_solids(hands), window, 32, 32)
    np.testing.assert_array_equal(hand_labels == 0, hand_only == 0)


def test_bad_input_raises_user_error():
    ball = make_solids(capsules=[([0.0, 0.0, 10.0], [0.0, 0.0, 10.0], 20.0, 1)])
    with pytest.raises(UserError, match="in front of the camera"):
        render(ball, FULL, 8, 8)
    with pytest.raises(UserError, match="u1 > u0"):
        render(ball, (10, 10, 5, 20), 8, 8)
    with pytest.raises(UserError, match="size"):
        render(ball, FULL, 0, 8)
