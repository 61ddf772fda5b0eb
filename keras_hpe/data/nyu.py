"""The NYU Hand Pose Dataset (Tompson et al. 2014) -> the project's data set format.

Expected layout (as distributed): ROOT/train/ and ROOT/test/, each with
`depth_1_0000001.png`, `depth_1_0000002.png`, ... (kinect 1 of 3; 8-bit RGB
PNG, 640 x 480, depth mm = (G << 8) | B) and `joint_data.mat` with
`joint_uvd` and `joint_xyz` of shape (3 kinects, N, 36, 3) and `joint_names`.
NYU's xyz already has y up, like ours. Only the 14 evaluation joints are kept
(`skeleton.NYU_EVAL_JOINT_INDICES`).

The crop centre: the centre of mass of the depth (`crop.center_of_mass_uvd`),
computed only over the pixels inside a generous box around the annotated palm
(1.5 x the cube in the image, the cube's depth range around the palm depth).
The community does the same (DeepPrior and followers): the full NYU frame holds
the body and the room, so some coarse localisation is needed, while the centre
itself still comes from the depth, as a hand detector's would, not from the
annotation. `write_nyu_like` writes a tiny fake data set in exactly this
layout, for tests and notebooks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_hpe.outputs import atomic_path
from keras_hpe.data.camera import NYU_CAMERA, xyz_to_uvd
from keras_hpe.data.crop import CUBE_MM, center_of_mass_uvd, crop_depth, crop_window
from keras_hpe.data.dataset import DatasetWriter, Manifest, read_manifest
from keras_hpe.data.skeleton import NYU_EVAL_JOINT_INDICES
from keras_hpe.errors import UserError

SPLITS = ("train", "test")
NUM_NYU_JOINTS = 36
NYU_PALM_INDEX = 32
KINECT = 0
LOCALISATION_BOX = 1.5  # box around the annotated palm, in cubes, searched for the centre of mass
NYU_FIELDS = ("depth_mm", "joints_uvd", "joints_xyz", "center_uvd")
NYU_JOINT_NAMES = tuple(
    f"{finger}_KNU{k}_{side}" for finger in ("F1", "F2", "F3", "F4", "TH") for k in (3, 2, 1) for side in ("A", "B")
) + tuple(f"PALM_{i}" for i in range(1, 7))


def depth_png_name(index: int) -> str:
    """File name of frame `index` (0-based) of kinect 1."""
    return f"depth_{KINECT + 1}_{index + 1:07d}.png"


def read_depth_png(path: Path) -> np.ndarray:
    """Read an NYU depth PNG as (480, 640) float32 mm: (G << 8) | B."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode, rgb = image.mode, np.asarray(image)
    except FileNotFoundError:
        raise UserError(f"missing NYU depth image {path}") from None
    except OSError as error:
        raise UserError(f"cannot read NYU depth image {path}: {error}") from None
    expected = (NYU_CAMERA.height, NYU_CAMERA.width, 3)
    if mode != "RGB" or rgb.shape != expected:
        raise UserError(
            f"{path}: expected an 8-bit RGB PNG of {expected[1]}x{expected[0]}, got mode {mode} of {rgb.shape[1::-1]}"
        )
    return ((rgb[..., 1].astype(np.uint16) << 8) | rgb[..., 2]).astype(np.float32)


def read_joints(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return kinect 1's (N, 36, 3) joint_uvd and joint_xyz from `split_dir/joint_data.mat`."""
    import scipy.io

    path = split_dir / "joint_data.mat"
    if not path.exists():
        raise UserError(f"missing {path}")
    try:
        mat = scipy.io.loadmat(path, variable_names=["joint_uvd", "joint_xyz"])
    except Exception as error:  # scipy raises many types for a damaged file
        raise UserError(f"cannot read {path}: {error}") from None
    arrays = []
    for name in ("joint_uvd", "joint_xyz"):
        if name not in mat:
            raise UserError(f"{path} has no field {name!r}")
        array = np.asarray(mat[name])
        if array.ndim != 4 or array.shape[2:] != (NUM_NYU_JOINTS, 3) or array.shape[1] == 0:
            raise UserError(f"{path}: {name} has shape {array.shape}, expected (kinects, N, {NUM_NYU_JOINTS}, 3)")
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array[KINECT])):
            raise UserError(f"{path}: {name} must hold finite numbers")
        arrays.append(array[KINECT].astype(np.float64))
    if arrays[0].shape != arrays[1].shape:
        raise UserError(f"{path}: joint_uvd {arrays[0].shape} and joint_xyz {arrays[1].shape} differ in frame count")
    return arrays[0], arrays[1]


def nyu_center_uvd(depth_mm: np.ndarray, palm_uvd: np.ndarray, cube_mm: float = CUBE_MM) -> np.ndarray:
    """Centre of mass of the depth inside a generous box around the annotated palm (see module doc)."""
    u0, v0, u1, v1 = crop_window(palm_uvd, LOCALISATION_BOX * cube_mm)
    left, top = max(int(np.floor(u0)), 0), max(int(np.floor(v0)), 0)
    right, bottom = min(int(np.ceil(u1)) + 1, depth_mm.shape[1]), min(int(np.ceil(v1)) + 1, depth_mm.shape[0])
    box = depth_mm[top:bottom, left:right]
    box = np.where(np.abs(box - palm_uvd[2]) <= 0.5 * cube_mm, box, 0)
    if not np.any(box > 0):  # the hand is not in the depth at all: fall back to the annotation
        return np.asarray(palm_uvd, dtype=np.float64)
    return center_of_mass_uvd(box, origin=(left, top), cube_mm=cube_mm)


