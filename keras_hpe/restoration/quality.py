"""The barycenter quality gate of the weakly-supervised stage (paper section 3.1).

For each of the 14 annotated joints, the barycenter in 3D of the pixels of its
part(s) (`skeleton.JOINT_PARTS`) is compared with the annotated joint; the
quality of a label map is the mean of these distances in mm over the joints
the map shows (lower is better). A restored map is used as pseudo ground truth
only if its quality is lower than the raw prediction's.

Pixels are lifted to 3D with their depth and the crop geometry: crop pixel
(row i, column j) -> full-image uvd (`crop.crop_to_uvd`) -> xyz (`camera.uvd_to_xyz`).
Pixels without depth (0) and not-hand pixels (0) are ignored.

The paper sums the distances over the joints and does not say what a joint
whose part is absent contributes. Parts are absent for good reasons: a
fingertip hidden behind the hand has no pixel, and the true label maps of the
simulated real frames lack a fingertip in 12-23% of frames. So a joint counts
only where the map shows its part(s), and the quality is the mean over those
joints; a map that shows no part at all has quality infinity. Measured on 500
labelled sensor validation frames (the quick run's stage-1 network and
dictionary; eq. 2 raises the per-pixel accuracy of 88% of them), against
charging an absent joint the distance from the hand centre to it (what this
module did before): that rule accepts 32% of the restorations and agrees with
the true labels on whether restoration helped for 40% of the frames, because
restoration rightly removes spurious fingertips of hidden fingers; the mean
over shown joints accepts 63% and agrees on 67%. Barycenters stay a noisy
proxy: they move by a few millimetres when restoration relabels a few percent
of the pixels, less than their offset from the joints they stand for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_hpe.data.camera import NYU_CAMERA, Camera, uvd_to_xyz
from keras_hpe.data.crop import CUBE_MM, crop_to_uvd
from keras_hpe.data.skeleton import JOINT_PARTS, NUM_JOINTS, NUM_LABELS
from keras_hpe.errors import UserError
from keras_hpe.restoration.patches import check_label_maps


def _joint_membership() -> np.ndarray:
    """(21, 14) 0/1: part l belongs to joint j."""
    membership = np.zeros((NUM_LABELS, NUM_JOINTS))
    for joint, parts in enumerate(JOINT_PARTS):
        membership[list(parts), joint] = 1.0
    return membership


def joint_barycenters_xyz(
    labels: np.ndarray,
    depth_mm: np.ndarray,
    center_uvd: np.ndarray,
    *,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> tuple[np.ndarray, np.ndarray]:
    """Barycenters of each joint's part(s), in mm: ((N, 14, 3), present (N, 14) bool).

    labels (N, S, S), depth_mm (N, S, S), center_uvd (N, 3); absent joints get NaN.
    """
    labels = check_label_maps(labels)
    depth_mm = np.asarray(depth_mm, dtype=np.float64)
    center_uvd = np.asarray(center_uvd, dtype=np.float64)
    if depth_mm.size != labels.size:
        raise UserError(f"depth_mm must have the labels' shape {labels.shape}, got {depth_mm.shape}")
    if center_uvd.size != 3 * len(labels):
        raise UserError(f"center_uvd must be ({len(labels)}, 3), got shape {center_uvd.shape}")
    depth_mm = depth_mm.reshape(labels.shape)
    center_uvd = center_uvd.reshape(len(labels), 3)
    n, size = labels.shape[0], labels.shape[1]
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    crop_px = np.stack(np.broadcast_arrays(cols, rows, depth_mm), axis=-1).reshape(n, -1, 3)
    xyz = uvd_to_xyz(crop_to_uvd(crop_px, center_uvd, size, cube_mm, camera))
    valid = (depth_mm > 0).reshape(n, -1)
    # Sums and counts per (frame, part) with one bincount each, then per joint.
    bins = _part_bins(labels, valid)
    part_count = np.bincount(bins, minlength=n * NUM_LABELS).reshape(n, NUM_LABELS)
    part_sum = np.stack(
        [np.bincount(bins, weights=xyz[..., axis][valid], minlength=n * NUM_LABELS) for axis in range(3)], axis=-1
    ).reshape(n, NUM_LABELS, 3)
    membership = _joint_membership()
    joint_count = part_count @ membership
    joint_sum = np.einsum("nlc,lj->njc", part_sum, membership)
    present = joint_count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        barycenters = joint_sum / joint_count[..., None]
    return np.where(present[..., None], barycenters, np.nan), present


def barycenter_qualities(
    labels: np.ndarray,
    depth_mm: np.ndarray,
    center_uvd: np.ndarray,
    joints_xyz: np.ndarray,
    *,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> np.ndarray:
    """The quality (mean over the joints a map shows of barycenter-to-joint distance, mm) of each of N maps: (N,).

    A map that shows no joint's part has quality infinity.
    """
    return _mean_shown(_scored_distances(labels, depth_mm, center_uvd, joints_xyz, cube_mm, camera)[1])


def _scored_distances(
    labels: np.ndarray, depth_mm: np.ndarray, center_uvd: np.ndarray, joints_xyz: np.ndarray, cube_mm: float,
    camera: Camera,
) -> tuple[np.ndarray, np.ndarray]:
    """Each joint's barycenter (N, 14, 3) mm and its distance to the joint (N, 14) mm; NaN where the map lacks
    the joint's parts."""
    labels = check_label_maps(labels)
    joints_xyz = np.asarray(joints_xyz, dtype=np.float64)
    if joints_xyz.shape[-2:] != (NUM_JOINTS, 3) or joints_xyz.size != len(labels) * NUM_JOINTS * 3:
        raise UserError(f"joints_xyz must be (N, {NUM_JOINTS}, 3), got shape {joints_xyz.shape}")
    joints_xyz = joints_xyz.reshape(len(labels), NUM_JOINTS, 3)
    barycenters, present = joint_barycenters_xyz(labels, depth_mm, center_uvd, cube_mm=cube_mm, camera=camera)
    return barycenters, np.linalg.norm(barycenters - joints_xyz, axis=-1)


