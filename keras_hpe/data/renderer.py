"""Analytic ray casting of capsules, tapered capsules and ellipsoids into depth and part-label maps.

The camera sits at the origin (NYU pinhole model); the ray of pixel (i, j) of a
window [u0, v0, u1, v1] rendered at W x H goes through the image point
u = u0 + (j + 0.5)(u1 - u0)/W, v = v0 + (i + 0.5)(v1 - v0)/H, with direction
((u - cx)/fx, (cy - v)/fy, 1), so the ray parameter t of a hit is its depth in mm.

Vectorised over (pixel, solid) pairs: each solid's conservative bounding box is
projected to the window, only the pixels inside it are tested (a ragged list of
pairs built with np.repeat), and the nearest hit per pixel wins (np.minimum.at).
A batch of frames (leading dimensions of the solids and the window) renders in
one call, which amortises NumPy's per-call overhead. To render a whole camera
image with integer pixel coordinates at pixel centres (as crop.py assumes), use
`full_image_window(camera)` at camera.width x camera.height.
"""

from __future__ import annotations

import numpy as np

from keras_hpe.data.camera import NYU_CAMERA, Camera
from keras_hpe.data.solids import Solids
from keras_hpe.errors import UserError

_MIN_DEPTH_MM = 1.0  # solids must lie this far in front of the camera


