"""Segmentation accuracy over hand pixels (paper Tables 2-3, Fig. 6), and the hand / not-hand IoU.

Accuracy counts only pixels whose ground-truth label is a hand part (1-20),
as in the paper. A hand pixel predicted 0 (not hand) counts as
wrong; it has no column in the 20 x 20 part confusion matrix. The hand IoU
compares the predicted and the true hand (label > 0) over the foreground
(depth > 0), where the 21-class network also predicts "not hand"; a network
that labels every foreground pixel with a part scores hand / foreground pixels.
Every pooled figure is a function of per-frame counts (`FrameCounts`:
per part for the accuracies, `pooled_accuracy`; the hand's intersection and
union for the IoU, `pooled_iou`), which a bootstrap over frames resamples
(`evaluation.statistics`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from keras_hpe.outputs import atomic_path
from keras_hpe.data.skeleton import NUM_LABELS, NUM_PARTS, PART_NAMES
from keras_hpe.errors import UserError

HAND_PART_NAMES = PART_NAMES[1:]
ACCURACY_MEASURES = ("per_pixel", "per_class")
_COUNT_FIELDS = ("correct", "pixels", "intersection", "union")


@dataclass(frozen=True)
class FrameCounts:
    """Per frame: per true part (1-20) the hand pixels labelled correctly and the hand pixels; the hand IoU's terms.

    correct, pixels: (N, 20) integer counts; summed over frames they give the
    pooled accuracies (`pooled_accuracy`).
    intersection, union: (N,) foreground pixels that are hand in both maps,
    and in either (`pooled_iou`); None in counts saved before the IoU was.
    """

    correct: np.ndarray
    pixels: np.ndarray
    intersection: np.ndarray | None = None
    union: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.correct.shape != self.pixels.shape or self.correct.ndim != 2 or self.correct.shape[1] != NUM_PARTS:
            raise UserError(f"frame counts: expected correct and pixels of shape (N, {NUM_PARTS}), "
                            f"got {self.correct.shape} and {self.pixels.shape}")
        if (self.correct < 0).any() or (self.correct > self.pixels).any():
            raise UserError("frame counts: correct pixels must be between 0 and the part's pixels")
        if (self.intersection is None) != (self.union is None):
            raise UserError("frame counts: give both the hand intersection and union, or neither")
        if self.union is not None:
            frames = (self.correct.shape[0],)
            if np.shape(self.intersection) != frames or np.shape(self.union) != frames:
                raise UserError(f"frame counts: expected intersection and union of shape {frames}, "
                                f"got {np.shape(self.intersection)} and {np.shape(self.union)}")
            if (self.intersection < 0).any() or (self.intersection > self.union).any():
                raise UserError("frame counts: the hand intersection must be between 0 and the union")

    @property
    def frames(self) -> int:
        return int(self.correct.shape[0])


def pooled_accuracy(correct: np.ndarray, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel and mean per-class accuracy (fractions) from part counts summed over frames.

    correct, pixels: (..., 20); returns {"per_pixel", "per_class"} of shape (...).
    The class mean is over the parts that have pixels.
    """
    present = pixels > 0
    recall = np.divide(correct, pixels, out=np.zeros(np.shape(correct)), where=present)
    return {"per_pixel": np.sum(correct, axis=-1) / np.sum(pixels, axis=-1),
            "per_class": np.sum(recall, axis=-1) / np.sum(present, axis=-1)}


