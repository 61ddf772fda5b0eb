"""`keras-hpe evaluate-seg`: segmentation accuracy of a model on a labelled data set (paper Tables 2-3)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from keras_hpe.data.show import labels_rgb
from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import HAND_PART_NAMES, SegmentationScores
from keras_hpe.outputs import atomic_path, check_output_folder, output_folder, write_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `evaluate-seg` sub-command."""
    parser = subparsers.add_parser(
        "evaluate-seg",
        help="per-pixel and mean per-class accuracy of a segmentation model over hand pixels",
        description=(
            "Segments every frame of a labelled data set (synthetic, or the sensor domain's "
            "--eval-labels split) and scores the parts over hand pixels. Prints a per-part table; "
            "the last line printed is a JSON summary."
        ),
    )
    parser.add_argument("--model", type=Path, required=True,
                        help="segmentation model (.keras), e.g. OUT/seg_synth.keras")
    parser.add_argument("--data", type=Path, required=True, help="labelled data set folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for scores.json, confusion.png and examples.png (default: print only)")
    parser.add_argument("--examples", type=int, default=8, help="frames drawn in examples.png (default: 8)")
    parser.add_argument("--batch", type=int, default=64, help="frames per inference batch (default: 64)")
    parser.set_defaults(func=run)


def format_table(scores: SegmentationScores) -> str:
    """Per-part accuracy and pixel counts, then the headline figures."""
    lines = [f"{'part':<18} {'accuracy':>9} {'pixels':>9}"]
    for name, pixels in zip(HAND_PART_NAMES, scores.part_pixels):
        accuracy = scores.per_part_accuracy[name]
        shown = "-" if np.isnan(accuracy) else f"{100 * accuracy:.2f}%"
        lines.append(f"{name:<18} {shown:>9} {int(pixels):>9}")
    lines.append(f"per-pixel accuracy: {100 * scores.per_pixel_accuracy:.2f}% over {scores.hand_pixels} hand pixels "
                 f"of {scores.frames} frames")
    lines.append(f"mean per-class accuracy: {100 * scores.mean_class_accuracy:.2f}%")
    lines.append(f"hand / not-hand IoU over foreground pixels: {100 * scores.hand_iou:.2f}%")
    return "\n".join(lines)


def plot_examples(
    depth_mm: np.ndarray, pred_labels: np.ndarray, gt_labels: np.ndarray, out_png: str | Path, n: int = 8
) -> Path:
    """Draw n frames spread over the set: depth, prediction and ground truth (`labels_rgb`); atomic write."""
    from matplotlib.figure import Figure

    if n <= 0:
        raise UserError(f"number of example frames must be > 0, got {n}")
    indices = np.unique(np.linspace(0, len(depth_mm) - 1, min(n, len(depth_mm))).round().astype(int))
    figure = Figure(figsize=(6, 2 * len(indices)), layout="constrained")
    axes = figure.subplots(len(indices), 3, squeeze=False)
    for row, index in zip(axes, indices):
        depth = np.ma.masked_equal(depth_mm[index], 0)
        panels = [(depth, f"#{index} depth"), (labels_rgb(pred_labels[index], depth_mm[index]), "prediction"),
                  (labels_rgb(gt_labels[index], depth_mm[index]), "ground truth")]
        for ax, (image, title) in zip(row, panels):
            ax.imshow(image, cmap="gray_r" if image is depth else None, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=100)
    return out_png


def run(args: argparse.Namespace) -> int:
    """Evaluate --model on --data, print the table and the JSON line; write pictures to --out."""
    from keras_hpe.evaluation.segmentation import plot_confusion
    from keras_hpe.training.seg import evaluate_model, load_segmentation_model

    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    if args.examples < 1:
        raise UserError(f"--examples must be >= 1, got {args.examples}")
    if args.out is not None:
        check_output_folder(args.out, "--out")
    model = load_segmentation_model(args.model)
    scores, arrays = evaluate_model(model, args.data, batch_size=args.batch)
    print(format_table(scores))
    summary = {
        "model": str(args.model), "data": str(args.data),
        "per_pixel_accuracy": scores.per_pixel_accuracy, "mean_class_accuracy": scores.mean_class_accuracy,
        "hand_iou": scores.hand_iou, "frames": scores.frames, "hand_pixels": scores.hand_pixels,
    }
    if args.out is not None:
        with output_folder(args.out, "--out"):
            write_text(args.out / "scores.json", json.dumps({**summary, **scores.to_dict()}, indent=2) + "\n")
            plot_confusion(scores, args.out / "confusion.png", title=f"{args.model.name} on {args.data.name}")
            plot_examples(arrays["depth_mm"], arrays["pred_labels"], arrays["labels"], args.out / "examples.png",
                          args.examples)
        print(f"scores, confusion matrix and examples written to {args.out}")
    print(json.dumps(summary))
    return 0
