"""The parametric articulated hand: shape, pose and view priors, forward kinematics.

A right hand is built in its own frame (mm): origin at the wrist centre, +y along
the middle finger, +x towards the thumb (radial side), palm facing -z, so that
with the identity rotation the palm faces the camera with the fingers up.
Each digit has 4 joints (fingers: MCP, PIP, DIP, tip; thumb: CMC, MCP, IP, tip)
with anatomical angle limits; per-hand shape parameters scale bone lengths,
finger and palm widths. Everything is vectorised over leading batch dimensions:
`sample_hands(rng, n)` draws n hands at once, `sample_hand(rng)` draws one.
`solids.hand_solids` turns posed hands (and their forearms) into labelled solids.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from keras_hpe.data.camera import NYU_CAMERA, Camera, uvd_to_xyz
from keras_hpe.errors import UserError

DIGITS = ("thumb", "index", "middle", "ring", "little")

# Angles are (..., 5 digits, 4) in degrees. Thumb: CMC flexion, CMC (palmar)
# abduction, MCP flexion, IP flexion. Fingers: MCP flexion, MCP abduction
# (positive = towards the thumb), PIP flexion, DIP flexion. Flexion bends
# towards the palm; negative flexion is hyper-extension.
ANGLE_NAMES = (
    ("thumb_cmc_flexion", "thumb_cmc_abduction", "thumb_mcp_flexion", "thumb_ip_flexion"),
    *(
        (f"{d}_mcp_flexion", f"{d}_mcp_abduction", f"{d}_pip_flexion", f"{d}_dip_flexion")
        for d in DIGITS[1:]
    ),
)
# Active ranges of motion of an adult hand (clinical goniometry tables, rounded).
ANGLE_LIMITS_DEG = np.array(
    [
        [(-20, 50), (0, 70), (-10, 60), (-15, 80)],
        [(-20, 90), (-15, 25), (0, 110), (0, 80)],
        [(-20, 90), (-15, 15), (0, 110), (0, 80)],
        [(-20, 90), (-15, 15), (0, 110), (0, 80)],
        [(-20, 90), (-25, 15), (0, 110), (0, 80)],
    ],
    dtype=np.float64,
)
# The DIP follows the PIP (shared flexor tendon): dip ~ 2/3 pip.
DIP_COUPLING = 2.0 / 3.0

# Template hand of scale 1 (an adult hand, ~185 mm wrist to middle tip), mm.
_FINGER_MCP = np.array([[26.0, 88.0, 0.0], [6.0, 90.0, 0.0], [-13.0, 85.0, 0.0], [-30.0, 77.0, 0.0]])
_FINGER_BASE = np.array([[12.0, 18.0, 0.0], [3.0, 18.0, 0.0], [-7.0, 18.0, 0.0], [-16.0, 20.0, 0.0]])
# Rest directions of the fingers in the palm plane, deg towards the thumb.
FINGER_SPLAY_DEG = np.array([6.0, 0.0, -6.0, -13.0])
# Bones per digit: thumb (metacarpal, proximal, distal), fingers (proximal, middle, distal).
_BONE_MM = np.array(
    [[46.0, 32.0, 25.0], [40.0, 24.0, 21.0], [45.0, 28.0, 23.0], [42.0, 27.0, 22.0], [33.0, 19.0, 19.0]]
)
_SEGMENT_RADIUS_MM = np.array(
    [[10.5, 9.8, 8.8], [9.3, 8.4, 7.7], [9.6, 8.7, 7.9], [8.9, 8.0, 7.4], [7.8, 7.1, 6.6]]
)
_KNUCKLE_RADIUS_MM = np.array([10.5, 10.5, 10.0, 9.0])
_KNUCKLE_LENGTH_MM = 22.0  # the distal metacarpal that bulges out of the palm
_THUMB_CMC = np.array([19.0, 20.0, -5.0])
_THUMB_ALONG = np.array([0.55, 0.83, -0.12])
_THUMB_FLEX_TOWARDS = np.array([-0.75, 0.0, -0.66])  # across the palm, to the little finger
# Palm: the distal palm and the heel of the hand, two flattened ellipsoids.
_PALM_CENTER = np.array([[-2.0, 55.0, 0.0], [0.0, 24.0, 0.0]])
_PALM_RADII_MM = np.array([[40.0, 40.0, 13.0], [33.0, 28.0, 15.0]])
_WRIST_ULNAR = np.array([-22.0, 6.0, 0.0])
_WRIST_RADIAL = np.array([22.0, 6.0, 0.0])
# Forearm stub (sensor domain only): the distal forearm at the wrist and the
# forearm proper, two flattened ellipsoids (one alone would taper to a point).
_FOREARM_CENTER = np.array([[0.0, -25.0, 0.0], [0.0, -170.0, 0.0]])
_FOREARM_RADII_MM = np.array([[27.0, 32.0, 17.0], [32.0, 150.0, 23.0]])

# Pose families: mean angles (deg) in the layout of ANGLE_NAMES; DIPs follow the coupling.
# The thumbs were fitted on the template hand: in a fist it lies over the index's
# middle phalanx, when pointing over the middle finger's, in a pinch its tip meets
# the index tip.
POSE_FAMILIES: dict[str, np.ndarray] = {
    "open": np.array(
        [[0, 15, 5, 5], [5, 10, 5, 0], [5, 0, 5, 0], [5, -6, 5, 0], [5, -14, 5, 0]], dtype=np.float64
    ),
    "fist": np.array(
        [[5, 10, 45, 55], [85, 0, 100, 0], [85, 0, 100, 0], [85, 0, 100, 0], [85, 0, 100, 0]],
        dtype=np.float64,
    ),
    "grasp": np.array(
        [[15, 50, 15, 20], [45, 0, 55, 0], [45, 0, 55, 0], [45, 0, 55, 0], [45, 0, 55, 0]],
        dtype=np.float64,
    ),
    "point": np.array(
        [[18, 5, 45, 50], [0, 0, 5, 0], [85, 0, 100, 0], [85, 0, 100, 0], [85, 0, 100, 0]],
        dtype=np.float64,
    ),
    "pinch": np.array(
        [[38, 10, 5, 5], [45, 0, 45, 0], [15, 0, 15, 0], [15, -5, 15, 0], [15, -12, 15, 0]],
        dtype=np.float64,
    ),
}
UNIFORM_FAMILY = "uniform"


@dataclass(frozen=True)
class ShapePrior:
    """Distribution of per-hand shape parameters (uniform ranges; defaults = synth domain)."""

    scale_range: tuple[float, float] = (0.8, 1.2)  # overall size
    finger_length_range: tuple[float, float] = (0.92, 1.08)  # fingers relative to the palm
    bone_length_sd: float = 0.04  # relative jitter of each bone
    finger_width_range: tuple[float, float] = (0.85, 1.15)
    palm_width_range: tuple[float, float] = (0.9, 1.1)
    palm_thickness_range: tuple[float, float] = (0.85, 1.15)


@dataclass(frozen=True)
class PosePrior:
    """Distribution of joint angles: a mixture of pose families, clipped to the limits.

    `family_weights` maps a family of POSE_FAMILIES, or "uniform" (every angle
    uniform within its limits), to its probability (normalised).
    """

    family_weights: dict[str, float] = field(
        default_factory=lambda: {
            "uniform": 0.3, "open": 0.2, "fist": 0.1, "grasp": 0.15, "point": 0.15, "pinch": 0.1
        }
    )
    noise_deg: float = 10.0  # spread around a family's mean pose
    dip_noise_deg: float = 5.0  # deviation from dip = 2/3 pip
    # Collateral ligaments tighten in flexion: abduction range shrinks by this
    # fraction at full MCP flexion (keeps flexed fingers from crossing).
    abduction_flexion_coupling: float = 0.7
    # Poses where phalanges of two digits interpenetrate (axis distance below this
    # fraction of the sum of their radii) are redrawn, up to `max_redraws` times.
    min_clearance: float = 0.6
    max_redraws: int = 20


@dataclass(frozen=True)
class ViewPrior:
    """Distribution of the viewpoint: rotation, image position and distance of the palm centre."""

    roll_deg: tuple[float, float] = (-180.0, 180.0)  # about the camera axis
    out_of_plane_deg: float = 65.0  # pitch and yaw, each uniform in +-this
    back_facing_probability: float = 0.5  # back of the hand (not the palm) towards the camera
    distance_mm: tuple[float, float] = (550.0, 1000.0)
    u_px: tuple[float, float] = (200.0, 440.0)
    v_px: tuple[float, float] = (150.0, 330.0)


@dataclass
class HandShape:
    """Per-hand shape parameters of a batch of n hands (factors relative to the template hand)."""

    scale: np.ndarray  # (n,) overall size
    bone_factor: np.ndarray  # (n, 5, 3) per digit and bone, see _BONE_MM
    finger_width: np.ndarray  # (n,)
    palm_width: np.ndarray  # (n,)
    palm_thickness: np.ndarray  # (n,)


@dataclass
class Hand:
    """One hand, or a batch (leading dimensions "..."), in the camera frame (mm, y up).

    Keypoints are 21 points: wrist centre, then per digit of DIGITS its 4 joints
    (thumb CMC, MCP, IP, tip; finger MCP, PIP, DIP, tip). `joints_xyz` are the
    14 evaluation joints in skeleton.JOINT_NAMES order.
    """

    scale: np.ndarray  # (...,)
    angles_deg: np.ndarray  # (..., 5, 4), see ANGLE_NAMES
    rotation: np.ndarray  # (..., 3, 3), hand frame -> camera frame
    translation_mm: np.ndarray  # (..., 3), the hand frame origin (wrist centre)
    keypoints_xyz: np.ndarray  # (..., 21, 3)
    joints_xyz: np.ndarray  # (..., 14, 3)
    segment_radius_mm: np.ndarray  # (..., 5, 3)
    knuckle_base_xyz: np.ndarray  # (..., 4, 3), proximal end of each knuckle capsule
    knuckle_radius_mm: np.ndarray  # (..., 4)
    palm_center_xyz: np.ndarray  # (..., 2, 3), the two palm ellipsoids
    palm_radii_mm: np.ndarray  # (..., 2, 3), along the hand's x, y, z axes
    forearm_center_xyz: np.ndarray  # (..., 2, 3)
    forearm_radii_mm: np.ndarray  # (..., 2, 3)

    def __getitem__(self, index) -> "Hand":
        """Index the batch dimensions."""
        return Hand(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def sample_hand(
    rng: np.random.Generator,
    shape_prior: ShapePrior = ShapePrior(),
    pose_prior: PosePrior = PosePrior(),
    view_prior: ViewPrior = ViewPrior(),
) -> Hand:
    """Draw one random hand (shape, pose, viewpoint) from the priors."""
    return sample_hands(rng, 1, shape_prior, pose_prior, view_prior)[0]


def sample_hands(
    rng: np.random.Generator,
    n: int,
    shape_prior: ShapePrior = ShapePrior(),
    pose_prior: PosePrior = PosePrior(),
    view_prior: ViewPrior = ViewPrior(),
    camera: Camera = NYU_CAMERA,
) -> Hand:
    """Draw a batch of n random hands; fields have a leading dimension n."""
    if n < 1:
        raise UserError(f"number of hands must be >= 1, got {n}")
    shape = sample_shape(rng, n, shape_prior)
    angles_deg = sample_angles(rng, n, pose_prior)
    for _ in range(pose_prior.max_redraws):
        colliding = np.flatnonzero(_digits_collide(pose_hand(shape, angles_deg), pose_prior.min_clearance))
        if colliding.size == 0:
            break
        angles_deg[colliding] = sample_angles(rng, colliding.size, pose_prior)
    rotation = _sample_rotation(rng, n, view_prior)
    center_uvd = np.stack(
        [
            rng.uniform(*view_prior.u_px, n),
            rng.uniform(*view_prior.v_px, n),
            rng.uniform(*view_prior.distance_mm, n),
        ],
        axis=-1,
    )
    return pose_hand(shape, angles_deg, rotation, uvd_to_xyz(center_uvd, camera))


def sample_angles(rng: np.random.Generator, n: int, prior: PosePrior = PosePrior()) -> np.ndarray:
    """Draw (n, 5, 4) joint angles (deg) from the family mixture, within ANGLE_LIMITS_DEG."""
    names = list(prior.family_weights)
    unknown = [name for name in names if name != UNIFORM_FAMILY and name not in POSE_FAMILIES]
    if unknown:
        raise UserError(f"PosePrior.family_weights: unknown families {unknown}; known {list(POSE_FAMILIES)}")
    weights = np.array([prior.family_weights[name] for name in names], dtype=np.float64)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise UserError(f"PosePrior.family_weights must be >= 0 and not all 0, got {prior.family_weights}")
    low, high = ANGLE_LIMITS_DEG[..., 0], ANGLE_LIMITS_DEG[..., 1]
    family = rng.choice(len(names), size=n, p=weights / weights.sum())
    uniform = rng.uniform(low, high, size=(n, 5, 4))
    means = np.stack([0.5 * (low + high) if name == UNIFORM_FAMILY else POSE_FAMILIES[name] for name in names])
    around_mean = means[family] + rng.normal(0.0, prior.noise_deg, size=(n, 5, 4))
    is_uniform = np.array([name == UNIFORM_FAMILY for name in names])[family]
    angles = np.clip(np.where(is_uniform[:, None, None], uniform, around_mean), low, high)
    flexion = np.clip(angles[:, 1:, 0] / high[1:, 0], 0.0, 1.0)
    angles[:, 1:, 1] *= 1.0 - prior.abduction_flexion_coupling * flexion
    # Fingers do not cross: their directions in the palm plane keep the anatomical
    # order. Clipping a sorted sequence to these (also ordered) limits keeps it sorted.
    direction = -np.sort(-(FINGER_SPLAY_DEG + angles[:, 1:, 1]), axis=-1)
    angles[:, 1:, 1] = np.clip(direction - FINGER_SPLAY_DEG, low[1:, 1], high[1:, 1])
    dip = DIP_COUPLING * angles[:, 1:, 2] + rng.normal(0.0, prior.dip_noise_deg, size=(n, 4))
    angles[:, 1:, 3] = np.clip(dip, low[1:, 3], high[1:, 3])
    return angles


def pose_hand(
    shape: HandShape,
    angles_deg: np.ndarray,
    rotation: np.ndarray | None = None,
    palm_xyz: np.ndarray | None = None,
) -> Hand:
    """Forward kinematics: place n hands of `shape` with joint angles `angles_deg` (n, 5, 4).

    `rotation` (n, 3, 3) maps the hand frame to the camera frame; the palm centre
    lands at `palm_xyz` (n, 3) in the camera frame (mm). Without them the hand
    stays in its own frame.
    """
    n = len(angles_deg)
    rotation = np.broadcast_to(np.eye(3), (n, 3, 3)) if rotation is None else rotation
    s = shape.scale[:, None]
    widen = np.stack([shape.palm_width, np.ones(n), np.ones(n)], axis=-1)  # x only
    mcp = _FINGER_MCP * widen[:, None] * s[:, None]
    base = _FINGER_BASE * widen[:, None] * s[:, None]
    bones = _BONE_MM * s[:, None] * shape.bone_factor
    angles = np.deg2rad(angles_deg)

    # Finger chains: frame columns (lateral, along, palmar); flexion rotates
    # "along" towards "palmar", abduction rotates it towards the thumb.
    frames = rot_z(-np.deg2rad(FINGER_SPLAY_DEG)) @ np.diag([-1.0, 1.0, -1.0])
    frames = np.broadcast_to(frames, (n, 4, 3, 3)) @ rot_z(angles[:, 1:, 1]) @ rot_x(angles[:, 1:, 0])
    finger_points = [mcp]
    for bone in range(3):
        finger_points.append(finger_points[-1] + bones[:, 1:, bone, None] * frames[..., :, 1])
        if bone < 2:
            frames = frames @ rot_x(angles[:, 1:, bone + 2])
    fingers = np.stack(finger_points, axis=2)  # (n, 4, 4, 3)

    along = unit(_THUMB_ALONG)
    palmar = unit(_THUMB_FLEX_TOWARDS - np.dot(_THUMB_FLEX_TOWARDS, along) * along)
    thumb_frame = np.stack([np.cross(along, palmar), along, palmar], axis=-1)
    # Positive CMC abduction lifts the thumb out of the palm plane (towards -lateral).
    frame = thumb_frame @ rot_z(angles[:, 0, 1]) @ rot_x(angles[:, 0, 0])
    cmc = _THUMB_CMC * widen * s
    thumb_points = [cmc]
    for bone in range(3):
        thumb_points.append(thumb_points[-1] + bones[:, 0, bone, None] * frame[..., :, 1])
        if bone < 2:
            frame = frame @ rot_x(angles[:, 0, bone + 2])
    thumb = np.stack(thumb_points, axis=1)  # (n, 4, 3)

    wrist = np.zeros((n, 1, 3))
    keypoints = np.concatenate([wrist, thumb, fingers.reshape(n, 16, 3)], axis=1)
    direction = unit(mcp - base)
    knuckle_base = mcp - _KNUCKLE_LENGTH_MM * s[:, None] * direction
    palm_scale = np.stack([shape.palm_width, np.ones(n), shape.palm_thickness], axis=-1) * s
    palm_center = _PALM_CENTER * widen[:, None] * s[:, None]
    palm_radii = _PALM_RADII_MM * palm_scale[:, None]
    palm_point = 0.5 * (wrist[:, 0] + mcp[:, 1])
    joints = np.stack(
        [
            fingers[:, 3, 3], fingers[:, 3, 1], fingers[:, 2, 3], fingers[:, 2, 1],
            fingers[:, 1, 3], fingers[:, 1, 1], fingers[:, 0, 3], fingers[:, 0, 1],
            thumb[:, 3], thumb[:, 2], thumb[:, 1],
            _WRIST_ULNAR * widen * s, _WRIST_RADIAL * widen * s, palm_point,
        ],
        axis=1,
    )
    if palm_xyz is None:
        translation = np.zeros((n, 3))
    else:
        translation = palm_xyz - np.einsum("nij,nj->ni", rotation, palm_point)

    def to_camera(points: np.ndarray) -> np.ndarray:
        flat = points.reshape(n, -1, 3)
        return (np.einsum("nij,nkj->nki", rotation, flat) + translation[:, None]).reshape(points.shape)

    finger_width = shape.finger_width[:, None]
    return Hand(
        scale=shape.scale,
        angles_deg=angles_deg,
        rotation=rotation,
        translation_mm=translation,
        keypoints_xyz=to_camera(keypoints),
        joints_xyz=to_camera(joints),
        segment_radius_mm=_SEGMENT_RADIUS_MM * (s * finger_width)[:, :, None],
        knuckle_base_xyz=to_camera(knuckle_base),
        # The metacarpal heads bulge out of the palm whatever the finger/palm proportions.
        knuckle_radius_mm=_KNUCKLE_RADIUS_MM * s * np.maximum(finger_width, shape.palm_thickness[:, None]),
        palm_center_xyz=to_camera(palm_center),
        palm_radii_mm=palm_radii,
        forearm_center_xyz=to_camera(_FOREARM_CENTER * s[:, None]),
        forearm_radii_mm=_FOREARM_RADII_MM * palm_scale[:, None],
    )


# Part ids of the capsules, in the order hand_solids emits them.
def sample_shape(rng: np.random.Generator, n: int, prior: ShapePrior = ShapePrior()) -> HandShape:
    """Draw the shape parameters of n hands."""
    finger_length = rng.uniform(*prior.finger_length_range, size=(n, 1, 1))
    jitter = np.exp(rng.normal(0.0, prior.bone_length_sd, size=(n, 5, 3)))
    return HandShape(
        scale=rng.uniform(*prior.scale_range, n),
        bone_factor=finger_length * jitter,
        finger_width=rng.uniform(*prior.finger_width_range, n),
        palm_width=rng.uniform(*prior.palm_width_range, n),
        palm_thickness=rng.uniform(*prior.palm_thickness_range, n),
    )


def _digits_collide(hand: Hand, min_clearance: float) -> np.ndarray:
    """(n,) whether phalanges of two different digits interpenetrate."""
    n = len(hand.scale)
    digits = hand.keypoints_xyz[:, 1:].reshape(n, 5, 4, 3)
    start, end = digits[:, :, :3].reshape(n, 15, 3), digits[:, :, 1:].reshape(n, 15, 3)
    radius = hand.segment_radius_mm.reshape(n, 15)
    i, j = np.nonzero(np.arange(15)[:, None] // 3 < np.arange(15)[None, :] // 3)  # different digits
    distance = _segment_distance(start[:, i], end[:, i], start[:, j], end[:, j])
    return np.any(distance < min_clearance * (radius[:, i] + radius[:, j]), axis=-1)


def _segment_distance(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Distance between segments p1-q1 and p2-q2 (..., 3) of non-zero length (Ericson, RTCD 5.1.9)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e = np.sum(d1 * d1, axis=-1), np.sum(d2 * d2, axis=-1)
    b, c, f = np.sum(d1 * d2, axis=-1), np.sum(d1 * r, axis=-1), np.sum(d2 * r, axis=-1)
    denom = a * e - b * b
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(denom > 1e-9 * a * e, np.clip((b * f - c * e) / denom, 0.0, 1.0), 0.0)
    t = (b * s + f) / e
    s = np.where(t < 0, np.clip(-c / a, 0.0, 1.0), np.where(t > 1, np.clip((b - c) / a, 0.0, 1.0), s))
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(p1 + d1 * s[..., None] - p2 - d2 * t[..., None], axis=-1)


def _sample_rotation(rng: np.random.Generator, n: int, prior: ViewPrior) -> np.ndarray:
    roll = np.deg2rad(rng.uniform(*prior.roll_deg, n))
    pitch, yaw = np.deg2rad(rng.uniform(-prior.out_of_plane_deg, prior.out_of_plane_deg, (2, n)))
    back = rng.uniform(size=n) < prior.back_facing_probability
    flip = np.where(back[:, None, None], np.diag([-1.0, 1.0, -1.0]), np.eye(3))
    return rot_z(roll) @ rot_x(pitch) @ rot_y(yaw) @ flip


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotation(angle: np.ndarray, i: int, j: int) -> np.ndarray:
    """Rotations by `angle` (...) in the plane of axes i -> j: (..., 3, 3)."""
    angle = np.asarray(angle, dtype=np.float64)
    r = np.broadcast_to(np.eye(3), (*angle.shape, 3, 3)).copy()
    c, s = np.cos(angle), np.sin(angle)
    r[..., i, i], r[..., j, j], r[..., j, i], r[..., i, j] = c, c, s, -s
    return r


def rot_x(angle: np.ndarray) -> np.ndarray:
    return _rotation(angle, 1, 2)


def rot_y(angle: np.ndarray) -> np.ndarray:
    return _rotation(angle, 2, 0)


def rot_z(angle: np.ndarray) -> np.ndarray:
    return _rotation(angle, 0, 1)