def pooled_iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Hand IoU (fraction) from intersection and union summed over frames, (...) -> (...); NaN for an empty union."""
    union = np.asarray(union, dtype=np.float64)
    return np.divide(intersection, union, out=np.full(union.shape, np.nan), where=union > 0)


def save_frame_counts(path: str | os.PathLike, counts: Mapping[str, FrameCounts]) -> Path:
    """Write {name: FrameCounts} as one .npz (keys "<name>/correct", "<name>/pixels", ...), atomically."""
    path = Path(path)
    arrays = {f"{name}/{field_name}": getattr(frame_counts, field_name)
              for name, frame_counts in counts.items() for field_name in _COUNT_FIELDS
              if getattr(frame_counts, field_name) is not None}
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_frame_counts(path: str | os.PathLike) -> dict[str, FrameCounts]:
    """The {name: FrameCounts} that `save_frame_counts` wrote."""
    with np.load(path) as data:
        names = dict.fromkeys(key.rsplit("/", 1)[0] for key in data.files)
        return {name: FrameCounts(**{field_name: data[f"{name}/{field_name}"] for field_name in _COUNT_FIELDS
                                     if f"{name}/{field_name}" in data.files})
                for name in names}


@dataclass
class SegmentationScores:
    """Accuracy of predicted part labels against ground truth, over hand pixels.

    per_pixel_accuracy: fraction of hand pixels labelled correctly.
    mean_class_accuracy: mean, over the parts present in the ground truth, of
        each part's recall (`per_part_accuracy`; NaN for absent parts).
    hand_iou: intersection over union of the predicted and true hand over foreground pixels.
    confusion: (20, 20) pixel counts, row = true part 1-20, column = predicted part.
    part_pixels: (20,) ground-truth pixels of each part.
    frame_counts: the per-frame counts behind the accuracies.
    """

    per_pixel_accuracy: float
    mean_class_accuracy: float
    hand_iou: float
    per_part_accuracy: dict[str, float]
    confusion: np.ndarray
    part_pixels: np.ndarray
    frames: int
    hand_pixels: int
    frame_counts: FrameCounts = field(repr=False)

    def to_dict(self) -> dict:
        """Plain JSON-ready values (without the per-frame counts); absent parts have accuracy None."""
        return {
            "per_pixel_accuracy": self.per_pixel_accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "hand_iou": self.hand_iou,
            "per_part_accuracy": {
                name: (None if np.isnan(value) else value) for name, value in self.per_part_accuracy.items()
            },
            "confusion": self.confusion.tolist(),
            "part_pixels": dict(zip(HAND_PART_NAMES, self.part_pixels.tolist())),
            "frames": self.frames,
            "hand_pixels": self.hand_pixels,
        }


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{name}: expected integer part labels, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_LABELS):
        raise UserError(
            f"{name}: labels must be in 0..{NUM_LABELS - 1}, found {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64)


def evaluate_segmentation(
    pred_labels: np.ndarray, gt_labels: np.ndarray, depth_mm: np.ndarray | None = None
) -> SegmentationScores:
    """Score (N, S, S) predicted part maps against ground truth over hand pixels.

    depth_mm: the frames' depth (N, S, S), whose pixels > 0 are the foreground of
    the hand IoU. Without it, the IoU takes every pixel; that is the same when
    both maps are 0 where the depth is (data sets and `predict_parts` are).
    """
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    if gt_labels.ndim != 3 or pred_labels.shape != gt_labels.shape:
        raise UserError(
            f"label maps: expected prediction and ground truth of the same shape (N, S, S), "
            f"got {pred_labels.shape} and {gt_labels.shape}"
        )
    if depth_mm is not None and np.shape(depth_mm) != gt_labels.shape:
        raise UserError(f"depth_mm: expected the label maps' shape {gt_labels.shape}, got {np.shape(depth_mm)}")
    gt = _check_labels(gt_labels, "ground-truth labels")
    pred = _check_labels(pred_labels, "predicted labels")
    hand = gt > 0
    if not hand.any():
        raise UserError("ground-truth labels: no hand pixels (all labels are 0)")
    true_part, pred_part = gt[hand], pred[hand]
    part_pixels = np.bincount(true_part, minlength=NUM_LABELS)[1:]
    # Hand pixels predicted not hand are errors outside the part x part table.
    labelled = pred_part > 0
    confusion = np.bincount(
        (true_part[labelled] - 1) * NUM_PARTS + (pred_part[labelled] - 1), minlength=NUM_PARTS**2
    ).reshape(NUM_PARTS, NUM_PARTS)
    frames = gt.shape[0]
    slot = np.nonzero(hand)[0] * NUM_PARTS + (true_part - 1)  # (frame, part) of every hand pixel
    foreground = np.ones(gt.shape, dtype=bool) if depth_mm is None else np.asarray(depth_mm) > 0
    pred_hand, true_hand = (pred > 0) & foreground, hand & foreground
    frame_counts = FrameCounts(
        correct=np.bincount(slot[pred_part == true_part], minlength=frames * NUM_PARTS).reshape(frames, NUM_PARTS),
        pixels=np.bincount(slot, minlength=frames * NUM_PARTS).reshape(frames, NUM_PARTS),
        intersection=np.count_nonzero(pred_hand & true_hand, axis=(1, 2)),
        union=np.count_nonzero(pred_hand | true_hand, axis=(1, 2)),
    )
    pooled = pooled_accuracy(np.diag(confusion), part_pixels)
    present = part_pixels > 0
    recall = np.full(NUM_PARTS, np.nan)
    recall[present] = np.diag(confusion)[present] / part_pixels[present]
    return SegmentationScores(
        per_pixel_accuracy=float(pooled["per_pixel"]),
        mean_class_accuracy=float(pooled["per_class"]),
        hand_iou=float(pooled_iou(frame_counts.intersection.sum(), frame_counts.union.sum())),
        per_part_accuracy={name: float(value) for name, value in zip(HAND_PART_NAMES, recall)},
        confusion=confusion,
        part_pixels=part_pixels,
        frames=int(frames),
        hand_pixels=int(true_part.size),
        frame_counts=frame_counts,
    )


def plot_confusion(scores: SegmentationScores, out_png: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the row-normalised confusion matrix (% of each true part); atomic write."""
    from matplotlib.figure import Figure

    # Rows of absent parts stay NaN (blank) rather than a misleading 0 %.
    percent = np.divide(
        100.0 * scores.confusion, scores.part_pixels[:, None],
        out=np.full(scores.confusion.shape, np.nan), where=scores.part_pixels[:, None] > 0,
    )
    figure = Figure(figsize=(9, 8), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    figure.colorbar(image, ax=axes, shrink=0.8, label="% of the true part's pixels")
    ticks = np.arange(NUM_PARTS)
    axes.set_xticks(ticks, HAND_PART_NAMES, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    axes.set_yticks(ticks, HAND_PART_NAMES, fontsize=8)
    axes.set_xlabel("predicted part")
    axes.set_ylabel("true part")
    true_index, pred_index = np.nonzero(np.nan_to_num(percent) >= 0.5)
    for i, j in zip(true_index, pred_index):
        value = percent[i, j]
        axes.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                  color="white" if value > 60 else "black")
    axes.set_title(
        (f"{title}\n" if title else "")
        + f"per-pixel accuracy {100 * scores.per_pixel_accuracy:.1f}%, "
        f"mean per-class accuracy {100 * scores.mean_class_accuracy:.1f}%"
    )
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=120)
    return out_png


