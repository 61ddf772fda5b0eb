"""Analytic ray casting: geometry against closed forms, occlusion, batching, conventions."""

import numpy as np
import pytest

from keras_hpe.data.camera import NYU_CAMERA, xyz_to_uvd
from keras_hpe.data.hand_model import sample_hands
from keras_hpe.data.solids import Solids, hand_solids, sample_arms
from keras_hpe.data.renderer import full_image_window, render
from keras_hpe.data.sensor import render_sensor_frames
from keras_hpe.errors import UserError

CAM = NYU_CAMERA
FULL = full_image_window(CAM)  # pixel (i, j) looks through (u, v) = (j, i)


def make_solids(capsules=(), ellipsoids=(), tapered=()) -> Solids:
    """capsules: (a, b, r, label); ellipsoids: (center, axes 3x3, radii, label); tapered: (a, b, ra, rb, label)."""
    return Solids(
        capsule_a=np.array([c[0] for c in capsules], dtype=float).reshape(-1, 3),
        capsule_b=np.array([c[1] for c in capsules], dtype=float).reshape(-1, 3),
        capsule_radius_mm=np.array([c[2] for c in capsules], dtype=float),
        capsule_labels=np.array([c[3] for c in capsules], dtype=np.uint8),
        tapered_a=np.array([c[0] for c in tapered], dtype=float).reshape(-1, 3),
        tapered_b=np.array([c[1] for c in tapered], dtype=float).reshape(-1, 3),
        tapered_radius_a_mm=np.array([c[2] for c in tapered], dtype=float),
        tapered_radius_b_mm=np.array([c[3] for c in tapered], dtype=float),
        tapered_labels=np.array([c[4] for c in tapered], dtype=np.uint8),
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


def random_solids(rng, n_capsules, n_ellipsoids, n_tapered=0):
    capsules = []
    for k in range(n_capsules):
        a = rng.uniform([-80, -80, 500], [80, 80, 700])
        capsules.append((a, a + rng.normal(0, 40, 3), rng.uniform(5, 20), k + 1))
    ellipsoids = []
    for k in range(n_ellipsoids):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        ellipsoids.append((rng.uniform([-80, -80, 500], [80, 80, 700]), q, rng.uniform(8, 40, 3), 10 + k))
    tapered = []
    for k in range(n_tapered):
        a = rng.uniform([-80, -80, 500], [80, 80, 700])
        b = a + rng.normal(0, 60, 3)
        ra, rb = rng.uniform(3, 0.45 * np.linalg.norm(b - a), 2)
        tapered.append((a, b, ra, rb, 15 + k))
    return make_solids(capsules, ellipsoids, tapered), capsules, ellipsoids, tapered


def inside_tapered(points, a, b, ra, rb):
    """Whether points lie in the hull of two spheres, the union of the spheres swept from (a, ra) to (b, rb).

    |p - c(s)| - r(s) is convex in s, so a ternary search finds its minimum over
    the segment; points outside a ball around the solid are outside.
    """
    near = np.linalg.norm(points - 0.5 * (a + b), axis=-1) <= 0.5 * np.linalg.norm(b - a) + max(ra, rb)
    candidates = points[near]

    def excess(s):
        return np.linalg.norm(candidates - (a + s[:, None] * (b - a)), axis=-1) - (ra + s * (rb - ra))

    low, high = np.zeros(len(candidates)), np.ones(len(candidates))
    for _ in range(30):  # brackets the minimum to (2/3)^30 of the segment: under 0.001 mm
        left, right = low + (high - low) / 3, high - (high - low) / 3
        go_left = excess(left) < excess(right)
        low, high = np.where(go_left, low, left), np.where(go_left, right, high)
    result = np.zeros(points.shape[:-1], dtype=bool)
    result[near] = excess(0.5 * (low + high)) <= 0
    return result


def inside(points, capsules, ellipsoids, tapered=()):
    """Which points lie inside any solid (the union), by their implicit functions."""
    result = np.zeros(points.shape[:-1], dtype=bool)
    for a, b, r, _ in capsules:
        result |= segment_distance(points, a, b) <= r
    for c, q, radii, _ in ellipsoids:
        local = ((points - c) @ q) / radii
        result |= np.sum(local**2, axis=-1) <= 1
    for a, b, ra, rb, _ in tapered:
        result |= inside_tapered(points, a, b, ra, rb)
    return result


def test_hits_are_first_surface_points_of_the_union():
    """Against the implicit solids: a hit is on a surface with free space just before it; a miss stays free."""
    rng = np.random.default_rng(0)
    solids, *kinds = random_solids(rng, 6, 3, 3)
    # Small end towards the camera: the camera lies inside the mirrored cone beyond the apex.
    kinds[2].append((np.array([-40.0, 30.0, 450.0]), np.array([-45.0, 35.0, 650.0]), 8.0, 35.0, 20))
    solids = make_solids(*kinds)
    window = (250.0, 170.0, 390.0, 310.0)
    depth, labels = render(solids, window, 48, 48)
    rays = pixel_rays(window, 48, 48)
    hit = depth > 0
    assert 0.1 < hit.mean() < 0.95
    assert set(np.unique(labels)) >= {15, 16, 17, 20}  # every tapered capsule shows
    t = depth[hit].astype(np.float64)[:, None]
    assert np.all(inside(rays[hit] * (t + 0.05), *kinds))
    assert not np.any(inside(rays[hit] * (t - 0.05), *kinds))
    # Along every other missed ray, sampled every 0.5 mm, no point is inside any solid.
    steps = np.arange(400.0, 800.0, 0.5)
    assert not np.any(inside(rays[~hit][::2, None, :] * steps[:, None], *kinds))
    # The label is that of a solid containing the point just behind the hit.
    for label in np.unique(labels[hit]):
        mask = labels == label
        points = rays[mask] * (depth[mask].astype(np.float64)[:, None] + 0.05)
        own = [[solid for solid in kind if solid[-1] == label] for kind in kinds]
        assert np.all(inside(points, *own))


def test_tapered_capsule_matches_closed_forms():
    # Equal radii: the same solid as a capsule.
    a, b = np.array([-60.0, 10.0, 650.0]), np.array([50.0, -30.0, 700.0])
    capsule = render(make_solids(capsules=[(a, b, 25.0, 3)]), (250, 170, 390, 310), 40, 40)
    tapered = render(make_solids(tapered=[(a, b, 25.0, 25.0, 3)]), (250, 170, 390, 310), 40, 40)
    np.testing.assert_allclose(tapered[0], capsule[0], atol=1e-3)
    np.testing.assert_array_equal(tapered[1], capsule[1])
    # Across the optical axis: the cone's surface lies rho = (ra - h sin b) / cos b from the axis at h.
    ra, rb, length, h = 30.0, 15.0, 200.0, 80.0
    solid = make_solids(tapered=[([-h, 0.0, 600.0], [length - h, 0.0, 600.0], ra, rb, 5)])
    depth, _ = render(solid, FULL, 640, 480)
    sin = (ra - rb) / length
    assert depth[240, 320] == pytest.approx(600.0 - (ra - h * sin) / np.sqrt(1 - sin**2), abs=1e-3)
    # End on, small end first: the near sphere's front on the axis, the far sphere's disc as silhouette.
    solid = make_solids(tapered=[([0.0, 0.0, 500.0], [0.0, 0.0, 700.0], 10.0, 40.0, 5)])
    depth, labels = render(solid, FULL, 640, 480)
    assert depth[240, 320] == pytest.approx(490.0, abs=1e-3)
    radius_px = CAM.fx * 40.0 / np.sqrt(700.0**2 - 40.0**2)
    assert np.count_nonzero(depth) == pytest.approx(np.pi * radius_px**2, rel=0.02)
    np.testing.assert_array_equal(labels == 5, depth > 0)


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


@pytest.mark.parametrize("forearm", ["sensor stub", "synthetic arm"])
def test_batch_equals_frames_rendered_one_by_one(forearm):
    rng = np.random.default_rng(1)
    hands = sample_hands(rng, 3)
    if forearm == "sensor stub":
        solids = hand_solids(hands, forearm=True)
    else:
        solids = hand_solids(hands, arm=sample_arms(rng, hands.scale))
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


def test_sensor_frames_are_unchanged_by_the_synthetic_arm():
    """Regression: the sensor domain's frames (forearm stub, sensor model) as they were before the arm existed."""
    frames = render_sensor_frames(np.random.default_rng(0), 3, 32, eval_labels=True)
    depth = frames["depth_mm"].astype(np.float64)
    assert np.count_nonzero(depth) == 522
    assert depth.sum() == pytest.approx(449207.5155, rel=1e-6)
    assert np.bincount(frames["labels"].ravel(), minlength=21).tolist() == [
        2749, 121, 19, 18, 9, 22, 23, 6, 9, 4, 16, 7, 6, 3, 17, 7, 9, 3, 13, 6, 5
    ]
    np.testing.assert_allclose(
        frames["joints_xyz"].astype(np.float64).sum(axis=1),
        [
            [1395.74732, -1595.41839, 14143.03876],
            [-739.83239, 2612.86254, 13997.87146],
            [-621.28646, -173.63268, 9325.16211],
        ],
        rtol=1e-6,
    )


def test_bad_input_raises_user_error():
    ball = make_solids(capsules=[([0.0, 0.0, 10.0], [0.0, 0.0, 10.0], 20.0, 1)])
    with pytest.raises(UserError, match="in front of the camera"):
        render(ball, FULL, 8, 8)
    with pytest.raises(UserError, match="u1 > u0"):
        render(ball, (10, 10, 5, 20), 8, 8)
    with pytest.raises(UserError, match="size"):
        render(ball, FULL, 0, 8)
