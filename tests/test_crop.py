import numpy as np
import pytest

from keras_hpe.data.camera import NYU_CAMERA, uvd_to_xyz, xyz_to_uvd
from keras_hpe.data.crop import (
    CUBE_MM,
    center_of_mass_uvd,
    clip_to_cube,
    crop_depth,
    crop_image,
    crop_to_joints,
    crop_to_uvd,
    crop_window,
    fill_holes,
    joints_to_crop,
    local_contrast_normalize,
    normalize_depth,
    recrop_depth,
    uvd_to_crop,
)
from keras_hpe.data.nyu import read_depth_png, write_nyu_like
from keras_hpe.errors import UserError

SIZE = 32


def _random_joints(rng, batch=5):
    center_xyz = rng.uniform([-100, -80, 350], [100, 80, 900], (batch, 3))
    joints_xyz = center_xyz[:, None, :] + rng.uniform(-120, 120, (batch, 14, 3))
    return joints_xyz, center_xyz


def test_window_is_the_cube_projected_at_the_centre_depth():
    center = np.array([[300.0, 200.0, 600.0], [100.0, 50.0, 1200.0]])
    window = crop_window(center)
    half_u = 0.5 * CUBE_MM * NYU_CAMERA.fx / center[:, 2]
    half_v = 0.5 * CUBE_MM * NYU_CAMERA.fy / center[:, 2]
    np.testing.assert_allclose(window[:, 2] - window[:, 0], 2 * half_u)
    np.testing.assert_allclose(window[:, 3] - window[:, 1], 2 * half_v)
    np.testing.assert_allclose((window[:, :2] + window[:, 2:]) / 2, center[:, :2])
    # The window's edges back-project to +-cube/2 mm at the centre depth.
    corners = uvd_to_xyz(np.stack([window[:, 0], window[:, 1], center[:, 2]], -1))
    np.testing.assert_allclose(corners[:, 0] - uvd_to_xyz(center)[:, 0], -CUBE_MM / 2)
    np.testing.assert_allclose(corners[:, 1] - uvd_to_xyz(center)[:, 1], CUBE_MM / 2)


def test_joint_uvd_to_crop_pixels_and_back_is_exact():
    rng = np.random.default_rng(0)
    joints_xyz, center_xyz = _random_joints(rng)
    joints_uvd, center_uvd = xyz_to_uvd(joints_xyz), xyz_to_uvd(center_xyz)
    crop_px = uvd_to_crop(joints_uvd, center_uvd, SIZE)
    assert crop_px.shape == joints_uvd.shape
    back_xyz = uvd_to_xyz(crop_to_uvd(crop_px, center_uvd, SIZE))
    assert np.abs(back_xyz - joints_xyz).max() < 0.5
    # The centre lands in the middle of the crop.
    middle = uvd_to_crop(center_uvd[:, None, :], center_uvd, SIZE)[:, 0, :2]
    np.testing.assert_allclose(middle, (SIZE - 1) / 2)


def test_joints_normalized_and_back_within_half_a_millimetre():
    rng = np.random.default_rng(1)
    joints_xyz, center_xyz = _random_joints(rng)
    normalized = joints_to_crop(joints_xyz, center_xyz)
    assert np.abs(normalized).max() <= 120 / (CUBE_MM / 2) + 1e-9
    back = crop_to_joints(normalized.astype(np.float32), center_xyz)
    assert np.abs(back - joints_xyz).max() < 0.5


