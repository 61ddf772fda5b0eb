"""The parametric articulated hand: shape, pose and view priors, forward kinematics, solids.

A right hand is built in its own frame (mm): origin at the wrist centre, +y along
the middle finger, +x towards the thumb (radial side), palm facing -z, so that
with the identity rotation the palm faces the camera with the fingers up.
Each digit has 4 joints (fingers: MCP, PIP, DIP, tip; thumb: CMC, MCP, IP, tip)
with anatomical angle limits; per-hand shape parameters scale bone lengths,
finger and palm widths. Everything is vectorised over leading batch dimensions:
`sample_hands(rng, n)` draws n hands at once, `sample_hand(rng)` draws one.

Solids (capsules, tapered capsules and ellipsoids) carry the part ids of
`skeleton.PART_NAMES`; `renderer.render` ray-casts them. Two forearms exist,
both labelled 0 (not hand): the sensor domain's fixed stub (`hand_solids(...,
forearm=True)`) and the synthetic arm of `ArmPrior`, drawn per hand with its own
shape and wrist angles (`sample_arms`, `hand_solids(..., arm=...)`).
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class ArmPrior:
    """Distribution of the synthetic forearm: its shape and the wrist angles (uniform ranges).

    The forearm is the radius and the ulna side by side: two tapered capsules from
    the wrist to the elbow, so that its width (radial to ulnar) and thickness
    (palmar to dorsal) taper independently; their union's cross-section is two
    overlapping discs, with a groove of ~2 mm between them at the wrist (less
    than a crop pixel). Lengths are an adult's for the template hand (scale 1,
    ~185 mm from wrist to middle fingertip) and scale with each hand's `scale`:
    bigger hands come with bigger arms. The values are this domain's own, not
    the sensor domain's forearm stub's.
    """

    # Wrist centre to elbow: adult forearm (radiale-stylion) lengths, ANSUR II
    # (Gordon et al. 2014). With the wrist ~50-130 mm from the crop centre, the arm
    # runs past the 300 mm cube (its border or its depth range) as real ones do.
    length_mm: tuple[float, float] = (230.0, 290.0)
    # Across the styloid processes: adult wrist breadths. With the thickness below,
    # wrist girths of ~135-185 mm, roughly the adult range of wrist circumference
    # (ANSUR II).
    wrist_width_mm: tuple[float, float] = (50.0, 65.0)
    # Thickness / width at the wrist, the "wrist ratio" of carpal tunnel studies:
    # 0.67-0.71 on average in adults (Radecki 1994; Loomis & Roll 2024).
    wrist_thickness_ratio: tuple[float, float] = (0.62, 0.75)
    # The proximal forearm, filled out by the flexor and extensor muscles and close to
    # round in section: girths of ~205-280 mm (ANSUR II's forearm circumference, taken
    # flexed at the largest girth, runs a little higher). The taper is linear from the
    # wrist to the elbow end: the muscle belly's bulge a third of the way down from the
    # elbow is left out, as only the distal ~150 mm of a forearm ever falls inside the crop.
    elbow_width_mm: tuple[float, float] = (70.0, 90.0)
    elbow_thickness_ratio: tuple[float, float] = (0.8, 0.95)
    # Active wrist range of motion, deg, the hand relative to the forearm: flexion
    # (palm towards the forearm), extension, radial (towards the thumb) and ulnar
    # deviation. Ryu et al. 1991 (40 adults, biaxial electrogoniometer): 79, 59, 21,
    # 38; AAOS norms (Greene & Heckman 1994): 80, 70, 20, 30. Angles fill the
    # ellipse these four limits span, a quarter of the frames per quadrant, uniform
    # within it (flexion and deviation limit each other: the envelope of wrist motion
    # is ellipse-like, Crisco et al. 2011, cadaver wrists; its ~27 deg tilt towards the
    # dart thrower's motion is left out).
    flexion_deg: float = 75.0
    extension_deg: float = 65.0
    radial_deviation_deg: float = 20.0
    ulnar_deviation_deg: float = 35.0

    def __post_init__(self) -> None:
        for name in ("length_mm", "wrist_width_mm", "wrist_thickness_ratio", "elbow_width_mm", "elbow_thickness_ratio"):
            low, high = getattr(self, name)
            most = 1.0 if name.endswith("ratio") else math.inf  # the capsules lie (width - thickness) apart
            if not 0 < low <= high <= most:
                raise UserError(f"ArmPrior.{name} must be a range 0 < low <= high <= {most}, got {(low, high)}")
        for name in ("flexion_deg", "extension_deg", "radial_deviation_deg", "ulnar_deviation_deg"):
            if not 0 <= getattr(self, name) < 90:
                raise UserError(f"ArmPrior.{name} must be in [0, 90) deg, got {getattr(self, name)}")


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


@dataclass
class Arm:
    """The forearms of a batch of n hands (leading dimensions "..."), mm for each hand's size.

    Wrist angles give the forearm's direction relative to the palm, from the
    wrist centre: flexion bends the hand towards its palm side, radial deviation
    towards its thumb side (both positive).
    """

    flexion_deg: np.ndarray  # (...,), negative = extension
    deviation_deg: np.ndarray  # (...,), positive = radial, negative = ulnar
    length_mm: np.ndarray  # (...,), wrist centre to elbow
    wrist_width_mm: np.ndarray  # (...,)
    wrist_thickness_mm: np.ndarray  # (...,)
    elbow_width_mm: np.ndarray  # (...,)
    elbow_thickness_mm: np.ndarray  # (...,)

    def __getitem__(self, index) -> "Arm":
        """Index the batch dimensions."""
        return Arm(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass
class Solids:
    """Capsules, tapered capsules and ellipsoids with part labels, in the camera frame (mm).

    Geometry may carry leading batch dimensions "..."; labels are per solid
    (0 = not a hand part, e.g. the forearm, which still has depth). A tapered
    capsule is the convex hull of two spheres (radius_a at a, radius_b at b,
    |radius_a - radius_b| < |b - a|).
    """

    capsule_a: np.ndarray  # (..., K, 3)
    capsule_b: np.ndarray  # (..., K, 3)
    capsule_radius_mm: np.ndarray  # (..., K)
    capsule_labels: np.ndarray  # (K,) uint8
    tapered_a: np.ndarray  # (..., T, 3)
    tapered_b: np.ndarray  # (..., T, 3)
    tapered_radius_a_mm: np.ndarray  # (..., T)
    tapered_radius_b_mm: np.ndarray  # (..., T)
    tapered_labels: np.ndarray  # (T,) uint8
    ellipsoid_center: np.ndarray  # (..., E, 3)
    ellipsoid_axes: np.ndarray  # (..., E, 3, 3), columns = unit principal axes
    ellipsoid_radii_mm: np.ndarray  # (..., E, 3)
    ellipsoid_labels: np.ndarray  # (E,) uint8

    def __getitem__(self, index) -> "Solids":
        """Index the batch dimensions; the per-solid labels are shared."""
        return Solids(
            **{
                f.name: getattr(self, f.name) if f.name.endswith("labels") else getattr(self, f.name)[index]
                for f in fields(self)
            }
        )


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
    frames = _rot_z(-np.deg2rad(FINGER_SPLAY_DEG)) @ np.diag([-1.0, 1.0, -1.0])
    frames = np.broadcast_to(frames, (n, 4, 3, 3)) @ _rot_z(angles[:, 1:, 1]) @ _rot_x(angles[:, 1:, 0])
    finger_points = [mcp]
    for bone in range(3):
        finger_points.append(finger_points[-1] + bones[:, 1:, bone, None] * frames[..., :, 1])
        if bone < 2:
            frames = frames @ _rot_x(angles[:, 1:, bone + 2])
    fingers = np.stack(finger_points, axis=2)  # (n, 4, 4, 3)

    along = _unit(_THUMB_ALONG)
    palmar = _unit(_THUMB_FLEX_TOWARDS - np.dot(_THUMB_FLEX_TOWARDS, along) * along)
    thumb_frame = np.stack([np.cross(along, palmar), along, palmar], axis=-1)
    # Positive CMC abduction lifts the thumb out of the palm plane (towards -lateral).
    frame = thumb_frame @ _rot_z(angles[:, 0, 1]) @ _rot_x(angles[:, 0, 0])
    cmc = _THUMB_CMC * widen * s
    thumb_points = [cmc]
    for bone in range(3):
        thumb_points.append(thumb_points[-1] + bones[:, 0, bone, None] * frame[..., :, 1])
        if bone < 2:
            frame = frame @ _rot_x(angles[:, 0, bone + 2])
    thumb = np.stack(thumb_points, axis=1)  # (n, 4, 3)

    wrist = np.zeros((n, 1, 3))
    keypoints = np.concatenate([wrist, thumb, fingers.reshape(n, 16, 3)], axis=1)
    direction = _unit(mcp - base)
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
_THUMB_LABELS = (2, 3, 4)
_FINGER_LABELS = ((6, 7, 8), (10, 11, 12), (14, 15, 16), (18, 19, 20))
_KNUCKLE_LABELS = (5, 9, 13, 17)
_PALM_LABEL = 1


def hand_solids(hand: Hand, forearm: bool = False, arm: Arm | None = None) -> Solids:
    """The 20 parts of `hand` as capsules and ellipsoids (any leading batch dims), and its forearm.

    Phalanges are capsules between consecutive joints (the distal one ends half a
    radius short of the tip, so the tip joint lies inside its cap); each finger's
    knuckle is a capsule over the distal metacarpal, thicker than the palm there;
    the palm is two flattened ellipsoids. A forearm has depth but no part (label
    0): `forearm` adds the sensor domain's stub (two ellipsoids), `arm` (of the
    hand's batch shape) the synthetic forearm as two tapered capsules.
    """
    if forearm and arm is not None:
        raise UserError("hand_solids takes the forearm stub or an arm, not both")
    points = hand.keypoints_xyz
    batch = points.shape[:-2]
    digits = points[..., 1:, :].reshape(*batch, 5, 4, 3)
    a = digits[..., :3, :]
    b = digits[..., 1:, :].copy()
    radius = hand.segment_radius_mm
    tip_direction = _unit(b[..., 2, :] - a[..., 2, :])
    b[..., 2, :] -= 0.5 * radius[..., 2, None] * tip_direction
    capsule_a = np.concatenate([a.reshape(*batch, 15, 3), hand.knuckle_base_xyz], axis=-2)
    capsule_b = np.concatenate([b.reshape(*batch, 15, 3), digits[..., 1:, 0, :]], axis=-2)
    capsule_radius = np.concatenate([radius.reshape(*batch, 15), hand.knuckle_radius_mm], axis=-1)
    capsule_labels = np.array(
        [*_THUMB_LABELS, *(label for finger in _FINGER_LABELS for label in finger), *_KNUCKLE_LABELS],
        dtype=np.uint8,
    )
    centers = hand.palm_center_xyz
    radii = hand.palm_radii_mm
    ellipsoid_labels = [_PALM_LABEL, _PALM_LABEL]
    if forearm:
        centers = np.concatenate([centers, hand.forearm_center_xyz], axis=-2)
        radii = np.concatenate([radii, hand.forearm_radii_mm], axis=-2)
        ellipsoid_labels += [0, 0]
    axes = np.broadcast_to(hand.rotation[..., None, :, :], (*batch, len(ellipsoid_labels), 3, 3))
    if arm is None:
        tapered_a = tapered_b = np.zeros((*batch, 0, 3))
        tapered_radius_a = tapered_radius_b = np.zeros((*batch, 0))
    else:
        tapered_a, tapered_b, tapered_radius_a, tapered_radius_b = _arm_capsules(hand, arm)
    return Solids(
        capsule_a=capsule_a,
        capsule_b=capsule_b,
        capsule_radius_mm=capsule_radius,
        capsule_labels=capsule_labels,
        tapered_a=tapered_a,
        tapered_b=tapered_b,
        tapered_radius_a_mm=tapered_radius_a,
        tapered_radius_b_mm=tapered_radius_b,
        tapered_labels=np.zeros(tapered_a.shape[-2], dtype=np.uint8),
        ellipsoid_center=centers,
        ellipsoid_axes=axes,
        ellipsoid_radii_mm=radii,
        ellipsoid_labels=np.array(ellipsoid_labels, dtype=np.uint8),
    )


def _arm_capsules(hand: Hand, arm: Arm) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The forearm of `hand` as two tapered capsules side by side: a, b (..., 2, 3), radius_a, radius_b (..., 2).

    The forearm's frame is the hand frame turned by the wrist angles (flexion about
    the hand's radial axis, deviation about its palm normal). Each capsule has half
    the forearm's thickness as radius, and the two lie apart by the width's excess
    over the thickness. The wrist ends' caps reach half a radius past the wrist
    centre into the heel of the palm: less leaves a waist at the wrist deeper than
    a real one's, more covers the palm around the wrist joints.
    """
    wrist = _rot_z(np.deg2rad(arm.deviation_deg)) @ _rot_x(np.deg2rad(arm.flexion_deg))
    frame = hand.rotation @ wrist
    radial, to_elbow = frame[..., None, :, 0], -frame[..., None, :, 1]
    side = np.array([-0.5, 0.5])[:, None]  # ulna, radius
    radius_a = 0.5 * arm.wrist_thickness_mm[..., None]
    radius_b = 0.5 * arm.elbow_thickness_mm[..., None]
    start = hand.translation_mm[..., None, :] + 0.5 * radius_a[..., None] * to_elbow
    end = hand.translation_mm[..., None, :] + (arm.length_mm[..., None, None] - radius_b[..., None]) * to_elbow
    a = start + side * (arm.wrist_width_mm - arm.wrist_thickness_mm)[..., None, None] * radial
    b = end + side * (arm.elbow_width_mm - arm.elbow_thickness_mm)[..., None, None] * radial
    return a, b, np.repeat(radius_a, 2, axis=-1), np.repeat(radius_b, 2, axis=-1)


