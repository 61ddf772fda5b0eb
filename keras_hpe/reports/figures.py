"""The paper's picture figures: Fig. 5 (segmentation examples), Fig. 7 (restoration failures), Fig. 9 (pose montage).

Arrays in, PNG out (written atomically). The plots of Fig. 6 (per-part
accuracy) and Fig. 8 (success curves) are `evaluation.segmentation.plot_per_part_accuracy`
and `evaluation.joints.plot_success_curves`. Every panel is `panel_px` square,
so a figure's size in pixels is known in advance: (columns x panel_px,
rows x panel_px + CAPTION_PX), Fig. 7's text column counting as two.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from keras_hpe.outputs import atomic_path
from keras_hpe.data.camera import NYU_CAMERA, Camera, xyz_to_uvd
from keras_hpe.data.crop import CUBE_MM, uvd_to_crop
from keras_hpe.data.show import PART_RGB, labels_rgb
from keras_hpe.data.skeleton import JOINT_NAMES, JOINT_PARTS, NUM_JOINTS, NUM_LABELS, PART_NAMES, SKELETON_EDGES
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import evaluate_joints
from keras_hpe.evaluation.segmentation import evaluate_segmentation

if TYPE_CHECKING:
    from keras_hpe.restoration.quality import QualityGate

CAPTION_PX = 24  # the strip of column titles (Fig. 5, 7) or legend (Fig. 9)
FIG9_FRAMES = 24  # the paper shows 24 random test frames
_DPI = 100
_PALM_BONE_RGB = (1.0, 0.15, 0.15)
_GT_COLOR = "white"

SEGMENTATION_COLUMNS = ("depth", "synthetic only", "restored", "fine-tuned", "ground truth")
FAILURE_COLUMNS = ("annotated joints", "stage-1 prediction", "restored (rejected)", "why it was rejected")
_FAILURE_WIDTHS = (1, 1, 1, 2)  # the reasons take two panels' width
MOVED_JOINTS = 3  # Fig. 7 names the joints whose barycenters moved farthest away


def plot_segmentation_examples(
    out_png: str | os.PathLike,
    depth_mm: np.ndarray,
    *,
    synthetic_only: np.ndarray | None,
    restored: np.ndarray | None,
    fine_tuned: np.ndarray | None,
    ground_truth: np.ndarray,
    panel_px: int = 128,
) -> Path:
    """Paper Fig. 5: one row per frame; depth, three predictions, ground truth.

    `depth_mm` is (N, S, S) crops; the label maps are (N, S, S) part ids drawn
    in `skeleton.PART_COLORS`, not hand grey and no depth black (`data.show.labels_rgb`). A prediction that was not made (None) shows
    "not run". Each prediction panel gives its per-pixel accuracy on the frame.
    """
    depth_mm = _check_depth(depth_mm)
    maps = {"synthetic only": synthetic_only, "restored": restored, "fine-tuned": fine_tuned,
            "ground truth": ground_truth}
    for name, labels in maps.items():
        if labels is not None:
            maps[name] = _check_labels(labels, name, depth_mm.shape)
    if maps["ground truth"] is None:
        raise UserError("segmentation examples: the ground-truth label maps are required")
    gt = maps["ground truth"]
    figure, axes = _panel_grid(len(depth_mm), len(SEGMENTATION_COLUMNS), panel_px, caption_on_top=True)
    _column_titles(figure, SEGMENTATION_COLUMNS, (1,) * len(SEGMENTATION_COLUMNS))
    for row, depth in enumerate(depth_mm):
        _show_depth(axes[row, 0], depth)
        for column, name in enumerate(SEGMENTATION_COLUMNS[1:], start=1):
            ax = axes[row, column]
            labels = maps[name]
            if labels is None:
                ax.imshow(np.zeros_like(gt[row]), cmap="gray", vmin=0, vmax=1)
                ax.text(0.5, 0.5, "not run", ha="center", va="center", color="gray", transform=ax.transAxes)
                continue
            ax.imshow(labels_rgb(labels[row], depth), interpolation="nearest")
            if name != "ground truth" and (gt[row] > 0).any():
                accuracy = evaluate_segmentation(labels[row : row + 1], gt[row : row + 1]).per_pixel_accuracy
                _corner_text(ax, f"{100 * accuracy:.0f}%")
    return _save(figure, out_png)


def plot_restoration_failures(
    out_png: str | os.PathLike,
    depth_mm: np.ndarray,
    raw: np.ndarray,
    restored: np.ndarray,
    joints_xyz: np.ndarray,
    center_uvd: np.ndarray,
    gate: QualityGate,
    *,
    frame_ids: np.ndarray,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
    panel_px: int = 128,
) -> Path:
    """Paper Fig. 7: restorations the barycenter gate rejected, one row per frame, with the reasons.

    Columns: the depth crop (N, S, S) with the annotated skeleton (`joints_xyz` (N, 14, 3) mm) in the
    parts' colours; the stage-1 prediction `raw` and its restoration `restored` (N, S, S) part ids, each
    with its quality in the corner and, for the `MOVED_JOINTS` joints whose barycenters moved farthest
    from them in the restoration, a white line from the point measured (dot) to the annotated joint;
    then the reasons in words: both qualities (the mean barycenter-to-joint distance over the joints shown, mm), those
    joints and how much farther they are, and the parts the restoration removed. `gate` is
    `restoration.quality.gate_restorations` of exactly these maps; `frame_ids` name the frames.
    """
    depth_mm = _check_depth(depth_mm)
    count, size = depth_mm.shape[0], depth_mm.shape[1]
    maps = {name: _check_labels(labels, name, depth_mm.shape) for name, labels in
            (("stage-1 prediction", raw), ("restored", restored))}
    joints_xyz = _check_joints(joints_xyz, "annotated joints", count)
    center_uvd = np.asarray(center_uvd, dtype=np.float64)
    frame_ids = np.asarray(frame_ids)
    if center_uvd.shape != (count, 3) or frame_ids.shape != (count,) or gate.raw_joint_mm.shape != (count, NUM_JOINTS):
        raise UserError(f"restoration failures: crop centres, frame ids and the gate must describe {count} frames")

    def crop_px(xyz: np.ndarray) -> np.ndarray:
        return uvd_to_crop(xyz_to_uvd(xyz, camera), center_uvd, size, cube_mm, camera)

    joints_px = crop_px(joints_xyz)
    measured_px = {"stage-1 prediction": crop_px(gate.raw_xyz), "restored": crop_px(gate.restored_xyz)}
    qualities = {"stage-1 prediction": gate.raw_quality_mm, "restored": gate.restored_quality_mm}
    figure, axes = _panel_grid(count, len(FAILURE_COLUMNS), panel_px, caption_on_top=True, widths=_FAILURE_WIDTHS)
    _column_titles(figure, FAILURE_COLUMNS, _FAILURE_WIDTHS)
    for row in range(count):
        moved = gate.moved_away(row, MOVED_JOINTS)
        _show_depth(axes[row, 0], depth_mm[row], dim=True)
        _draw_skeleton(axes[row, 0], joints_px[row], _bone_colors(), "white", linestyle="-", linewidth=1.2)
        for column, name in enumerate(maps, start=1):
            ax = axes[row, column]
            ax.imshow(labels_rgb(maps[name][row], depth_mm[row]), interpolation="nearest")
            for joint, _ in moved:
                (u0, v0), (u1, v1) = measured_px[name][row, joint, :2], joints_px[row, joint, :2]
                ax.plot([u0, u1], [v0, v1], color="white", linewidth=1)
                ax.scatter([u0], [v0], s=10, color="white", edgecolors="black", linewidths=0.5, zorder=3)
            _corner_text(ax, f"{qualities[name][row]:.0f} mm")
        for ax in axes[row, :3]:
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
        reasons = _rejection_text(gate, row, frame_ids[row], moved)
        axes[row, 3].text(0.03, 0.5, reasons, transform=axes[row, 3].transAxes, ha="left", va="center", fontsize=7,
                          linespacing=1.3)
    return _save(figure, out_png)


def _rejection_text(gate: QualityGate, row: int, frame_id: int, moved: list[tuple[int, float]]) -> str:
    """Why frame `row`'s restoration was rejected, in a few short lines."""
    raw, restored = gate.raw_quality_mm[row], gate.restored_quality_mm[row]
    lines = [f"frame #{frame_id}: quality {raw:.1f} mm raw,", f"{restored:.1f} mm restored ({restored - raw:+.1f} mm)"]
    if moved:
        lines.append("barycenters farther from their joints:")
        lines += [f"  {JOINT_NAMES[joint].replace('_', ' ')} +{mm:.1f} mm" for joint, mm in moved]
    vanished = [PART_NAMES[part].replace("_", " ") for part in np.flatnonzero(gate.vanished[row])]
    if vanished:
        lines += textwrap.wrap("parts removed: " + ", ".join(vanished), 44, subsequent_indent="  ")
    return "\n".join(lines)


