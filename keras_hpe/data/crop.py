"""The hand crop: a metric cube around the hand centre, seen through the NYU camera.

A cube of `cube_mm` (300 mm) around the centre (u, v, d) is projected at the
centre's depth to a square window [u0, v0, u1, v1] of the full 640 x 480 image
and sampled (nearest neighbour) to S x S; depth outside [d - cube/2, d + cube/2]
is set to 0. Pixel conventions: integer image coordinates are pixel *centres*
(image[v, u] is the depth seen along the ray through (u, v)), and crop pixel
(i, j) is the image point u = u0 + (j + 0.5)(u1 - u0)/S, v = v0 + (i + 0.5)(v1 - v0)/S,
so crop pixel coordinates of that point are exactly (j, i).

Model inputs are built from the crop with TensorFlow ops (`fill_holes`,
`normalize_depth`, `local_contrast_normalize`) so that tf.data pipelines and exported SavedModels
share one implementation; joints are regressed relative to the centre in units
of the half-cube (`joints_to_crop` / `crop_to_joints`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from keras_hpe.data.camera import NYU_CAMERA, Camera, xyz_to_uvd_tf
from keras_hpe.errors import UserError

if TYPE_CHECKING:
    import tensorflow as tf

CUBE_MM = 300.0
LCN_KERNEL = 9  # the paper's local contrast normalisation kernel size
# Predicted joints are clipped to this many half-cubes from the crop centre: a
# joint is never farther than a cube from the hand, and a poorly trained network
# can otherwise put joints behind the camera (depth <= 0), where uvd is undefined.
MAX_CROP_UNITS = 2.0
_COM_ITERATIONS = 10
# Hole filling before the segmentation network (`fill_holes`; ours, not the
# paper's). A depth camera leaves holes inside the hand (speckle decorrelation,
# IR-absorbing spots); normalised, a hole reads as a pit to the cube's back face,
# a spike that renders never show. On the sensor domain's eval split the quick
# run's stage-1 network labels 37.8% of hand pixels right as is and 56.3% with
# these holes filled, without retraining; random holes alone cost it 17 points
# on otherwise clean frames (`benchmarks/domain_gap_benchmark.py`). Trained and
# tested with the fill, a 10,000-frame stage 1 scores 46.4% on held-out
# synthetic frames (47.0% without) and 48.8% on a sensor validation split
# (35.7% without); filling at >= 5 or 6 neighbours, or in one pass, scored
# within a point of that (`benchmarks/seg_accuracy_benchmark.py --hole-fill`).
# >= 7 of 8 fills isolated holes and pairs but keeps one-pixel gaps between
# fingers (6 neighbours) open.
HOLE_MIN_NEIGHBOURS = 7
HOLE_PASSES = 2


def crop_window(
    center_uvd: np.ndarray, cube_mm: float = CUBE_MM, camera: Camera = NYU_CAMERA
) -> np.ndarray:
    """Return the (..., 4) window [u0, v0, u1, v1] of the cube around `center_uvd` (..., 3).

    The half-sizes are the cube's half-size projected at the centre depth:
    h_u = (cube/2) fx / d, h_v = (cube/2) fy / d.
    """
    center_uvd = np.asarray(center_uvd, dtype=np.float64)
    u, v, d = center_uvd[..., 0], center_uvd[..., 1], center_uvd[..., 2]
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise UserError(f"crop centre depth must be finite and > 0 mm, got {d}")
    half_u = 0.5 * cube_mm * camera.fx / d
    half_v = 0.5 * cube_mm * camera.fy / d
    return np.stack([u - half_u, v - half_v, u + half_u, v + half_v], axis=-1)


def uvd_to_crop(
    uvd: np.ndarray,
    center_uvd: np.ndarray,
    size: int,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> np.ndarray:
    """Map full-image uvd (..., N, 3) to crop pixel coordinates (column, row, depth mm).

    `center_uvd` is (..., 3), one centre per set of points.
    """
    uvd = np.asarray(uvd, dtype=np.float64)
    window = crop_window(center_uvd, cube_mm, camera)[..., None, :]
    col = (uvd[..., 0] - window[..., 0]) * size / (window[..., 2] - window[..., 0]) - 0.5
    row = (uvd[..., 1] - window[..., 1]) * size / (window[..., 3] - window[..., 1]) - 0.5
    return np.stack([col, row, uvd[..., 2]], axis=-1)


def crop_to_uvd(
    crop_px: np.ndarray,
    center_uvd: np.ndarray,
    size: int,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> np.ndarray:
    """Inverse of `uvd_to_crop`: crop (column, row, depth mm) (..., N, 3) -> full-image uvd."""
    crop_px = np.asarray(crop_px, dtype=np.float64)
    window = crop_window(center_uvd, cube_mm, camera)[..., None, :]
    u = window[..., 0] + (crop_px[..., 0] + 0.5) * (window[..., 2] - window[..., 0]) / size
    v = window[..., 1] + (crop_px[..., 1] + 0.5) * (window[..., 3] - window[..., 1]) / size
    return np.stack([u, v, crop_px[..., 2]], axis=-1)


def crop_image(
    image: np.ndarray,
    center_uvd: np.ndarray,
    size: int,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
    origin: tuple[float, float] = (0, 0),
) -> np.ndarray:
    """Sample the cube's window of `image` (H, W) to (size, size), nearest neighbour.

    `origin` is the full-image (u, v) of image[0, 0], so a sub-image of the
    640 x 480 frame can be passed. Samples falling outside the image are 0.
    Works for depth and label maps alike (the dtype is kept).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise UserError(f"crop_image expects an (H, W) image, got shape {image.shape}")
    u0, v0, u1, v1 = crop_window(center_uvd, cube_mm, camera)
    steps = (np.arange(size) + 0.5) / size
    # Integer coordinates are pixel centres, so the nearest pixel is round(u).
    cols = np.floor(u0 + steps * (u1 - u0) - origin[0] + 0.5).astype(np.int64)
    rows = np.floor(v0 + steps * (v1 - v0) - origin[1] + 0.5).astype(np.int64)
    col_ok = (cols >= 0) & (cols < image.shape[1])
    row_ok = (rows >= 0) & (rows < image.shape[0])
    out = image[np.clip(rows, 0, image.shape[0] - 1)[:, None], np.clip(cols, 0, image.shape[1] - 1)[None, :]]
    return np.where(row_ok[:, None] & col_ok[None, :], out, np.zeros((), dtype=image.dtype))