def sample_arms(rng: np.random.Generator, scale: np.ndarray, prior: ArmPrior = ArmPrior()) -> Arm:
    """Draw the forearms of hands of size `scale` (n,): shapes from `prior` times the scale, and wrist angles."""
    scale = np.asarray(scale, dtype=np.float64)
    n = len(scale)
    # Uniform in the unit disc, then each half-axis stretched to its own limit.
    radius = np.sqrt(rng.uniform(size=n))
    direction = rng.uniform(0.0, 2.0 * np.pi, n)
    flexion, deviation = radius * np.cos(direction), radius * np.sin(direction)
    length = rng.uniform(*prior.length_mm, n) * scale
    wrist_width = rng.uniform(*prior.wrist_width_mm, n) * scale
    wrist_thickness = wrist_width * rng.uniform(*prior.wrist_thickness_ratio, n)
    elbow_width = rng.uniform(*prior.elbow_width_mm, n) * scale
    elbow_thickness = elbow_width * rng.uniform(*prior.elbow_thickness_ratio, n)
    return Arm(
        flexion_deg=flexion * np.where(flexion > 0, prior.flexion_deg, prior.extension_deg),
        deviation_deg=deviation * np.where(deviation > 0, prior.radial_deviation_deg, prior.ulnar_deviation_deg),
        length_mm=length,
        wrist_width_mm=wrist_width,
        wrist_thickness_mm=wrist_thickness,
        elbow_width_mm=elbow_width,
        elbow_thickness_mm=elbow_thickness,
    )


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
    return _rot_z(roll) @ _rot_x(pitch) @ _rot_y(yaw) @ flip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotation(angle: np.ndarray, i: int, j: int) -> np.ndarray:
    """Rotations by `angle` (...) in the plane of axes i -> j: (..., 3, 3)."""
    angle = np.asarray(angle, dtype=np.float64)
    r = np.broadcast_to(np.eye(3), (*angle.shape, 3, 3)).copy()
    c, s = np.cos(angle), np.sin(angle)
    r[..., i, i], r[..., j, j], r[..., j, i], r[..., i, j] = c, c, s, -s
    return r


def _rot_x(angle: np.ndarray) -> np.ndarray:
    return _rotation(angle, 1, 2)


def _rot_y(angle: np.ndarray) -> np.ndarray:
    return _rotation(angle, 2, 0)


def _rot_z(angle: np.ndarray) -> np.ndarray:
    return _rotation(angle, 0, 1)