def plot_pose_montage(
    out_png: str | os.PathLike,
    depth_mm: np.ndarray,
    pred_uvd: np.ndarray,
    center_uvd: np.ndarray,
    *,
    gt_uvd: np.ndarray | None = None,
    frame_ids: np.ndarray | None = None,
    cube_mm: float = CUBE_MM,
    camera: Camera = NYU_CAMERA,
    columns: int = 6,
    panel_px: int = 128,
) -> Path:
    """Paper Fig. 9: predicted skeletons drawn on the depth crops of test frames.

    `depth_mm` (N, S, S) crops, `pred_uvd` / `gt_uvd` (N, 14, 3) full-image
    joints, `center_uvd` (N, 3) the crop centres; joints are projected into
    crop pixels with `crop.uvd_to_crop`. The prediction is drawn in the parts'
    colours, the ground truth (if given) dashed in white, and each panel names
    its frame (`frame_ids`, default 0..N-1) and, with ground truth, the
    frame's mean 3D error.
    """
    depth_mm = _check_depth(depth_mm)
    count, size = depth_mm.shape[0], depth_mm.shape[1]
    pred_uvd = _check_joints(pred_uvd, "predicted joints", count)
    center_uvd = np.asarray(center_uvd, dtype=np.float64)
    if center_uvd.shape != (count, 3):
        raise UserError(f"crop centres: expected shape ({count}, 3), got {center_uvd.shape}")
    frame_ids = np.arange(count) if frame_ids is None else np.asarray(frame_ids)
    if frame_ids.shape != (count,):
        raise UserError(f"frame ids: expected shape ({count},), got {frame_ids.shape}")
    if columns < 1:
        raise UserError(f"columns must be >= 1, got {columns}")
    pred_px = uvd_to_crop(pred_uvd, center_uvd, size, cube_mm, camera)
    if gt_uvd is not None:
        gt_uvd = _check_joints(gt_uvd, "ground-truth joints", count)
        gt_px = uvd_to_crop(gt_uvd, center_uvd, size, cube_mm, camera)
        frame_error_mm = evaluate_joints(pred_uvd, gt_uvd).errors_mm.mean(axis=1)
    columns = min(columns, count)
    rows = -(-count // columns)
    figure, axes = _panel_grid(rows, columns, panel_px, caption_on_top=False)
    legend = "prediction: coloured skeleton" + (", ground truth: dashed white" if gt_uvd is not None else "")
    figure.text(0.5, 0.5 * CAPTION_PX / figure.bbox.height, legend, ha="center", va="center", fontsize=8)
    for k in range(count):
        ax = axes.flat[k]
        _show_depth(ax, depth_mm[k], dim=True)
        if gt_uvd is not None:
            _draw_skeleton(ax, gt_px[k], [_GT_COLOR] * len(SKELETON_EDGES), _GT_COLOR, linestyle="--", linewidth=1)
        _draw_skeleton(ax, pred_px[k], _bone_colors(), "white", linestyle="-", linewidth=1.6)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        label = f"#{frame_ids[k]}" + (f"  {frame_error_mm[k]:.1f} mm" if gt_uvd is not None else "")
        _corner_text(ax, label, top=True)
    return _save(figure, out_png)


def sample_frames(count: int, n: int = FIG9_FRAMES, seed: int = 0) -> np.ndarray:
    """`n` distinct frame indices drawn at random from `count` (all if fewer), sorted."""
    if count < 1 or n < 1:
        raise UserError(f"sample_frames: need count >= 1 and n >= 1, got {count} and {n}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(n, count), replace=False))


def _bone_colors() -> list:
    """Each finger's bones in the colour of its proximal phalanx (saturated, unlike the pale tips); palm red."""
    colors = []
    for outer, _ in SKELETON_EDGES:
        part = JOINT_PARTS[outer][-1]
        if part == 1:
            colors.append(_PALM_BONE_RGB)
            continue
        # Thumb parts are 2-4 (proximal 3); other fingers 4 parts from 5 on (knuckle, proximal, ...).
        proximal = 3 if part <= 4 else part - (part - 5) % 4 + 1
        colors.append(tuple(PART_RGB[proximal] / 255.0))
    return colors


def _draw_skeleton(
    ax, joints_px: np.ndarray, bone_colors: list, joint_color: str, linestyle: str, linewidth: float
) -> None:
    for (a, b), color in zip(SKELETON_EDGES, bone_colors):
        ax.plot(joints_px[[a, b], 0], joints_px[[a, b], 1], color=color, linestyle=linestyle, linewidth=linewidth)
    ax.scatter(joints_px[:, 0], joints_px[:, 1], s=5, color=joint_color, edgecolors="none", zorder=3)


def _panel_grid(rows: int, columns: int, panel_px: int, caption_on_top: bool, widths: Sequence[int] | None = None):
    """A figure of rows x columns panels, axes off, plus a caption strip; column k is `widths[k]` panels wide
    (default 1: square panels)."""
    from matplotlib.figure import Figure

    if panel_px < 16:
        raise UserError(f"panel size must be >= 16 px, got {panel_px}")
    widths = tuple(widths or (1,) * columns)
    width_px, height_px = sum(widths) * panel_px, rows * panel_px + CAPTION_PX
    figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    caption = CAPTION_PX / height_px
    # Thin white gaps keep neighbouring black backgrounds apart.
    figure.subplots_adjust(left=0, right=1, wspace=0.03, hspace=0.03,
                           top=1 - caption if caption_on_top else 1, bottom=0 if caption_on_top else caption)
    axes = figure.subplots(rows, columns, squeeze=False, width_ratios=widths)
    for ax in axes.flat:
        ax.set_axis_off()
    return figure, axes


def _column_titles(figure, titles: Sequence[str], widths: Sequence[int]) -> None:
    """Each column's title centred over it in the caption strip on top."""
    edges = np.cumsum((0, *widths)) / sum(widths)
    for title, left, right in zip(titles, edges[:-1], edges[1:]):
        figure.text((left + right) / 2, 1 - 0.5 * CAPTION_PX / figure.bbox.height, title, ha="center",
                    va="center", fontsize=9)


def _show_depth(ax, depth_mm: np.ndarray, dim: bool = False) -> None:
    """Depth in grey as in data.show: near is bright, no data is black.

    `dim` keeps the hand in mid greys so that coloured and white lines on top stay visible.
    """
    import matplotlib

    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="black")
    depth = np.ma.masked_equal(depth_mm, 0)
    near, far = (float(depth.min()), float(depth.max())) if depth.count() else (0.0, 1.0)
    spread = max(far - near, 1.0)
    limits = (near - 0.3 * spread, far + 0.4 * spread) if dim else (near, far)
    ax.imshow(depth, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")


def _corner_text(ax, text: str, top: bool = False) -> None:
    ax.text(0.03, 0.97 if top else 0.03, text, transform=ax.transAxes, ha="left", va="top" if top else "bottom",
            fontsize=7, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})


def _save(figure, out_png: str | os.PathLike) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return out_png


def _check_depth(depth_mm: np.ndarray) -> np.ndarray:
    depth_mm = np.asarray(depth_mm)
    if depth_mm.ndim != 3 or depth_mm.shape[0] == 0 or depth_mm.shape[1] != depth_mm.shape[2]:
        raise UserError(f"depth crops: expected shape (N>0, S, S), got {depth_mm.shape}")
    if not np.all(np.isfinite(depth_mm)) or np.any(depth_mm < 0):
        raise UserError("depth crops: expected finite depth in mm >= 0 (0 = no data)")
    return depth_mm


def _check_labels(labels: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise UserError(f"{name} label maps: expected shape {shape} like the depth crops, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_LABELS:
        raise UserError(f"{name} label maps: expected integer part ids 0..{NUM_LABELS - 1}")
    return labels


def _check_joints(joints_uvd: np.ndarray, name: str, count: int) -> np.ndarray:
    joints_uvd = np.asarray(joints_uvd, dtype=np.float64)
    if joints_uvd.shape != (count, NUM_JOINTS, 3):
        raise UserError(f"{name}: expected shape ({count}, {NUM_JOINTS}, 3), got {joints_uvd.shape}")
    return joints_uvd