def test_crop_samples_the_pixel_under_each_crop_pixel():
    # An image whose value encodes its own coordinates: crop values tell where each sample came from.
    v, u = np.mgrid[0:480, 0:640]
    image = (v * 1000 + u).astype(np.int64)
    center = np.array([330.0, 250.0, 700.0])
    crop = crop_image(image, center, SIZE)
    sample_uvd = crop_to_uvd(np.stack([np.arange(SIZE), np.full(SIZE, 3), np.full(SIZE, 700.0)], -1), center, SIZE)
    np.testing.assert_array_equal(crop[3] % 1000, np.round(sample_uvd[:, 0]))
    np.testing.assert_array_equal(crop[3] // 1000, np.round(sample_uvd[:, 1]))
    # A sub-image with its origin gives the same crop.
    sub = crop_image(image[100:400, 150:500], center, SIZE, origin=(150, 100))
    np.testing.assert_array_equal(sub, crop)


def test_crop_outside_the_image_is_zero():
    image = np.full((480, 640), 400.0, dtype=np.float32)
    crop = crop_depth(image, np.array([5.0, 5.0, 400.0]), SIZE)
    assert crop.dtype == np.float32 and crop.shape == (SIZE, SIZE)
    assert crop[0, 0] == 0 and crop[-1, -1] == 400.0


def test_clip_to_cube_keeps_only_the_depth_range():
    depth = np.array([[[0.0, 349.0, 350.0, 500.0, 650.0, 651.0]], [[0.0, 349.0, 350.0, 500.0, 650.0, 651.0]]])
    clipped = clip_to_cube(depth, np.array([500.0, 700.0]))
    np.testing.assert_array_equal(clipped[0], [[0.0, 0.0, 350.0, 500.0, 650.0, 0.0]])
    np.testing.assert_array_equal(clipped[1], [[0.0, 0.0, 0.0, 0.0, 650.0, 651.0]])


def _stored_crops(rng, n=3):
    """Crops of depth 500-700 mm (a tenth of it missing) and their centres at 600 mm."""
    depth = rng.uniform(500, 700, (n, SIZE, SIZE)) * (rng.uniform(size=(n, SIZE, SIZE)) > 0.1)
    center = np.stack([rng.uniform(250, 390, n), rng.uniform(180, 300, n), np.full(n, 600.0)], -1)
    return depth.astype(np.float32), center.astype(np.float32)


def test_recrop_to_a_shifted_cube_shifts_the_crop():
    depth, center = _stored_crops(np.random.default_rng(0))
    # The same cube moved 5 crop pixels right and 3 up: new pixel (i, j) is stored pixel (i - 3, j + 5).
    half_u, half_v = (crop_window(center)[:, 2:] - center[:, :2]).T
    shifted = center + np.stack([5 * 2 * half_u / SIZE, -3 * 2 * half_v / SIZE, np.zeros(3)], -1)
    moved, moved_center = recrop_depth(depth, center, uvd_to_xyz(shifted), CUBE_MM, CUBE_MM)
    np.testing.assert_allclose(moved_center.numpy(), shifted, rtol=1e-5)
    moved = moved.numpy()
    np.testing.assert_array_equal(moved[:, 3:, : SIZE - 5], depth[:, : SIZE - 3, 5:])
    assert np.all(moved[:, :3] == 0) and np.all(moved[:, :, SIZE - 5 :] == 0)  # outside the stored crop


def test_recrop_to_half_the_cube_magnifies_twice_and_clips_the_depth():
    depth, center = _stored_crops(np.random.default_rng(1))
    half, _ = recrop_depth(depth, center, uvd_to_xyz(center), CUBE_MM, CUBE_MM / 2)
    # Each stored pixel of the middle half becomes 2 x 2 new pixels; depth beyond 600 +- 75 mm is cut.
    middle = depth[:, SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4]
    expected = np.where(np.abs(middle - 600) <= 75, middle, 0).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(half.numpy(), expected)
    assert 0 < np.mean(expected > 0) < np.mean(depth > 0)


def test_center_of_mass_finds_a_disc_despite_background():
    v, u = np.mgrid[0:480, 0:640]
    depth = np.zeros((480, 640), dtype=np.float32)
    disc = (u - 400) ** 2 + (v - 180) ** 2 <= 30**2
    depth[disc] = 600.0
    depth[400:, :100] = 1500.0  # far background the refinement must drop
    com = center_of_mass_uvd(depth)
    np.testing.assert_allclose(com, [400.0, 180.0, 600.0], atol=0.5)
    # Same answer from a sub-image with its origin.
    np.testing.assert_allclose(center_of_mass_uvd(depth[100:300, 300:500], origin=(300, 100)), com, atol=1e-9)


def _center_of_mass_over_every_pixel(depth, origin=(0, 0)):
    """The centre of mass as first written: each refinement tests every pixel of the image."""
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]]
    u, v, d = u + origin[0], v + origin[1], depth.astype(np.float64)
    valid = d > 0

    def mean(mask):
        return np.stack([u[mask], v[mask], d[mask]], axis=-1).astype(np.float64).mean(axis=0)

    center = mean(valid & (d <= d[valid].min() + CUBE_MM))
    for _ in range(10):
        u0, v0, u1, v1 = crop_window(center, CUBE_MM, NYU_CAMERA)
        inside = valid & (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1) & (np.abs(d - center[2]) <= 0.5 * CUBE_MM)
        if not inside.any() or np.allclose(mean(inside), center):
            break
        center = mean(inside)
    return center