def load_nyu(
    root: str | Path,
    split: str,
    out: str | Path,
    *,
    size: int = 64,
    limit: int | None = None,
    shard_size: int = 1024,
    progress: bool = True,
) -> Manifest:
    """Convert NYU `root/split` (its first `limit` frames) to a data set at `out` (domain "nyu").

    Resumable like `dataset.generate_dataset`: shards on disk are skipped, and
    a finished data set with the same parameters is returned as it is.
    """
    from tqdm.auto import tqdm

    if split not in SPLITS:
        raise UserError(f"NYU split must be one of {', '.join(SPLITS)}, got {split!r}")
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be > 0, got {limit}")
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise UserError(f"NYU folder {split_dir} does not exist (expected ROOT/{split}/ with depth PNGs)")
    joints_uvd, joints_xyz = read_joints(split_dir)
    n = len(joints_uvd) if limit is None else min(limit, len(joints_uvd))
    params = {"split": split, "n": n, "kinect": KINECT, "shard_size": shard_size,
              "center": f"com_in_{LOCALISATION_BOX}_cubes_around_gt_palm"}
    with DatasetWriter(out, domain="nyu", size=size, seed=0, fields=NYU_FIELDS, params=params) as writer:
        if writer.finished:
            return read_manifest(writer.out)
        eval_joints = list(NYU_EVAL_JOINT_INDICES)
        with tqdm(total=n, unit="frame", desc=f"NYU {split}", disable=not progress) as bar:
            for index, start in enumerate(range(0, n, shard_size)):
                frames = range(start, min(start + shard_size, n))
                if writer.has_shard(index):
                    bar.update(len(frames))
                    continue
                depth, centers = [], []
                for frame in frames:
                    full = read_depth_png(split_dir / depth_png_name(frame))
                    centers.append(nyu_center_uvd(full, joints_uvd[frame, NYU_PALM_INDEX]))
                    depth.append(crop_depth(full, centers[-1], size))
                    bar.update(1)
                writer.write_shard(index, {
                    "depth_mm": np.stack(depth),
                    "joints_uvd": joints_uvd[frames.start:frames.stop, eval_joints].astype(np.float32),
                    "joints_xyz": joints_xyz[frames.start:frames.stop, eval_joints].astype(np.float32),
                    "center_uvd": np.stack(centers).astype(np.float32),
                })
        return writer.finish()


def write_nyu_like(root: str | Path, split: str, n: int, seed: int) -> Path:
    """Write `n` fake frames to `root/split` in exactly NYU's file format; return that folder.

    Each frame is a "hand" of 36 spheres (radius 12 mm) at random joint
    positions 400-900 mm away, in front of a wall at 1500 mm, so that the
    loader's centre finding has background to ignore. Kinects 2 and 3 get the
    same joints (the loader reads kinect 1 only).
    """
    import scipy.io
    from PIL import Image

    if n <= 0:
        raise UserError(f"number of frames must be > 0, got {n}")
    rng = np.random.default_rng(seed)
    split_dir = Path(root) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    palm_xyz = np.stack([rng.uniform(-80, 80, n), rng.uniform(-60, 60, n), rng.uniform(400, 900, n)], -1)
    joints_xyz = palm_xyz[:, None, :] + rng.uniform(-70, 70, (n, NUM_NYU_JOINTS, 3))
    joints_xyz[:, NYU_PALM_INDEX] = palm_xyz
    joints_uvd = xyz_to_uvd(joints_xyz)
    radius_mm = 12.0
    for frame in range(n):
        depth = np.full((NYU_CAMERA.height, NYU_CAMERA.width), 1500.0)
        # Render only the box holding the spheres: sphere j covers the pixels within its
        # projected radius, where its front surface is at z - sqrt(r^2 - rho^2).
        ju, jv, jz = (joints_uvd[frame, :, k][:, None, None] for k in range(3))
        reach_px = radius_mm * NYU_CAMERA.fx / jz.min()
        left, top = (max(int(c.min() - reach_px), 0) for c in (ju, jv))
        right = min(int(ju.max() + reach_px) + 2, NYU_CAMERA.width)
        bottom = min(int(jv.max() + reach_px) + 2, NYU_CAMERA.height)
        v, u = np.mgrid[top:bottom, left:right]
        rho_mm = np.hypot(u - ju, v - jv) * jz / NYU_CAMERA.fx
        surface = np.where(rho_mm < radius_mm, jz - np.sqrt(np.maximum(radius_mm**2 - rho_mm**2, 0)), np.inf)
        depth[top:bottom, left:right] = np.minimum(depth[top:bottom, left:right], surface.min(axis=0))
        depth = depth.round().astype(np.uint16)
        rgb = np.stack([np.zeros_like(depth), depth >> 8, depth & 0xFF], -1).astype(np.uint8)
        with atomic_path(split_dir / depth_png_name(frame)) as tmp:
            Image.fromarray(rgb).save(tmp, format="PNG")
    with atomic_path(split_dir / "joint_data.mat") as tmp:
        scipy.io.savemat(tmp, {
            "joint_uvd": np.repeat(joints_uvd[None], 3, axis=0),
            "joint_xyz": np.repeat(joints_xyz[None], 3, axis=0),
            "joint_names": np.array([NYU_JOINT_NAMES], dtype=object),
        })
    return split_dir
