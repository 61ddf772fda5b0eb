"""The NYU (Kinect 1) pinhole camera and uvd <-> xyz conversions.

uvd is (pixel u, pixel v, depth mm); xyz is in mm with y pointing **up**:
x = (u - cx) z / fx, y = (cy - v) z / fy, z = d. The community's NYU
evaluation code writes fy = -587.07 for the same convention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels, with the image size."""

    fx: float = 588.036865
    fy: float = 587.075073
    cx: float = 320.0
    cy: float = 240.0
    width: int = 640
    height: int = 480

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Camera":
        return cls(**values)


NYU_CAMERA = Camera()

# Depth no depth camera reports, mm. Every depth image format stores 16-bit millimetres (NYU
# PNG, Kinect, RealSense), so a value above MAX_IMAGE_DEPTH_MM is not a depth image in mm. A
# hand closer than MIN_HAND_DEPTH_MM is inside every camera's minimum range, and one farther
# than MAX_HAND_DEPTH_MM beyond every camera's maximum (Kinect 1: about 0.5-4 m).
MAX_IMAGE_DEPTH_MM = 65535.0
MIN_HAND_DEPTH_MM = 100.0
MAX_HAND_DEPTH_MM = 10000.0


def uvd_to_xyz(uvd: np.ndarray, camera: Camera = NYU_CAMERA) -> np.ndarray:
    """Convert (..., 3) uvd (px, px, mm) to xyz (mm, y up)."""
    uvd = np.asarray(uvd, dtype=np.float64)
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    x = (u - camera.cx) * d / camera.fx
    y = (camera.cy - v) * d / camera.fy
    return np.stack([x, y, d], axis=-1)


def xyz_to_uvd(xyz: np.ndarray, camera: Camera = NYU_CAMERA) -> np.ndarray:
    """Convert (..., 3) xyz (mm, y up) to uvd (px, px, mm)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    u = camera.cx + x * camera.fx / z
    v = camera.cy - y * camera.fy / z
    return np.stack([u, v, z], axis=-1)


def uvd_to_xyz_tf(uvd: tf.Tensor, camera: Camera = NYU_CAMERA) -> tf.Tensor:
    """`uvd_to_xyz` in TF ops (float32), for graphs."""
    import tensorflow as tf

    # Slices, not tf.unstack: LiteRT renames a multi-output op's tensors, and the
    # int8 export keeps the camera in float32 by tensor name (export._float_tensors).
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    return tf.stack([(u - camera.cx) * d / camera.fx, (camera.cy - v) * d / camera.fy, d], axis=-1)


def xyz_to_uvd_tf(xyz: tf.Tensor, camera: Camera = NYU_CAMERA) -> tf.Tensor:
    """`xyz_to_uvd` in TF ops (float32), for graphs."""
    import tensorflow as tf

    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return tf.stack([camera.cx + x * camera.fx / z, camera.cy - y * camera.fy / z, z], axis=-1)