def test_center_of_mass_is_the_every_pixel_one_to_the_bit(tmp_path):
    # Refinements look only at the window's rows and columns: the same pixels, in the same order.
    frames = sorted(write_nyu_like(tmp_path, "test", 8, seed=3).glob("depth_1_*.png"))
    for path in frames:
        depth = read_depth_png(path)
        depth[300:, 200:260] = 700.0  # a forearm reaching out of the window
        np.testing.assert_array_equal(center_of_mass_uvd(depth), _center_of_mass_over_every_pixel(depth))
        window = depth[50:400, 100:500]
        np.testing.assert_array_equal(center_of_mass_uvd(window, origin=(100, 50)),
                                      _center_of_mass_over_every_pixel(window, origin=(100, 50)))


@pytest.mark.parametrize("bad", [np.nan, -5.0, np.inf])
def test_invalid_depth_is_a_user_error(bad):
    depth = np.full((40, 40), 500.0)
    depth[3, 4] = bad
    with pytest.raises(UserError, match="depth"):
        center_of_mass_uvd(depth)
    with pytest.raises(UserError, match="depth"):
        crop_depth(depth, np.array([20.0, 20.0, 500.0]), SIZE)


def test_empty_depth_and_bad_centre_are_user_errors():
    with pytest.raises(UserError, match="no valid"):
        center_of_mass_uvd(np.zeros((10, 10)))
    with pytest.raises(UserError, match="centre depth"):
        crop_window(np.array([1.0, 2.0, 0.0]))


def test_normalize_depth_range_and_missing_is_far():
    depth = np.array([[[0.0, 300.0, 400.0, 500.0, 550.0, 900.0]]], dtype=np.float32)
    out = normalize_depth(depth, np.array([400.0])).numpy()
    np.testing.assert_allclose(out, [[[1.0, -2 / 3, 0.0, 2 / 3, 1.0, 1.0]]], atol=1e-6)
    assert out.dtype == np.float32
    # (B, S, S, 1) and a per-frame centre broadcast the same way.
    out4 = normalize_depth(np.concatenate([depth, depth])[..., None], np.array([400.0, 500.0])).numpy()
    np.testing.assert_allclose(out4[0, ..., 0], out[0], atol=1e-6)
    np.testing.assert_allclose(out4[1, 0, 3, 0], 0.0, atol=1e-6)


def test_local_contrast_normalization_statistics():
    rng = np.random.default_rng(2)
    # A strong ramp plus texture: LCN removes the ramp and equalises the contrast.
    ramp = np.linspace(-5, 5, SIZE)[None, :, None] * np.ones((3, SIZE, SIZE))
    x = 10.0 * ramp + rng.normal(0, 1, (3, SIZE, SIZE)) * np.array([1.0, 5.0, 20.0])[:, None, None]
    out = local_contrast_normalize(x[..., None].astype(np.float32)).numpy()
    assert out.shape == (3, SIZE, SIZE, 1)
    inner = out[:, 8:-8, 8:-8, 0]
    assert np.abs(inner.mean(axis=(1, 2))).max() < 0.2
    stds = inner.std(axis=(1, 2))
    assert np.all((stds > 0.5) & (stds < 1.5)), stds
    # Contrast-invariant: scaling and shifting the input does not change the output.
    np.testing.assert_allclose(local_contrast_normalize(3 * x + 7).numpy(), out[..., 0], atol=1e-3)
    # A constant image maps to 0 (no division blow-up).
    np.testing.assert_allclose(local_contrast_normalize(np.ones((1, SIZE, SIZE))).numpy(), 0.0, atol=1e-5)