def plot_per_part_accuracy(
    results: Mapping[str, SegmentationScores], out_png: str | os.PathLike, title: str | None = None
) -> Path:
    """Grouped bars of each part's accuracy for several methods (paper Fig. 6); atomic write."""
    from matplotlib.figure import Figure

    if not results:
        raise UserError("plot_per_part_accuracy: no results to plot")
    labels = [*HAND_PART_NAMES, "mean per class"]
    positions = np.arange(len(labels))
    width = 0.8 / len(results)
    figure = Figure(figsize=(12, 5.5), layout="constrained")
    axes = figure.subplots()
    for index, (name, scores) in enumerate(results.items()):
        values = [*scores.per_part_accuracy.values(), scores.mean_class_accuracy]
        axes.bar(
            positions - 0.4 + width * (index + 0.5),
            100.0 * np.array(values),
            width,
            label=f"{name} (pixel {100 * scores.per_pixel_accuracy:.1f}%, "
            f"class {100 * scores.mean_class_accuracy:.1f}%)",
        )
    # A part no method's ground truth contains has no bar; say so instead of showing 0 %.
    accuracies = np.array([list(scores.per_part_accuracy.values()) for scores in results.values()])
    absent = np.isnan(accuracies).all(axis=0)
    for position in positions[:-1][absent]:
        axes.text(position, 1, "absent", rotation=90, ha="center", va="bottom", fontsize=7, color="gray")
    axes.axvline(len(labels) - 1.5, color="gray", linestyle="--", linewidth=1)
    axes.set_xticks(positions, labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    axes.set_xlim(-0.6, len(labels) - 0.4)
    axes.set_ylim(0, 100)
    axes.set_ylabel("accuracy per part (%)")
    axes.grid(True, axis="y", alpha=0.4)
    axes.legend(
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(3, len(results)), fontsize=8, frameon=False
    )
    if title:
        figure.suptitle(title)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=120)
    return out_png
