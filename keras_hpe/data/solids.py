"""A posed hand and its forearm as solids with part labels, what `renderer.render` ray-casts.

Solids (capsules, tapered capsules and ellipsoids) carry the part ids of
`skeleton.PART_NAMES`. Two forearms exist, both labelled 0 (not hand): the
sensor domain's fixed stub (`hand_solids(..., forearm=True)`) and the synthetic
arm of `ArmPrior`, drawn per hand with its own shape and wrist angles
(`sample_arms`, `hand_solids(..., arm=...)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from keras_hpe.data.hand_model import Hand, rot_x, rot_z, unit
from keras_hpe.errors import UserError


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
    tip_direction = unit(b[..., 2, :] - a[..., 2, :])
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
    wrist = rot_z(np.deg2rad(arm.deviation_deg)) @ rot_x(np.deg2rad(arm.flexion_deg))
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