def render(
    solids: Solids,
    window: tuple[float, float, float, float] | np.ndarray,
    width: int,
    height: int,
    camera: Camera = NYU_CAMERA,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast `solids` over `window` (u0, v0, u1, v1) at `width` x `height` pixels.

    Solids and window may have matching leading batch dimensions "...".
    Returns depth_mm float32 (..., H, W) with 0 where no solid is hit, and
    labels uint8 (..., H, W) with the part id of the nearest solid (0 where
    depth is 0, and for solids labelled 0).
    """
    if width < 1 or height < 1:
        raise UserError(f"render size must be >= 1 x 1 pixels, got {width} x {height}")
    batch = solids.capsule_a.shape[:-2]
    window = np.broadcast_to(np.asarray(window, dtype=np.float64), (*batch, 4)).reshape(-1, 4)
    if np.any(window[:, 2] <= window[:, 0]) or np.any(window[:, 3] <= window[:, 1]):
        raise UserError(f"render window must have u1 > u0 and v1 > v0, got {window.tolist()}")
    n = len(window)
    # Ray directions per column (x/z) and per row (y/z) of every frame.
    cols = (np.arange(width) + 0.5) / width
    rows = (np.arange(height) + 0.5) / height
    ray_x = (window[:, :1] + cols * (window[:, 2:3] - window[:, :1]) - camera.cx) / camera.fx
    ray_y = (camera.cy - (window[:, 1:2] + rows * (window[:, 3:4] - window[:, 1:2]))) / camera.fy

    a = solids.capsule_a.reshape(n, -1, 3)
    b = solids.capsule_b.reshape(n, -1, 3)
    r = solids.capsule_radius_mm.reshape(n, -1)
    center = solids.ellipsoid_center.reshape(n, -1, 3)
    axes = solids.ellipsoid_axes.reshape(n, -1, 3, 3)
    radii = solids.ellipsoid_radii_mm.reshape(n, -1, 3)

    # Each solid's axis-aligned box in the camera frame (low and high corners) selects its pixels.
    extent = np.sqrt(np.einsum("nkij,nkj->nki", axes**2, radii**2))
    capsule_pairs = _pairs(np.minimum(a, b) - r[..., None], np.maximum(a, b) + r[..., None], window, width, height, camera)
    ellipsoid_pairs = _pairs(center - extent, center + extent, window, width, height, camera)
    hits = [
        (*_cast_capsules(a, b, r, *capsule_pairs, ray_x, ray_y), solids.capsule_labels),
        (*_cast_ellipsoids(center, axes, radii, *ellipsoid_pairs, ray_x, ray_y), solids.ellipsoid_labels),
    ]
    if solids.tapered_labels.size:
        ta = solids.tapered_a.reshape(n, -1, 3)
        tb = solids.tapered_b.reshape(n, -1, 3)
        ra = solids.tapered_radius_a_mm.reshape(n, -1)
        rb = solids.tapered_radius_b_mm.reshape(n, -1)
        low = np.minimum(ta - ra[..., None], tb - rb[..., None])
        high = np.maximum(ta + ra[..., None], tb + rb[..., None])
        tapered_pairs = _pairs(low, high, window, width, height, camera)
        hits.append((*_cast_tapered_capsules(ta, tb, ra, rb, *tapered_pairs, ray_x, ray_y), solids.tapered_labels))
    pixel = np.concatenate([hit[0] for hit in hits])
    depth = np.concatenate([hit[1] for hit in hits])
    label = np.concatenate([part_ids.astype(np.uint8)[solid] for _, _, solid, part_ids in hits])

    depth_mm = np.full(n * height * width, np.inf)
    np.minimum.at(depth_mm, pixel, depth)
    labels = np.zeros(n * height * width, dtype=np.uint8)
    nearest = depth == depth_mm[pixel]
    labels[pixel[nearest]] = label[nearest]
    depth_mm[np.isinf(depth_mm)] = 0.0
    shape = (*batch, height, width)
    return depth_mm.astype(np.float32).reshape(shape), labels.reshape(shape)


def full_image_window(camera: Camera = NYU_CAMERA) -> tuple[float, float, float, float]:
    """The window whose render at camera.width x camera.height has pixel (i, j) looking through (u, v) = (j, i)."""
    return (-0.5, -0.5, camera.width - 0.5, camera.height - 0.5)


def _pairs(
    low: np.ndarray, high: np.ndarray, window: np.ndarray, width: int, height: int, camera: Camera
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enumerate (frame, solid, row, col) for every pixel whose ray may hit a solid's box.

    `low`, `high` are (n, K, 3) box corners. x/z over a box is extremal at a
    corner, so the box's image is bounded by the four (x, z) and (y, z) corner ratios.
    """
    if np.any(low[..., 2] < _MIN_DEPTH_MM):
        raise UserError(f"solids must lie in front of the camera (z - radius >= {_MIN_DEPTH_MM} mm)")
    z = np.stack([low[..., 2], high[..., 2]], axis=-1)[..., None, :]
    ratio_x = np.stack([low[..., 0], high[..., 0]], axis=-1)[..., :, None] / z
    ratio_y = np.stack([low[..., 1], high[..., 1]], axis=-1)[..., :, None] / z
    u_low = camera.cx + camera.fx * ratio_x.min(axis=(-1, -2))
    u_high = camera.cx + camera.fx * ratio_x.max(axis=(-1, -2))
    v_low = camera.cy - camera.fy * ratio_y.max(axis=(-1, -2))
    v_high = camera.cy - camera.fy * ratio_y.min(axis=(-1, -2))
    # Pixel j's ray passes through u0 + (j + 0.5) du: the columns whose ray lies in [u_low, u_high].
    du = ((window[:, 2] - window[:, 0]) / width)[:, None]
    dv = ((window[:, 3] - window[:, 1]) / height)[:, None]
    col0 = np.clip(np.ceil((u_low - window[:, :1]) / du - 0.5), 0, width).astype(np.int64)
    col1 = np.clip(np.floor((u_high - window[:, :1]) / du - 0.5) + 1, 0, width).astype(np.int64)
    row0 = np.clip(np.ceil((v_low - window[:, 1:2]) / dv - 0.5), 0, height).astype(np.int64)
    row1 = np.clip(np.floor((v_high - window[:, 1:2]) / dv - 0.5) + 1, 0, height).astype(np.int64)
    box_w = np.maximum(col1 - col0, 0).ravel()
    count = box_w * np.maximum(row1 - row0, 0).ravel()
    box = np.repeat(np.arange(count.size), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    n_solids = low.shape[1]
    frame, solid = np.divmod(box, n_solids)
    row = row0.ravel()[box] + offset // box_w[box]
    col = col0.ravel()[box] + offset % box_w[box]
    return frame, solid, row, col


def _cast_capsules(
    a: np.ndarray,
    b: np.ndarray,
    r: np.ndarray,
    frame: np.ndarray,
    solid: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    ray_x: np.ndarray,
    ray_y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hits of pixel rays with capsules: (flat pixel index, depth mm, solid index).

    A capsule is the union of a cylinder body and two end spheres, so its first
    hit is the nearest of the three (ray origin at 0, direction d = (x, y, 1)).
    """
    height, width = ray_y.shape[1], ray_x.shape[1]
    pa, ba, radius = a[frame, solid], (b - a)[frame, solid], r[frame, solid]
    dx, dy = ray_x[frame, col], ray_y[frame, row]
    dd = dx * dx + dy * dy + 1.0
    da = pa[:, 0] * dx + pa[:, 1] * dy + pa[:, 2]  # d . a
    dba = ba[:, 0] * dx + ba[:, 1] * dy + ba[:, 2]  # d . (b - a)
    aa = np.einsum("ij,ij->i", pa, pa)
    baba = np.einsum("ij,ij->i", ba, ba)
    baa = np.einsum("ij,ij->i", ba, pa)
    rr = radius * radius
    # Body: |(t d - a) x (b - a)|^2 = r^2 |b - a|^2 with 0 < (t d - a).(b - a) < |b - a|^2.
    qa = baba * dd - dba * dba
    qb = baba * da - baa * dba
    qc = baba * aa - baa * baa - rr * baba
    disc = qb * qb - qa * qc
    with np.errstate(invalid="ignore", divide="ignore"):
        t_body = (qb - np.sqrt(disc)) / qa
        along = t_body * dba - baa
        body_ok = (disc >= 0) & (qa > 1e-9 * baba * dd) & (along > 0) & (along < baba)
        t = np.where(body_ok, t_body, np.inf)
        # End spheres at a and b: |t d - c|^2 = r^2, nearest root (d.c - sqrt(.)) / (d.d).
        for dc, cc in ((da, aa), (da + dba, np.einsum("ij,ij->i", pa + ba, pa + ba))):
            disc = dc * dc - dd * (cc - rr)
            t = np.where(disc >= 0, np.minimum(t, (dc - np.sqrt(disc)) / dd), t)
    hit = np.isfinite(t)
    return (frame * height + row)[hit] * width + col[hit], t[hit], solid[hit]


def _cast_tapered_capsules(
    a: np.ndarray,
    b: np.ndarray,
    ra: np.ndarray,
    rb: np.ndarray,
    frame: np.ndarray,
    solid: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    ray_x: np.ndarray,
    ray_y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hits of pixel rays with tapered capsules, as `_cast_capsules`.

    The hull of the spheres (a, ra) and (b, rb) is the two spheres and the cone
    tangent to both: with the axis w = (b - a)/L, axial h = (p - a).w, radial rho
    and sin(beta) = (ra - rb)/L, the cone is rho cos(beta) + h sin(beta) = ra,
    between the circles where it touches the spheres, h in (ra sin(beta),
    L + rb sin(beta)). Both roots of the cone's quadric along the ray are tried
    (the nearer may lie on the mirrored nappe beyond the apex).
    """
    height, width = ray_y.shape[1], ray_x.shape[1]
    # Per solid, what does not depend on the ray, gathered per pair in one table.
    length = np.linalg.norm(b - a, axis=-1)
    w = (b - a) / length[..., None]
    sin = (ra - rb) / length
    cos2 = 1.0 - sin * sin
    aa = np.einsum("nki,nki->nk", a, a)
    aw = np.einsum("nki,nki->nk", a, w)
    e = ra + sin * aw
    columns = [
        *np.moveaxis(a, -1, 0), *np.moveaxis(b, -1, 0), *np.moveaxis(w, -1, 0),
        cos2, aw, e * sin,
        cos2 * (aa - aw * aw) - e * e,  # qc of the cone's quadric below
        aa - ra * ra, np.einsum("nki,nki->nk", b, b) - rb * rb,  # |c|^2 - r^2 of the two spheres
        aw + ra * sin, aw + length + rb * sin,  # the band as t (d . w) = h + a . w
    ]
    per_pair = np.stack(columns, axis=-1)[frame, solid]
    pa, pb, pw = per_pair[:, 0:3], per_pair[:, 3:6], per_pair[:, 6:9]
    cos2, aw, es, qc, ca, cb, band_low, band_high = per_pair[:, 9:].T
    dx, dy = ray_x[frame, col], ray_y[frame, row]
    dd = dx * dx + dy * dy + 1.0
    da = pa[:, 0] * dx + pa[:, 1] * dy + pa[:, 2]  # d . a
    db = pb[:, 0] * dx + pb[:, 1] * dy + pb[:, 2]  # d . b
    dw = pw[:, 0] * dx + pw[:, 1] * dy + pw[:, 2]  # d . w
    # cos^2(beta) rho^2 = (ra - h sin(beta))^2 along p = t d: qa t^2 + 2 qb t + qc = 0.
    qa = cos2 * dd - dw * dw
    qb = cos2 * (dw * aw - da) + es * dw
    disc = qb * qb - qa * qc
    t = np.full(len(frame), np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(disc)
        for sign in (-1.0, 1.0):
            t_cone = (sign * root - qb) / qa
            along = t_cone * dw
            on_cone = (disc >= 0) & (np.abs(qa) > 1e-9 * dd) & (along > band_low) & (along < band_high) & (t_cone > 0)
            t = np.where(on_cone, np.minimum(t, t_cone), t)
        # The spheres at a and b: nearest root of |t d - c|^2 = r^2, as in `_cast_capsules`.
        for dc, cc in ((da, ca), (db, cb)):
            disc = dc * dc - dd * cc
            t = np.where(disc >= 0, np.minimum(t, (dc - np.sqrt(disc)) / dd), t)
    hit = np.isfinite(t)
    return (frame * height + row)[hit] * width + col[hit], t[hit], solid[hit]


def _cast_ellipsoids(
    center: np.ndarray,
    axes: np.ndarray,
    radii: np.ndarray,
    frame: np.ndarray,
    solid: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    ray_x: np.ndarray,
    ray_y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hits of pixel rays with ellipsoids, as `_cast_capsules`.

    In the ellipsoid's unit-sphere coordinates p' = A^T (p - c) with
    A = axes / radii, the ray is t D - C' (D = A^T d, C' = A^T c): |t D - C'| = 1.
    """
    height, width = ray_y.shape[1], ray_x.shape[1]
    scaled = axes / radii[..., None, :]
    c_local = np.einsum("nkij,nki->nkj", scaled, center)
    m, cl = scaled[frame, solid], c_local[frame, solid]
    dx, dy = ray_x[frame, col], ray_y[frame, row]
    d_local = m[:, 0, :] * dx[:, None] + m[:, 1, :] * dy[:, None] + m[:, 2, :]
    qa = np.einsum("ij,ij->i", d_local, d_local)
    qb = np.einsum("ij,ij->i", d_local, cl)
    qc = np.einsum("ij,ij->i", cl, cl) - 1.0
    disc = qb * qb - qa * qc
    hit = disc >= 0
    t = (qb[hit] - np.sqrt(disc[hit])) / qa[hit]
    return (frame * height + row)[hit] * width + col[hit], t, solid[hit]
