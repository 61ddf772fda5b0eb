"""Montage pictures of a data set: depth, part labels, joints and skeleton per frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from keras_hpe.outputs import atomic_path
from keras_hpe.data.crop import uvd_to_crop
from keras_hpe.data.dataset import load_frames, read_manifest
from keras_hpe.data.skeleton import PART_COLORS, SKELETON_EDGES
from keras_hpe.errors import UserError

PART_RGB = np.asarray(PART_COLORS, dtype=np.uint8)  # part id -> RGB, for imshow(PART_RGB[labels])
# Not hand where there is depth (the arm): a dark grey, apart from black (no depth) and the palm's light grey.
NOT_HAND_RGB = np.array((90, 90, 90), dtype=np.uint8)


def labels_rgb(labels: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
    """Label maps (..., S, S) -> RGB (..., S, S, 3) uint8: parts in `PART_COLORS`, not hand grey, no depth black."""
    rgb = PART_RGB[labels]
    rgb[(np.asarray(labels) == 0) & (np.asarray(depth_mm) > 0)] = NOT_HAND_RGB
    return rgb


def montage(data_dir: str | Path, out_png: str | Path, n: int = 16) -> Path:
    """Draw `n` frames spread evenly over the data set at `data_dir` into `out_png`.

    Each frame shows its depth crop in grey (no data black) with the joints
    and skeleton projected to crop pixels on top, and, when the data set has
    labels, a second panel with the parts in their fixed colours
    (`skeleton.PART_COLORS`; not hand grey, `labels_rgb`). Titles give the domain and frame index.
    """
    import matplotlib
    from matplotlib.figure import Figure

    if n <= 0:
        raise UserError(f"number of frames to show must be > 0, got {n}")
    manifest = read_manifest(data_dir)
    indices = np.unique(np.linspace(0, manifest.count - 1, min(n, manifest.count)).round().astype(int))
    has_labels = "labels" in manifest.fields
    has_joints = {"joints_uvd", "center_uvd"} <= set(manifest.fields)
    fields = ["depth_mm"] + ["labels"] * has_labels + ["joints_uvd", "center_uvd"] * has_joints
    frames = load_frames(data_dir, indices, fields)

    panels = 2 if has_labels else 1
    columns = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / columns)
    figure = Figure(figsize=(2.0 * columns * panels, 2.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns * panels, squeeze=False)
    depth_cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="black")  # near is bright, no data black
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, index in enumerate(indices):
        row, column = divmod(k, columns)
        ax = axes[row, column * panels]
        depth = np.ma.masked_equal(frames["depth_mm"][k], 0)
        ax.imshow(depth, cmap=depth_cmap, interpolation="nearest")
        ax.set_title(f"{manifest.domain} #{index}", fontsize=8)
        if has_joints:
            joints = uvd_to_crop(frames["joints_uvd"][k], frames["center_uvd"][k], manifest.size,
                                 manifest.cube_mm, manifest.camera_model)
            draw_skeleton(ax, joints, point_size=6)
            ax.set_xlim(-0.5, manifest.size - 0.5)
            ax.set_ylim(manifest.size - 0.5, -0.5)
        if has_labels:
            parts_ax = axes[row, column * panels + 1]
            parts_ax.imshow(labels_rgb(frames["labels"][k], frames["depth_mm"][k]), interpolation="nearest")
            parts_ax.set_title(f"{manifest.domain} #{index} parts", fontsize=8)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(out_png)


def draw_skeleton(ax, joints_px: np.ndarray, point_size: float = 8) -> None:
    """Draw the 14-joint skeleton (yellow bones, red joints) at pixel positions (14, 2+) on `ax`."""
    for a, b in SKELETON_EDGES:
        ax.plot(joints_px[[a, b], 0], joints_px[[a, b], 1], color="yellow", linewidth=1)
    ax.scatter(joints_px[:, 0], joints_px[:, 1], s=point_size, color="red", zorder=3)
