"""The `sensor` domain ("simulated real"): a stand-in for the NYU Hand Pose Dataset.

NYU frames come from a structured-light camera (Kinect 1 / PrimeSense): an IR
projector casts a speckle pattern, the IR camera beside it (baseline b)
correlates small windows of the pattern with a reference image, and depth is
z = f b / disparity. Everything that makes such depth maps hard for a model
trained on clean renders follows from that principle, and `apply_sensor_model`
simulates it on a clean depth map at the camera's native pixel resolution:

1. projector shadows: surface points the camera sees but the projector does not
   (on the side of a foreground edge away from the projector) get no pattern,
   hence no depth;
2. grazing surfaces: the pattern is smeared where the surface turns away from
   the camera, the correlation fails, the pixel is dropped;
3. lateral smoothing: disparity is a window correlation, so it is a local
   average of the true disparity (this also blends depths across edges);
4. flying pixels: pixels on the near side of a depth edge get a depth between
   the two surfaces;
5. axial noise: Gaussian noise on the disparity, so the depth noise grows as z^2;
6. quantisation: disparity is reported in 1/8 pixel steps, so depth comes in
   steps of z^2 / (8 f b);
7. drop-outs: random holes and pixels along silhouettes and depth edges, where
   the correlation window straddles two surfaces and the match is rejected;
8. the working range of the disparity search.

All numbers are in `SensorConfig`, each with its physical reason. They were
chosen from the sensor literature before any experiment and are never tuned
to what the method does on this domain (DESIGN.md, "Data", point 2).

The domain also differs from `synth` in its hands: another forearm (this
domain's own, `hand_solids(forearm=True)`; both domains label it not hand),
another shape distribution, another pose prior and NYU-like viewpoints and distances
(`SENSOR_SHAPE_PRIOR`, `SENSOR_POSE_PRIOR`, `SENSOR_VIEW_PRIOR`). The crop
centre is the centre of mass of the noisy depth inside a hand-detector box, as
on real data, not the ground truth.

References:
- K. Khoshelham, S. O. Elberink, "Accuracy and resolution of Kinect depth data
  for indoor mapping applications", Sensors 12(2), 2012.
- C. V. Nguyen, S. Izadi, D. Lovell, "Modeling Kinect sensor noise for improved
  3D reconstruction and tracking", 3DIMPVT 2012.
- J. Smisek, M. Jancosek, T. Pajdla, "3D with Kinect", ICCV Workshops 2011.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from keras_hpe.data.camera import NYU_CAMERA, Camera, xyz_to_uvd
from keras_hpe.data.crop import CUBE_MM, center_of_mass_uvd, crop_depth, crop_image, crop_window
from keras_hpe.data.dataset import Manifest, generate_dataset
from keras_hpe.data.hand_model import PosePrior, ShapePrior, ViewPrior, sample_hands
from keras_hpe.data.renderer import render
from keras_hpe.data.solids import hand_solids
from keras_hpe.errors import UserError

if TYPE_CHECKING:
    from keras_hpe.beam import BeamRunner

# The hands of this domain differ from `synth` (hand_model defaults) the way NYU's do.
# NYU's training set is one adult male subject (its test set adds a second): larger
# hands in a narrower size range, fleshier (wider fingers, thicker, softer palm).
SENSOR_SHAPE_PRIOR = ShapePrior(
    scale_range=(0.95, 1.15),
    finger_length_range=(0.9, 1.05),
    bone_length_sd=0.05,
    finger_width_range=(1.0, 1.25),
    palm_width_range=(0.95, 1.15),
    palm_thickness_range=(1.0, 1.3),
)
# NYU sequences are gestures and free finger motion in front of the body: mostly
# open hands, counting / pointing shapes, fewer fists and random poses, with
# larger natural spread around each shape.
SENSOR_POSE_PRIOR = PosePrior(
    family_weights={"uniform": 0.15, "open": 0.35, "point": 0.2, "pinch": 0.1, "grasp": 0.1, "fist": 0.1},
    noise_deg=15.0,
    dip_noise_deg=6.0,
)
# NYU viewpoints: a frontal camera, the subject facing it, the forearm coming from
# below (fingers roughly up, in-plane rotation limited), palm or back towards the
# camera, the hand 500-1100 mm away, anywhere in the middle of the 640 x 480 frame.
SENSOR_VIEW_PRIOR = ViewPrior(
    roll_deg=(-70.0, 70.0),
    out_of_plane_deg=50.0,
    back_facing_probability=0.4,
    distance_mm=(500.0, 1100.0),
    u_px=(180.0, 460.0),
    v_px=(130.0, 350.0),
)
# The centre of mass is taken inside the crop cube's window around the true hand
# centre: the box a hand detector gives (DeepPrior-style NYU pipelines), so that
# the forearm pulls the centre towards the wrist, but not all the way along it.
DETECTOR_CUBE_FACTOR = 1.0
# The native window rendered per frame covers a cube this much larger than the
# crop's around the true hand centre, so the crop around the centre of mass
# (tens of mm off) lies inside it and the forearm runs on to the crop's border.
WINDOW_CUBE_FACTOR = 1.6


def _range(low: float, high: float) -> dict:
    """Field metadata: the closed interval of physically meaningful values."""
    return {"range": (low, high)}


@dataclass(frozen=True)
class SensorConfig:
    """The structured-light sensor model (Kinect 1 defaults), one field per physical effect.

    Override any subset of fields from a JSON file with `SensorConfig.from_json`
    to model another camera; `to_dict()` gives the values for a manifest.
    """

    # IR projector to IR camera distance; the projector sits on the +u side of
    # the camera, so shadows fall on the -u side of foreground edges.
    # Kinect 1: b ~ 75 mm (Khoshelham & Elberink 2012; Smisek et al. 2011).
    baseline_mm: float = field(default=75.0, metadata=_range(10.0, 500.0))
    # Disparity is reported as integers in 1/8 pixel (Khoshelham & Elberink
    # 2012): depth steps of z^2 / (8 f b), ~2.9 mm at 1 m with f ~ 580 px
    # (f is the camera's fx: 588 px for NYU's calibration of the same sensor).
    disparity_step_px: float = field(default=0.125, metadata=_range(0.0, 1.0))
    # Standard deviation of the disparity noise. Khoshelham & Elberink 2012:
    # sigma_z = z^2 sigma_d / (f b), reaching ~4 cm at 5 m, i.e. sigma_d ~ 0.07 px;
    # Nguyen et al. 2012 measure ~1.5-2 mm at 1 m, the same order.
    disparity_noise_px: float = field(default=0.07, metadata=_range(0.0, 2.0))
    # Gaussian sigma of the lateral smoothing of disparity: the correlation
    # window (9 x 9 on the 1280 x 1024 IR sensor, ~4.5 px at 640 x 480) averages
    # neighbouring disparities; Nguyen et al. 2012 measure a lateral spread of
    # ~0.8 px on near-frontal surfaces.
    lateral_sigma_px: float = field(default=0.8, metadata=_range(0.0, 5.0))
    # Neighbouring disparities that differ by more than this belong to two
    # surfaces (a depth edge): one correlation window cannot match both.
    # 1 px ~ 11 mm at 700 mm, more than a 70-degree slope changes per pixel.
    edge_jump_px: float = field(default=1.0, metadata=_range(0.1, 100.0))
    # Width of the band along silhouettes and depth edges where the correlation
    # window straddles two surfaces: half the ~4.5 px window.
    edge_band_px: int = field(default=2, metadata=_range(1, 10))
    # Probability that a pixel in that band fails the match and is dropped:
    # Kinect silhouettes are ragged by 1-2 px (Nguyen et al. 2012, lateral noise).
    edge_dropout: float = field(default=0.3, metadata=_range(0.0, 1.0))
    # Probability that a pixel on the near side of a depth edge is a flying
    # pixel, with a disparity uniformly between the two surfaces'.
    flying_pixel_prob: float = field(default=0.3, metadata=_range(0.0, 1.0))
    # Where a hand edge borders no data, the surface behind it is the subject's
    # body or the room: NYU hands are held ~0.3-0.6 m in front of the body.
    background_gap_mm: float = field(default=400.0, metadata=_range(0.0, 5000.0))
    # Incidence angle (surface normal vs. viewing ray) where drop-outs start
    # and where every pixel is lost: noise and missing data rise sharply beyond
    # ~70 degrees (Nguyen et al. 2012) as the projected speckles smear out.
    grazing_start_deg: float = field(default=70.0, metadata=_range(0.0, 90.0))
    grazing_stop_deg: float = field(default=85.0, metadata=_range(0.0, 90.0))
    # Fraction of pixels lost in random holes (speckle decorrelation, IR
    # absorbing or specular spots, interference), and the Gaussian sigma that
    # sets the size of the holes: blobs a few pixels across, as in NYU frames.
    hole_fraction: float = field(default=0.02, metadata=_range(0.0, 0.5))
    hole_sigma_px: float = field(default=1.5, metadata=_range(0.3, 20.0))
    # Working range of the disparity search; closer or farther returns no depth.
    # Kinect 1 / PrimeSense: ~0.4 m (near mode) to ~4 m.
    near_limit_mm: float = field(default=400.0, metadata=_range(0.0, 10000.0))
    far_limit_mm: float = field(default=4000.0, metadata=_range(1.0, 100000.0))

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            expected = int if spec.type in (int, "int") else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                expected is int and not isinstance(value, int)
            ):
                raise UserError(f"sensor field {spec.name!r} must be {expected.__name__}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):  # an int is finite (and may exceed a float)
                raise UserError(f"sensor field {spec.name!r} must be finite, got {value!r}")
            low, high = spec.metadata["range"]
            if not low <= value <= high:
                raise UserError(f"sensor field {spec.name!r} must be in [{low}, {high}], got {value!r}")
            if expected is float:
                object.__setattr__(self, spec.name, float(value))  # 50 from JSON is 50.0
        if self.grazing_start_deg > self.grazing_stop_deg:
            raise UserError(
                f"sensor field 'grazing_start_deg' ({self.grazing_start_deg}) must be <= "
                f"'grazing_stop_deg' ({self.grazing_stop_deg})"
            )
        if self.near_limit_mm >= self.far_limit_mm:
            raise UserError(
                f"sensor field 'near_limit_mm' ({self.near_limit_mm}) must be < 'far_limit_mm' ({self.far_limit_mm})"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, path: str | Path) -> "SensorConfig":
        """The default config with the fields found in the JSON object at `path` replaced."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except OSError as error:
            raise UserError(f"cannot read sensor config {path}: {error.strerror or error}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"sensor config {path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise UserError(f"sensor config {path} must hold a JSON object of fields, got {type(values).__name__}")
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"sensor config {path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except UserError as error:
            raise UserError(f"sensor config {path}: {error}") from None


def apply_sensor_model(
    depth_mm: np.ndarray,
    rng: np.random.Generator,
    config: SensorConfig = SensorConfig(),
    camera: Camera = NYU_CAMERA,
    origin: tuple[float, float] | None = None,
) -> np.ndarray:
    """Turn a clean depth map (H, W) in mm (0 = nothing) into what the sensor would measure.

    `depth_mm` must be sampled at the camera's native pixel pitch; `origin` is
    the full-image (u, v) of depth_mm[0, 0] (default: the map is centred on
    the principal point). Returns float32 mm, 0 where the sensor gives no data.
    """
    depth = np.asarray(depth_mm, dtype=np.float64)
    if depth.ndim != 2:
        raise UserError(f"apply_sensor_model expects an (H, W) depth map, got shape {depth.shape}")
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise UserError("apply_sensor_model expects finite depth >= 0 mm (0 = nothing)")
    height, width = depth.shape
    if origin is None:
        origin = (camera.cx - (width - 1) / 2, camera.cy - (height - 1) / 2)
    measured = np.zeros(depth.shape, dtype=np.float32)
    rows, cols = np.nonzero(depth > 0)
    if rows.size == 0:
        return measured
    # Work on the surface's bounding box only (plus a margin for the filters): hands fill a fraction of a window.
    margin = config.edge_band_px + int(math.ceil(3 * config.lateral_sigma_px)) + 2
    r0, r1 = max(rows.min() - margin, 0), min(rows.max() + margin + 1, height)
    c0, c1 = max(cols.min() - margin, 0), min(cols.max() + margin + 1, width)
    measured[r0:r1, c0:c1] = _measure(depth[r0:r1, c0:c1], rng, config, camera, (origin[0] + c0, origin[1] + r0))
    return measured


def _measure(
    depth: np.ndarray, rng: np.random.Generator, config: SensorConfig, camera: Camera, origin: tuple[float, float]
) -> np.ndarray:
    """The sensor model on a non-empty depth map; see `apply_sensor_model`."""
    # float32 throughout: disparities of 20-100 px keep ~1e-5 px precision, far below the 1/8 px step.
    depth = depth.astype(np.float32)
    u = (origin[0] + np.arange(depth.shape[1])).astype(np.float32)
    v = (origin[1] + np.arange(depth.shape[0])).astype(np.float32)
    focal_baseline = camera.fx * config.baseline_mm  # disparity_px = f b / z

    def uniform() -> np.ndarray:
        return rng.random(depth.shape, dtype=np.float32)

    valid = depth > 0
    disparity = np.where(valid, focal_baseline / np.where(valid, depth, 1.0), 0.0)
    valid &= ~_projector_shadow(disparity, valid, u)
    jump, silhouette, far_disparity = _depth_edges(disparity, valid, depth, focal_baseline, config)
    edge = jump | silhouette
    valid &= uniform() >= _grazing_dropout(depth, valid & ~jump, u, v, camera, config)

    disparity = _smooth_within(disparity, valid, config.lateral_sigma_px)
    near_side = edge & (disparity - far_disparity > config.edge_jump_px)
    flying = near_side & (uniform() < config.flying_pixel_prob)
    disparity = np.where(flying, disparity + uniform() * (far_disparity - disparity), disparity)

    disparity = disparity + config.disparity_noise_px * rng.standard_normal(depth.shape, dtype=np.float32)
    if config.disparity_step_px > 0:
        disparity = np.round(disparity / config.disparity_step_px) * config.disparity_step_px

    band = ndimage.binary_dilation(edge, iterations=config.edge_band_px - 1) if config.edge_band_px > 1 else edge
    valid &= ~(band & (uniform() < config.edge_dropout))
    valid &= ~_random_holes(depth.shape, rng, config)
    valid &= disparity > 0
    measured = np.where(valid, focal_baseline / np.where(valid, disparity, 1.0), 0.0)
    in_range = (measured >= config.near_limit_mm) & (measured <= config.far_limit_mm)
    return np.where(in_range, measured, 0.0).astype(np.float32)


def _projector_shadow(disparity: np.ndarray, valid: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Pixels the projector cannot see: another surface lies on the projector ray.

    With the projector at +b along x, the point at camera column u and
    disparity delta sits at projector column p = u - delta. A point is hidden
    from the projector when a pixel further along the row (u' > u, nearer the
    projector) has a smaller projector column: the rays cross in front of it.
    """
    projector_u = np.where(valid, u[None, :] - disparity, np.inf)
    # Minimum of p over u' > u: reverse cumulative minimum, shifted by one column.
    ahead = np.minimum.accumulate(projector_u[:, ::-1], axis=1)[:, ::-1]
    ahead = np.concatenate([ahead[:, 1:], np.full((ahead.shape[0], 1), np.inf)], axis=1)
    return valid & (ahead < projector_u)


def _grazing_dropout(
    depth: np.ndarray, surface: np.ndarray, u: np.ndarray, v: np.ndarray, camera: Camera, config: SensorConfig
) -> np.ndarray:
    """Per-pixel drop probability from the incidence angle between surface normal and viewing ray.

    For depth z(u, v) seen along the ray r = (rx, ry, 1) of pixel (u, v), the
    back-projected surface has normal n ~ (a, -b, -(z + a rx - b ry)) with
    a = fx dz/du, b = fy dz/dv, and n . r = -z, so cos(incidence) = z / (|n| |r|).
    Derivatives are central differences; only pixels of `surface` (valid, off
    depth jumps) whose four neighbours are on it too get a probability.
    """
    z = depth[1:-1, 1:-1]
    a = 0.5 * camera.fx * (depth[1:-1, 2:] - depth[1:-1, :-2])
    b = 0.5 * camera.fy * (depth[2:, 1:-1] - depth[:-2, 1:-1])
    rx = ((u[1:-1] - camera.cx) / camera.fx)[None, :]
    ry = ((camera.cy - v[1:-1]) / camera.fy)[:, None]
    normal_sq = a * a + b * b + (z + a * rx - b * ry) ** 2
    cos_incidence = z / np.sqrt(np.maximum(normal_sq * (rx * rx + ry * ry + 1.0), 1e-12))
    cos_start, cos_stop = np.cos(np.radians([config.grazing_start_deg, config.grazing_stop_deg]))
    # Linear in the angle between the two limits: compare cosines first, take arccos only where needed.
    angle_deg = np.degrees(np.arccos(np.clip(np.minimum(cos_incidence, cos_start), -1.0, 1.0)))
    span = max(config.grazing_stop_deg - config.grazing_start_deg, 1e-6)
    inner = surface[1:-1, 1:-1] & surface[1:-1, 2:] & surface[1:-1, :-2] & surface[2:, 1:-1] & surface[:-2, 1:-1]
    probability = np.zeros(depth.shape, dtype=np.float32)
    probability[1:-1, 1:-1] = np.where(inner, np.clip((angle_deg - config.grazing_start_deg) / span, 0.0, 1.0), 0.0)
    return probability


def _depth_edges(
    disparity: np.ndarray, valid: np.ndarray, depth: np.ndarray, focal_baseline: float, config: SensorConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid pixels next to another surface (jump) or to no data (silhouette), and the far side's disparity.

    A neighbour without data stands for the background `background_gap_mm`
    behind the pixel.
    """
    footprint = np.ones((3, 3), dtype=bool)
    nearest = ndimage.maximum_filter(np.where(valid, disparity, -np.inf), footprint=footprint, mode="nearest")
    farthest = ndimage.minimum_filter(np.where(valid, disparity, np.inf), footprint=footprint, mode="nearest")
    touches_empty = ndimage.minimum_filter(valid, footprint=footprint, mode="nearest") == 0
    background = focal_baseline / np.maximum(depth + config.background_gap_mm, 1e-6)
    far = np.where(touches_empty, np.minimum(farthest, background), farthest)
    jump = valid & ((nearest - disparity > config.edge_jump_px) | (disparity - farthest > config.edge_jump_px))
    return jump, valid & touches_empty, np.where(valid, far, 0.0)


def _smooth_within(values: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing over valid pixels only (normalised convolution); invalid pixels stay 0."""
    if sigma_px <= 0:
        return np.where(valid, values, 0.0)
    weight = ndimage.gaussian_filter(valid.astype(np.float32), sigma_px, mode="constant")
    total = ndimage.gaussian_filter(np.where(valid, values, 0.0), sigma_px, mode="constant")
    return np.where(valid, total / np.maximum(weight, 1e-12), 0.0)


def _random_holes(shape: tuple[int, int], rng: np.random.Generator, config: SensorConfig) -> np.ndarray:
    """Blob-shaped holes covering about `hole_fraction` of the pixels.

    Smoothed white noise is a stationary Gaussian field; thresholding it at its
    (1 - fraction) quantile gives blobs of ~`hole_sigma_px` radius.
    """
    if config.hole_fraction <= 0:
        return np.zeros(shape, dtype=bool)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), config.hole_sigma_px, mode="wrap")
    noise /= max(float(noise.std()), 1e-12)
    return noise > statistics.NormalDist().inv_cdf(1.0 - config.hole_fraction)


def render_sensor_frames(
    rng: np.random.Generator,
    n: int,
    size: int,
    *,
    config: SensorConfig | None = None,
    eval_labels: bool = False,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> dict[str, np.ndarray]:
    """Render n simulated-real frames of size x size.

    Each hand (with its forearm) is ray-cast at the camera's native pixel
    pitch over a window around it, measured by `apply_sensor_model`, centred
    on the centre of mass of the measured depth and cropped. Returns depth_mm
    (n, S, S) float32, joints_uvd, joints_xyz (n, 14, 3) float32, center_uvd
    (n, 3) float32, and with `eval_labels` the clean part labels (n, S, S)
    uint8 cropped with the same centre, 0 where the cropped depth is 0.
    """
    if int(n) < 1:
        raise UserError(f"number of frames must be >= 1, got {n}")
    if int(size) < 1:
        raise UserError(f"crop size must be >= 1 pixel, got {size}")
    config = config or SensorConfig()
    hands = sample_hands(rng, n, SENSOR_SHAPE_PRIOR, SENSOR_POSE_PRIOR, SENSOR_VIEW_PRIOR, camera)
    joints_uvd = xyz_to_uvd(hands.joints_xyz, camera)
    true_center_uvd = joints_uvd.mean(axis=1)
    windows = _native_windows(true_center_uvd, WINDOW_CUBE_FACTOR * cube_mm, camera)
    # The detector boxes, as row/column ranges of each window.
    boxes = _native_windows(true_center_uvd, DETECTOR_CUBE_FACTOR * cube_mm, camera) - np.tile(windows[:, :2], 2)
    depth_mm = np.empty((n, size, size), dtype=np.float32)
    labels = np.empty((n, size, size), dtype=np.uint8)
    center_uvd = np.empty((n, 3))
    for i, ((u0, v0, u1, v1), (c0, r0, c1, r1)) in enumerate(zip(windows, boxes)):
        # Pixel j of the window is the full-image pixel u0 + j: its ray passes through u0 + j exactly.
        clean_mm, clean_labels = render(
            hand_solids(hands[i], forearm=True), (u0 - 0.5, v0 - 0.5, u1 - 0.5, v1 - 0.5), u1 - u0, v1 - v0, camera
        )
        measured_mm = apply_sensor_model(clean_mm, rng, config, camera, origin=(u0, v0))
        center_uvd[i] = center_of_mass_uvd(measured_mm[r0:r1, c0:c1], camera, (u0 + c0, v0 + r0), cube_mm)
        depth_mm[i] = crop_depth(measured_mm, center_uvd[i], size, cube_mm, camera, (u0, v0))
        if eval_labels:
            cropped = crop_image(clean_labels, center_uvd[i], size, cube_mm, camera, (u0, v0))
            labels[i] = np.where(depth_mm[i] > 0, cropped, np.uint8(0))
    frames = {
        "depth_mm": depth_mm,
        "joints_uvd": joints_uvd.astype(np.float32),
        "joints_xyz": hands.joints_xyz.astype(np.float32),
        "center_uvd": center_uvd.astype(np.float32),
    }
    if eval_labels:
        frames["labels"] = labels
    return frames


def generate_sensor(
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    eval_labels: bool = False,
    config: SensorConfig | None = None,
    shard_size: int = 1024,
    progress: bool = True,
    workers: int = 1,
    runner: BeamRunner | None = None,
) -> Manifest:
    """Write n simulated-real frames as a `sensor` data set at `out`.

    A training split (default) holds depth_mm, joints_uvd, joints_xyz and
    center_uvd; an evaluation split (`eval_labels`) also holds the clean part
    labels, which no training code may read. The manifest's `params` record
    the sensor config, the priors and `eval_labels`. `workers` processes
    render the shards, or the Beam `runner` does (`dataset.generate_dataset`).
    """
    config = config or SensorConfig()
    names = ["depth_mm", "joints_uvd", "joints_xyz", "center_uvd"] + (["labels"] if eval_labels else [])
    return generate_dataset(
        out,
        n,
        make_shard=functools.partial(render_sensor_frames, size=size, config=config, eval_labels=eval_labels),
        domain="sensor",
        size=size,
        seed=seed,
        fields=names,
        shard_size=shard_size,
        params={
            "sensor": config.to_dict(),
            "eval_labels": bool(eval_labels),
            "shape_prior": asdict(SENSOR_SHAPE_PRIOR),
            "pose_prior": asdict(SENSOR_POSE_PRIOR),
            "view_prior": asdict(SENSOR_VIEW_PRIOR),
            "detector_cube_factor": DETECTOR_CUBE_FACTOR,
            "window_cube_factor": WINDOW_CUBE_FACTOR,
        },
        progress=progress,
        workers=workers,
        runner=runner,
    )


def _native_windows(center_uvd: np.ndarray, cube_mm: float, camera: Camera) -> np.ndarray:
    """Integer pixel windows [u0, v0, u1, v1) (n, 4) of a cube around each centre, inside the image."""
    window = np.round(crop_window(center_uvd, cube_mm, camera)).astype(np.int64)
    low = np.array([0, 0, 1, 1])
    high = np.array([camera.width - 1, camera.height - 1, camera.width, camera.height])
    return np.clip(window, low, high)
