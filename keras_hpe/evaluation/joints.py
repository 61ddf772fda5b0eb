"""The standard NYU joint protocol: 3D and 2D errors, per-joint means, success curves.

The numbers published for NYU are computed with the community's evaluation code
(xinghaochen/awesome-hand-pose-estimation, `evaluation/src/util.py` and
`compute_error.py`). This module follows it step by step, so that published
predictions give the published figures:

- joints are uvd text, one frame a line, 14 joints x (u px, v px, d mm);
- ground truth and prediction are both converted to xyz with the rounded
  intrinsics fx = 588.03, fy = -587.07, u0 = 320, v0 = 240. Its
  y = (v - v0) d / (-587.07) is, bit for bit, our y-up y = (cy - v) d / 587.07,
  hence `COMMUNITY_NYU_CAMERA` below;
- error = Euclidean distance per frame and joint; each joint's mean over the
  frames, then the mean of those 14 means (= the mean over all joint instances);
- success rates count errors <= D, for the maximum joint error of a frame
  (paper Fig. 8, "max"), its mean joint error ("mean"), or every joint ("joint").

The exact Kinect intrinsics (`camera.NYU_CAMERA`, 588.036865 / 587.075073) differ
from the rounded ones by about 1e-5 relative, which moves a 20 mm error by about
2e-4 mm: both cameras agree to 0.001 mm on ordinary errors, and the community
one is the default so that published numbers come out exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from keras_hpe.outputs import atomic_path
from keras_hpe.data.camera import Camera, uvd_to_xyz
from keras_hpe.data.skeleton import JOINT_NAMES, NUM_JOINTS
from keras_hpe.errors import UserError

# The rounded NYU intrinsics of the community evaluation code (see module docstring).
COMMUNITY_NYU_CAMERA = Camera(fx=588.03, fy=587.07, cx=320.0, cy=240.0)

DEFAULT_THRESHOLDS_MM = np.arange(0.0, 81.0)  # D = 0, 1, ..., 80 mm
CURVE_MODES = ("max", "mean", "joint")
NUMBERS_PER_LINE = NUM_JOINTS * 3

_CURVE_LABELS = {
    "max": "fraction of frames with all joints within D (%)",
    "mean": "fraction of frames with mean joint error within D (%)",
    "joint": "fraction of joints within D (%)",
}


@dataclass
class JointErrors:
    """Joint errors of one method on one test set, by the NYU protocol.

    `curves[mode]` is the success rate at each of `thresholds_mm` for the modes
    of `success_curve`; `errors_mm` (N, 14) keeps every frame's joint errors.
    """

    mean_3d_mm: float
    per_joint_mm: dict[str, float]
    mean_2d_px: float
    frames: int
    thresholds_mm: np.ndarray
    curves: dict[str, np.ndarray]
    errors_mm: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        """Summary as plain JSON-ready values (without the per-frame errors)."""
        return {
            "mean_3d_mm": self.mean_3d_mm,
            "per_joint_mm": dict(self.per_joint_mm),
            "mean_2d_px": self.mean_2d_px,
            "frames": self.frames,
            "thresholds_mm": self.thresholds_mm.tolist(),
            "curves": {mode: curve.tolist() for mode, curve in self.curves.items()},
        }


def _check_uvd(uvd: np.ndarray, name: str) -> np.ndarray:
    uvd = np.asarray(uvd, dtype=np.float64)
    if uvd.ndim != 3 or uvd.shape[1:] != (NUM_JOINTS, 3) or uvd.shape[0] == 0:
        raise UserError(f"{name}: expected joints of shape (N>0, {NUM_JOINTS}, 3), got {uvd.shape}")
    bad = ~np.isfinite(uvd).all(axis=(1, 2))
    if bad.any():
        raise UserError(f"{name}: frame {int(np.argmax(bad))} has NaN or infinite values")
    bad = ~(uvd[..., 2] > 0).all(axis=1)
    if bad.any():
        raise UserError(f"{name}: frame {int(np.argmax(bad))} has a joint with depth <= 0 mm")
    return uvd


def success_curve(
    errors_mm: np.ndarray,
    thresholds_mm: np.ndarray = DEFAULT_THRESHOLDS_MM,
    mode: str = "max",
) -> np.ndarray:
    """Success rate in [0, 1] at each threshold D, for (N, J) joint errors.

    mode "max": fraction of frames whose maximum joint error <= D (paper Fig. 8);
    "mean": frames whose mean joint error <= D; "joint": joint instances <= D.
    """
    errors_mm = np.asarray(errors_mm, dtype=np.float64)
    if errors_mm.ndim != 2 or errors_mm.size == 0:
        raise UserError(f"errors_mm: expected shape (N>0, J>0), got {errors_mm.shape}")
    if mode == "max":
        values = errors_mm.max(axis=1)
    elif mode == "mean":
        values = errors_mm.mean(axis=1)
    elif mode == "joint":
        values = errors_mm.ravel()
    else:
        raise UserError(f"success curve mode must be one of {', '.join(CURVE_MODES)}, got {mode!r}")
    counts = np.searchsorted(np.sort(values), np.asarray(thresholds_mm, dtype=np.float64), side="right")
    return counts / values.size


def evaluate_joints(
    pred_uvd: np.ndarray,
    gt_uvd: np.ndarray,
    camera: Camera = COMMUNITY_NYU_CAMERA,
    thresholds_mm: np.ndarray = DEFAULT_THRESHOLDS_MM,
) -> JointErrors:
    """Score (N, 14, 3) uvd predictions against ground truth by the NYU protocol."""
    pred_uvd = _check_uvd(pred_uvd, "prediction")
    gt_uvd = _check_uvd(gt_uvd, "ground truth")
    if pred_uvd.shape[0] != gt_uvd.shape[0]:
        raise UserError(
            f"prediction has {pred_uvd.shape[0]} frames but ground truth has {gt_uvd.shape[0]}"
        )
    errors_mm = np.sqrt(np.sum((uvd_to_xyz(gt_uvd, camera) - uvd_to_xyz(pred_uvd, camera)) ** 2, axis=2))
    errors_px = np.sqrt(np.sum((gt_uvd[..., :2] - pred_uvd[..., :2]) ** 2, axis=2))
    # Mean per joint first, then over joints: the community code's order of sums.
    per_joint_mm = np.mean(errors_mm, axis=0)
    thresholds_mm = np.asarray(thresholds_mm, dtype=np.float64)
    return JointErrors(
        mean_3d_mm=float(np.mean(per_joint_mm)),
        per_joint_mm={name: float(e) for name, e in zip(JOINT_NAMES, per_joint_mm)},
        mean_2d_px=float(np.mean(np.mean(errors_px, axis=0))),
        frames=int(errors_mm.shape[0]),
        thresholds_mm=thresholds_mm,
        curves={mode: success_curve(errors_mm, thresholds_mm, mode) for mode in CURVE_MODES},
        errors_mm=errors_mm,
    )


def read_joints_txt(path: str | os.PathLike) -> np.ndarray:
    """Read the community's uvd text format into (N, 14, 3) float64.

    One line per frame with 42 whitespace-separated numbers: 14 joints x
    (u px, v px, d mm). Blank lines at the end of the file are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such joints file")
    try:
        lines = path.read_text().rstrip().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file of joints") from None
    if not lines:
        raise UserError(f"{path}: the joints file is empty")
    rows = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if len(tokens) != NUMBERS_PER_LINE:
            raise UserError(
                f"{path}: line {number}: expected {NUMBERS_PER_LINE} numbers "
                f"({NUM_JOINTS} joints x u, v, d), found {len(tokens)}"
            )
        try:
            rows.append([float(token) for token in tokens])
        except ValueError as error:
            raise UserError(f"{path}: line {number}: not a number ({error})") from None
    values = np.array(rows, dtype=np.float64)
    uvd = values.reshape(-1, NUM_JOINTS, 3)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise UserError(f"{path}: line {int(np.argmax(bad)) + 1}: NaN or infinite value")
    bad = ~(uvd[..., 2] > 0).all(axis=1)
    if bad.any():
        raise UserError(f"{path}: line {int(np.argmax(bad)) + 1}: a joint has depth <= 0 mm")
    return uvd