def clip_to_cube(depth_mm: np.ndarray, center_d_mm, cube_mm: float = CUBE_MM) -> np.ndarray:
    """Set depth outside [d - cube/2, d + cube/2] to 0 (no data).

    `center_d_mm` is a scalar or has the leading shape of `depth_mm` (e.g. (B,)).
    """
    depth_mm = np.asarray(depth_mm)
    center = _expand_to(np.asarray(center_d_mm, dtype=np.float64), depth_mm.ndim)
    inside = np.abs(depth_mm - center) <= 0.5 * cube_mm
    return np.where(inside, depth_mm, np.zeros((), dtype=depth_mm.dtype))


def crop_depth(
    depth_mm: np.ndarray,
    center_uvd: np.ndarray,
    size: int,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
    origin: tuple[float, float] = (0, 0),
) -> np.ndarray:
    """Crop a depth map (H, W) in mm around `center_uvd` to (size, size) float32, clipped to the cube."""
    depth_mm = _check_depth(depth_mm)
    center_uvd = np.asarray(center_uvd, dtype=np.float64)
    crop = crop_image(depth_mm, center_uvd, size, cube_mm, camera, origin)
    return clip_to_cube(crop, center_uvd[2], cube_mm).astype(np.float32)


def recrop_depth(
    depth_mm,
    center_uvd,
    new_center_xyz,
    cube_mm: float,
    new_cube_mm: float,
    camera: Camera = NYU_CAMERA,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Re-sample crops (B, S, S) to the cube of `new_cube_mm` around the points `new_center_xyz` (B, 3) mm.

    The crop of another cube made from the stored crop alone (the cascade's
    second step, `training.reg_data`): each pixel of the new window takes the
    stored pixel nearest to it (0 outside the stored crop), and depth outside
    the new cube is set to 0, as `crop_depth` does on a full frame.
    `center_uvd` (B, 3) are the stored crops' centres. Returns the new crops
    (B, S, S) float32 and their centres (B, 3) uvd. TF ops, so the tf.data
    pipelines and the exported graphs share it.
    """
    import tensorflow as tf

    depth_mm = tf.convert_to_tensor(depth_mm, dtype=tf.float32)
    center_uvd = tf.convert_to_tensor(center_uvd, dtype=tf.float32)
    new_center_uvd = xyz_to_uvd_tf(tf.convert_to_tensor(new_center_xyz, dtype=tf.float32), camera)
    size = depth_mm.shape[-1]
    # New pixel j's centre, relative to the new window's centre, in units of the window's side.
    offsets = tf.constant((np.arange(size) + 0.5) / size - 0.5, dtype=tf.float32)
    # The windows' half-sizes are h = (cube / 2) f / d; the stored crop's coordinate of new pixel j,
    # plus 1/2, is S ((u' - u) / 2h + 1/2 + (h' / h) offsets[j]). Ratios only: a LiteRT float16 export
    # stores the graph's constants in float16, and (cube / 2) f (88,000) is beyond its range (65,504).
    scale = (new_cube_mm / cube_mm) * center_uvd[:, 2:] / new_center_uvd[:, 2:]

    def stored_index(axis: int, focal: float) -> tf.Tensor:
        """(B, S) index along `axis` (0: u, columns; 1: v, rows) of the stored pixel nearest each new pixel."""
        shift = (new_center_uvd[:, axis : axis + 1] - center_uvd[:, axis : axis + 1]) * (center_uvd[:, 2:] / cube_mm)
        # Integer crop coordinates are pixel centres, so the nearest stored pixel is round(x) = floor(x + 1/2).
        return tf.cast(tf.floor(size * (shift / focal + 0.5 + scale * offsets)), tf.int32)

    rows, cols = stored_index(1, camera.fy), stored_index(0, camera.fx)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    # Pixel (r, c) of frame b is element (b S + r) S + c of the flattened batch.
    rows, cols = tf.clip_by_value(rows, 0, size - 1), tf.clip_by_value(cols, 0, size - 1)
    frames = tf.range(tf.shape(depth_mm)[0])[:, None, None] * (size * size)
    flat = frames + rows[:, :, None] * size + cols[:, None, :]
    sampled = tf.gather(tf.reshape(depth_mm, [-1]), flat)
    in_cube = tf.abs(sampled - new_center_uvd[:, 2, None, None]) <= 0.5 * new_cube_mm
    return tf.where(inside & in_cube, sampled, tf.zeros_like(sampled)), new_center_uvd


def center_of_mass_uvd(
    depth_mm: np.ndarray,
    camera: Camera = NYU_CAMERA,
    origin: tuple[float, float] = (0, 0),
    cube_mm: float = CUBE_MM,
) -> np.ndarray:
    """The hand centre (u, v, d) as the centre of mass of the valid depth pixels.

    As in DeepPrior (Oberweger et al.): the hand is the object closest to the
    camera, so start from the mean (u, v, d) of the valid pixels less than
    `cube_mm` behind the nearest one, then refine a few times keeping only the
    pixels inside the cube around the current estimate (projected window and
    depth range), so that background or a forearm pulls the centre less.
    `origin` is the full-image (u, v) of depth_mm[0, 0].

    A refinement looks only at the image rows and columns of the window, not
    at every pixel: the same pixels in the same order, so the same centre to
    the bit (64 simulated NYU frames, and windows of them), 3.1x faster on
    640 x 480 frames with a room behind the hand (9.9 to 3.2 ms; it was most
    of `keras-hpe predict`'s time per frame).
    """
    depth_mm = _check_depth(depth_mm)
    valid = depth_mm > 0
    if not valid.any():
        raise UserError("cannot find the hand centre: the depth map has no valid (> 0) pixel")
    center = _points(depth_mm, valid & (depth_mm <= depth_mm[valid].min() + cube_mm), origin).mean(axis=0)
    for _ in range(_COM_ITERATIONS):
        u0, v0, u1, v1 = crop_window(center, cube_mm, camera)
        # The window's rows and columns, a pixel wider than it on each side; the test below is exact.
        rows = slice(*np.clip([np.floor(v0 - origin[1]) - 1, np.ceil(v1 - origin[1]) + 2], 0, depth_mm.shape[0]))
        cols = slice(*np.clip([np.floor(u0 - origin[0]) - 1, np.ceil(u1 - origin[0]) + 2], 0, depth_mm.shape[1]))
        window = depth_mm[int(rows.start) : int(rows.stop), int(cols.start) : int(cols.stop)]
        points = _points(window, window > 0, (origin[0] + cols.start, origin[1] + rows.start))
        inside = (
            (points[:, 0] >= u0) & (points[:, 0] <= u1)
            & (points[:, 1] >= v0) & (points[:, 1] <= v1)
            & (np.abs(points[:, 2] - center[2]) <= 0.5 * cube_mm)
        )
        if not inside.any():
            break
        refined = points[inside].mean(axis=0)
        if np.allclose(refined, center):
            break
        center = refined
    return center


def _points(depth_mm: np.ndarray, mask: np.ndarray, origin: tuple[float, float]) -> np.ndarray:
    """(N, 3) float64 (u, v, d) of the pixels of `mask`, row by row; `origin` is the (u, v) of depth_mm[0, 0]."""
    rows, cols = np.nonzero(mask)
    return np.stack([cols + origin[0], rows + origin[1], depth_mm[rows, cols]], axis=-1).astype(np.float64)


def normalize_depth(depth_mm, center_d_mm, cube_mm: float = CUBE_MM) -> tf.Tensor:
    """Scale depth to [-1, 1] around the centre depth: (d - centre) / (cube/2), clipped.

    Missing depth (0) becomes +1 (as far as the cube's back face). `depth_mm` is
    (B, S, S) or (B, S, S, 1) (or a single frame with a scalar centre);
    `center_d_mm` has the leading shape, e.g. (B,). TensorFlow ops, so this runs
    in tf.data and inside exported graphs; NumPy input is accepted. Returns a
    float32 tf.Tensor.
    """
    import tensorflow as tf

    depth_mm = tf.convert_to_tensor(depth_mm, dtype=tf.float32)
    center = tf.convert_to_tensor(center_d_mm, dtype=tf.float32)
    # One centre per frame: append axes so it broadcasts over the frame's pixels.
    extra_axes = tf.ones([tf.rank(depth_mm) - tf.rank(center)], tf.int32)
    center = tf.reshape(center, tf.concat([tf.shape(center), extra_axes], 0))
    scaled = tf.clip_by_value((depth_mm - center) / (0.5 * cube_mm), -1.0, 1.0)
    return tf.where(depth_mm > 0, scaled, tf.ones_like(scaled))


def fill_holes(depth_mm, min_neighbours: int = HOLE_MIN_NEIGHBOURS, passes: int = HOLE_PASSES) -> tf.Tensor:
    """Fill missing depth (0) that valid depth surrounds: the mean of the valid 3 x 3 neighbours.

    A pixel without depth is filled when at least `min_neighbours` of its 8
    neighbours have depth; `passes` rounds let holes shrink from their rims.
    Background stays empty: a pixel outside a straight silhouette has 3 valid
    neighbours, one in a concave corner 5. `depth_mm` is (B, S, S) or
    (B, S, S, 1); returns a float32 tf.Tensor of the same shape (TF ops, for
    tf.data and exported graphs alike).
    """
    import tensorflow as tf

    depth = tf.convert_to_tensor(depth_mm, dtype=tf.float32)
    squeeze = depth.shape.rank == 3
    if squeeze:
        depth = depth[..., None]
    ones = tf.ones((3, 3, 1, 1), dtype=tf.float32)
    for _ in range(passes):
        valid = tf.cast(depth > 0, tf.float32)
        total = tf.nn.conv2d(depth * valid, ones, strides=1, padding="SAME")
        count = tf.nn.conv2d(valid, ones, strides=1, padding="SAME")
        depth = tf.where((valid == 0) & (count >= min_neighbours), total / tf.maximum(count, 1.0), depth)
    return depth[..., 0] if squeeze else depth


def local_contrast_normalize(x, kernel: int = LCN_KERNEL) -> tf.Tensor:
    """Torch7-style local contrast normalisation (SpatialContrastiveNormalization).

    With w a kernel x kernel Gaussian (sigma = 0.25 * kernel px, as Torch7's
    `image.gaussian`) normalised to sum 1, `*` a zero-padded 'same' convolution
    and c = w * 1 the edge correction (1 inside, < 1 near borders):

        m     = (w * x) / c                      # local mean
        y     = x - m                            # subtractive step
        s     = sqrt(w * y^2) / c                # local standard deviation
        s_bar = mean of s over the image          # per image
        out   = y / max(s, s_bar, 1e-4)          # divisive step

    (Torch7 divides the square root by c, not the variance, so s is larger
    near the borders; kept as is to match the paper's implementation.)

    The Gaussian is separable: w * t is a vertical then a horizontal 1-D
    convolution (2 x 9 taps a pixel instead of 81); on 1,000 test crops the
    output moved by 1e-5 at most (float32 rounding). c is computed at run
    time from ones shaped like the input, not from a constant TensorFlow can
    fold: with the folded constant, a network trained after a restoration in
    the same process ended with other weights than one trained in a fresh
    process (tests/test_train_seg.py's resume test, run after test_beam.py).

    `x` is (B, S, S) or (B, S, S, 1); returns a float32 tf.Tensor of the same shape.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x, dtype=tf.float32)
    squeeze = x.shape.rank == 3
    if squeeze:
        x = x[..., None]
    taps = _gaussian_taps(kernel)
    column = tf.constant(taps[:, None, None, None], dtype=tf.float32)
    row = tf.constant(taps[None, :, None, None], dtype=tf.float32)

    def smooth(t):
        return tf.nn.conv2d(tf.nn.conv2d(t, column, strides=1, padding="SAME"), row, strides=1, padding="SAME")

    coef = smooth(tf.ones_like(x[:1]))
    centered = x - smooth(x) / coef
    local_std = tf.sqrt(tf.maximum(smooth(tf.square(centered)), 0.0)) / coef
    mean_std = tf.reduce_mean(local_std, axis=[1, 2, 3], keepdims=True)
    out = centered / tf.maximum(tf.maximum(local_std, mean_std), 1e-4)
    return out[..., 0] if squeeze else out


def joints_to_crop(joints_xyz, center_xyz, cube_mm: float = CUBE_MM):
    """Joints (..., J, 3) in mm -> relative to the centre (..., 3), in half-cube units."""
    joints_xyz, center_xyz = _as_arrays(joints_xyz, center_xyz)
    return (joints_xyz - center_xyz[..., None, :]) / (0.5 * cube_mm)


def crop_to_joints(normalized, center_xyz, cube_mm: float = CUBE_MM):
    """Inverse of `joints_to_crop`: half-cube units (..., J, 3) -> xyz mm."""
    normalized, center_xyz = _as_arrays(normalized, center_xyz)
    return normalized * (0.5 * cube_mm) + center_xyz[..., None, :]


def _as_arrays(*values):
    """Keep tensors as they are (graph code); turn anything else into float64 arrays."""
    # TensorFlow is imported lazily (renderers and the CLI start faster without it);
    # if nobody imported it, no value can be a tensor.
    tf = sys.modules.get("tensorflow")
    return tuple(v if tf is not None and tf.is_tensor(v) else np.asarray(v, dtype=np.float64) for v in values)


def _expand_to(center: np.ndarray, ndim: int) -> np.ndarray:
    """Append axes to a per-frame value so it broadcasts over the frame's pixels."""
    return center.reshape(center.shape + (1,) * (ndim - center.ndim))


def _check_depth(depth_mm: np.ndarray) -> np.ndarray:
    depth_mm = np.asarray(depth_mm)
    if depth_mm.ndim != 2:
        raise UserError(f"depth map must be (H, W), got shape {depth_mm.shape}")
    if not np.all(np.isfinite(depth_mm)):
        raise UserError("depth map has NaN or infinite values (expected mm >= 0, 0 = no data)")
    if np.any(depth_mm < 0):
        raise UserError("depth map has negative values (expected mm >= 0, 0 = no data)")
    return depth_mm


def _gaussian_taps(size: int) -> np.ndarray:
    """The 1-D factor of Torch7's `image.gaussian(size)` (sigma = 0.25 * size), normalised to sum 1."""
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (offsets / (0.25 * size)) ** 2)
    return g / g.sum()