def test_local_contrast_normalization_matches_the_documented_formula():
    from scipy.ndimage import convolve

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (SIZE, SIZE)) + np.linspace(0, 3, SIZE)[None, :]
    offsets = np.arange(9) - 4
    g = np.exp(-0.5 * (offsets / 2.25) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()

    def smooth(t):
        return convolve(t, w, mode="constant", cval=0.0)

    c = smooth(np.ones_like(x))
    y = x - smooth(x) / c
    s = np.sqrt(smooth(y**2)) / c
    expected = y / np.maximum(np.maximum(s, s.mean()), 1e-4)
    np.testing.assert_allclose(local_contrast_normalize(x[None]).numpy()[0], expected, atol=1e-4)


def test_normalization_runs_in_a_tf_data_graph():
    import tensorflow as tf

    depth = np.full((4, SIZE, SIZE), 600.0, dtype=np.float32)
    depth[:, :4] = 0.0
    dataset = tf.data.Dataset.from_tensor_slices({"depth_mm": depth, "center_uvd": np.full((4, 3), 550.0, np.float32)})
    dataset = dataset.batch(2).map(
        lambda f: local_contrast_normalize(normalize_depth(f["depth_mm"], f["center_uvd"][:, 2])[..., None])
    )
    batches = list(dataset.as_numpy_iterator())
    assert [b.shape for b in batches] == [(2, SIZE, SIZE, 1)] * 2
    eager = local_contrast_normalize(normalize_depth(depth[:2], np.full(2, 550.0))[..., None]).numpy()
    np.testing.assert_allclose(batches[0], eager, atol=1e-5)


def _hand_with_holes():
    """A flat 600 mm square on empty background, with holes of 1, 2 and 2 x 2 pixels and a 1-pixel slit."""
    depth = np.zeros((1, SIZE, SIZE), np.float32)
    depth[0, 4:28, 4:28] = 600.0
    depth[0, 8, 8] = 0.0  # isolated: 8 neighbours with depth
    depth[0, 12, 12:14] = 0.0  # a pair: 7 each
    depth[0, 20:22, 20:22] = 0.0  # 2 x 2: 5 each, the rims first
    depth[0, 4:28, 16] = 0.0  # a slit through the square: 6 each inside, 3 at its ends
    return depth


def test_fill_holes_fills_holes_inside_the_surface_only():
    depth = _hand_with_holes()
    depth[0, 10, 24] = 650.0  # a neighbour with other depth: the fill is the neighbours' mean
    depth[0, 10, 25] = 0.0
    filled = fill_holes(depth, min_neighbours=6, passes=2).numpy()
    assert filled.shape == depth.shape and filled.dtype == np.float32
    assert filled[0, 8, 8] == 600.0 and np.all(filled[0, 12, 12:14] == 600.0)
    np.testing.assert_allclose(filled[0, 10, 25], (7 * 600.0 + 650.0) / 8, rtol=1e-6)
    # A 2 x 2 hole has 5 neighbours per pixel: left for a pass with a lower bar.
    assert np.all(filled[0, 20:22, 20:22] == 0.0)
    assert np.all(fill_holes(depth, min_neighbours=5, passes=1).numpy()[0, 20:22, 20:22] == 600.0)
    # The slit's inner pixels (6 neighbours) close; its ends at the silhouette (4, then 5) stay open.
    assert np.all(filled[0, 5:27, 16] == 600.0) and filled[0, 4, 16] == filled[0, 27, 16] == 0.0
    # The background, outside straight edges and at corners, stays empty.
    outside = np.ones((SIZE, SIZE), bool)
    outside[4:28, 4:28] = False
    assert np.all(filled[0][outside] == 0.0)


def test_fill_holes_passes_and_shapes():
    depth = _hand_with_holes()
    # A stricter bar leaves the slit open; 7 still takes the pair.
    strict = fill_holes(depth[..., None], min_neighbours=7, passes=1).numpy()
    assert strict.shape == (1, SIZE, SIZE, 1)
    assert strict[0, 12, 12, 0] == 600.0 and np.all(strict[0, 6:26, 16, 0] == 0.0)
    # 9 can never be reached (8 neighbours): the depth comes back unchanged.
    np.testing.assert_array_equal(fill_holes(depth, min_neighbours=9, passes=3).numpy(), depth)