def read_published_predictions(folder: str | os.PathLike, frames: int) -> dict[str, np.ndarray]:
    """Other methods' published predictions: every `*.txt` file of `folder` (`read_joints_txt`), by method name
    (the file name without `.txt`), in name order; each must hold one line per frame of the `frames` evaluated."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"prediction folder {folder} does not exist")
    paths = sorted(folder.glob("*.txt"))
    if not paths:
        raise UserError(f"prediction folder {folder} holds no *.txt file (one per method, one line per test frame)")
    predictions = {}
    for path in paths:
        predictions[path.stem] = read_joints_txt(path)
        if len(predictions[path.stem]) != frames:
            raise UserError(f"{path} has {len(predictions[path.stem])} lines, but the test split evaluated has "
                            f"{frames} frames: one line per frame, in order")
    return predictions


def plot_success_curves(
    results: Mapping[str, JointErrors],
    out_png: str | os.PathLike,
    mode: str = "max",
    title: str | None = None,
) -> Path:
    """Plot the success curves of several methods on one figure (paper Fig. 8).

    Each method's legend shows its mean 3D error; written atomically to `out_png`.
    """
    from matplotlib.figure import Figure

    if not results:
        raise UserError("plot_success_curves: no results to plot")
    if mode not in CURVE_MODES:
        raise UserError(f"success curve mode must be one of {', '.join(CURVE_MODES)}, got {mode!r}")
    figure = Figure(figsize=(7, 6), layout="constrained")
    axes = figure.subplots()
    line_styles = ("-", "--", "-.", ":")
    for index, (name, errors) in enumerate(results.items()):
        axes.plot(
            errors.thresholds_mm,
            100.0 * errors.curves[mode],
            linestyle=line_styles[(index // 10) % len(line_styles)],
            linewidth=2,
            label=f"{name} ({errors.mean_3d_mm:.2f} mm)",
        )
    axes.set_xlabel("distance threshold D (mm)")
    axes.set_ylabel(_CURVE_LABELS[mode])
    axes.set_xlim(0, float(max(r.thresholds_mm[-1] for r in results.values())))
    axes.set_ylim(0, 100)
    axes.set_yticks(np.arange(0, 101, 10))
    axes.grid(True, alpha=0.4)
    # Below the axes: inside, the methods' long names would cover the curves.
    figure.legend(loc="outside lower center", title="method (mean 3D error)")
    if title:
        axes.set_title(title)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=120)
    return out_png