def _mean_shown(distances: np.ndarray) -> np.ndarray:
    """The mean over the last axis of the distances that are not NaN; infinity where all are."""
    shown = ~np.isnan(distances)
    count = shown.sum(axis=-1)
    total = np.where(shown, distances, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.inf)


def _part_bins(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The (frame, part) bin, frame * 21 + part, of each pixel with depth: one bincount per statistic."""
    n = len(labels)
    return (np.arange(n)[:, None] * NUM_LABELS + labels.reshape(n, -1))[valid.reshape(n, -1)]


def barycenter_quality(
    labels: np.ndarray,
    depth_mm: np.ndarray,
    center_uvd: np.ndarray,
    joints_xyz: np.ndarray,
    *,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> float:
    """The quality of one map (S, S): mean over the joints it shows of barycenter-to-joint distance, mm."""
    return float(
        barycenter_qualities(np.asarray(labels)[None], np.asarray(depth_mm)[None], np.asarray(center_uvd)[None],
                             np.asarray(joints_xyz)[None], cube_mm=cube_mm, camera=camera)[0]
    )


def accept_restored(raw_quality: np.ndarray | float, restored_quality: np.ndarray | float) -> np.ndarray:
    """True where the restored map's quality is strictly lower (better) than the raw prediction's."""
    return np.asarray(restored_quality) < np.asarray(raw_quality)


@dataclass
class QualityGate:
    """The gate's verdict on N restored maps, and the joint-by-joint measurements behind it.

    raw_xyz, restored_xyz: (N, 14, 3) mm, each joint's barycenter in the raw and
        the restored map (NaN where the map lacks the joint's parts);
    raw_joint_mm, restored_joint_mm: (N, 14) their distances to the annotated
        joints (NaN likewise), whose means over the joints shown are the two qualities;
    vanished: (N, 21) the hand parts with pixels in the raw map and none in the restored one.
    """

    raw_quality_mm: np.ndarray
    restored_quality_mm: np.ndarray
    accepted: np.ndarray
    raw_xyz: np.ndarray
    restored_xyz: np.ndarray
    raw_joint_mm: np.ndarray
    restored_joint_mm: np.ndarray
    vanished: np.ndarray

    def moved_away(self, frame: int, count: int = 3) -> list[tuple[int, float]]:
        """Up to `count` joints of `frame` whose distance grew most in the restoration: (joint, mm farther).

        Only joints both maps show: one whose parts vanished is in `vanished`.
        """
        growth = self.restored_joint_mm[frame] - self.raw_joint_mm[frame]
        order = np.argsort(-growth, kind="stable")[:count]
        return [(int(joint), float(growth[joint])) for joint in order if growth[joint] > 0]

    @property
    def rejection_rate(self) -> float:
        """Fraction of frames whose restoration was rejected (the paper: 5-10% of real frames)."""
        return float(1.0 - self.accepted.mean()) if self.accepted.size else 0.0


def gate_restorations(
    raw_labels: np.ndarray,
    restored_labels: np.ndarray,
    depth_mm: np.ndarray,
    center_uvd: np.ndarray,
    joints_xyz: np.ndarray,
    *,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
) -> QualityGate:
    """Score raw and restored maps (N, S, S) against the annotated joints and accept the improved ones."""
    raw_xyz, raw_mm = _scored_distances(raw_labels, depth_mm, center_uvd, joints_xyz, cube_mm, camera)
    restored_xyz, restored_mm = _scored_distances(restored_labels, depth_mm, center_uvd, joints_xyz, cube_mm, camera)
    raw, restored = _mean_shown(raw_mm), _mean_shown(restored_mm)
    valid = np.asarray(depth_mm).reshape(np.shape(raw_labels)) > 0
    size = len(raw) * NUM_LABELS
    present = [np.bincount(_part_bins(np.asarray(labels), valid), minlength=size).reshape(len(raw), NUM_LABELS) > 0
               for labels in (raw_labels, restored_labels)]
    hand = np.arange(NUM_LABELS) > 0
    return QualityGate(raw, restored, accept_restored(raw, restored), raw_xyz, restored_xyz, raw_mm, restored_mm,
                       present[0] & ~present[1] & hand)
