"""Stage 1's accuracy for its training compute: held-out synthetic accuracy of a segmentation architecture.

Renders a synthetic training set and a held-out set (or reuses them in
--work), trains one architecture with the quick preset's optimiser through
`train_segmentation`, and prints the held-out per-pixel accuracy after every
epoch; with --real-test, also the accuracy on a labelled real evaluation split
(the paper's "synthetic only" row of Table 3). The table in
`SegmentationConfig`'s docstring was measured this way. It prints the
accuracy beside the training minutes it cost; the last line printed is a JSON
summary.

Candidates measured for the quick reproduction's stage 1 (default network,
held-out synthetic frames with forearms, per pixel over hand pixels, 2 cores
under load, one run each):

| training data               | train minutes | per pixel |
|-----------------------------|---------------|-----------|
| 6,000 frames x 5 epochs     | 5.9           | 58.3%     |
| 30,000 frames x 1 epoch     | 4.1           | 59.2%     |

The sweep over precision, learning rate, batch size and widths at 10,000
frames x 1 epoch is in `presets.SegTrainingConfig`'s docstring, the one over
the hole filling of the input (`--hole-fill`, with `--real-test` a labelled
sensor validation split) beside `data.crop.HOLE_MIN_NEIGHBOURS`.

    python benchmarks/seg_accuracy_benchmark.py --arch paper --epochs 8 [--frames 6000] [--work DIR]
        [--real-test runs/quick/real_test/data] [--filters 32 64 64] [--hidden 64 64] [--batch 8]
        [--lr 2e-3] [--precision mixed] [--hole-fill MIN_NEIGHBOURS PASSES]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe.data.crop import HOLE_MIN_NEIGHBOURS, HOLE_PASSES, fill_holes  # noqa: E402
from keras_hpe.data.synth import generate_synth  # noqa: E402
from keras_hpe.models.segmentation import UNDILATED_SEGMENTATION, SegmentationConfig  # noqa: E402
from keras_hpe.presets import get_preset  # noqa: E402
from keras_hpe.training.seg import evaluate_model, load_segmentation_model, train_segmentation  # noqa: E402

ARCHITECTURES = {
    "paper": SegmentationConfig(),
    "undilated": UNDILATED_SEGMENTATION,
    "dilated5": SegmentationConfig(filters=(32,) * 5, kernel_sizes=(3,) * 5, dilation_rates=(1, 2, 4, 8, 16)),
}
TEST_FRAMES = 500
TRAIN_SEED, TEST_SEED = 7, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="paper",
                        help="paper: the default network, 3 5x5 convolutions and pooling windows dilated 1, 2, 4; "
                             "undilated: 3 plain 5x5, adjacent pooling windows (ours); dilated5: 5 3x3 "
                             "convolutions and pooling windows dilated 1, 2, 4, 8, 16 (default: paper)")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training set (default: 8)")
    parser.add_argument("--frames", type=int, default=6000, help="synthetic training frames (default: 6000)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the data sets and the run (default: a temporary one); "
                             "data sets already there are reused")
    parser.add_argument("--real-test", type=Path, default=None,
                        help="a labelled real evaluation split to score the trained model on (default: none)")
    parser.add_argument("--filters", type=int, nargs="+", default=None,
                        help="conv widths, one per layer (default: the architecture's)")
    parser.add_argument("--hidden", type=int, nargs="+", default=None,
                        help="per-pixel hidden layer widths (default: the architecture's)")
    parser.add_argument("--batch", type=int, default=None, help="frames per step (default: the quick preset's)")
    parser.add_argument("--lr", type=float, default=None, help="initial learning rate (default: the quick preset's)")
    parser.add_argument("--precision", choices=("auto", "float32", "mixed"), default="float32",
                        help="the training's precision, as `keras-hpe train seg --precision` (mixed: bfloat16 on a "
                             "CPU; default: float32)")
    parser.add_argument("--hole-fill", type=int, nargs=2, metavar=("MIN_NEIGHBOURS", "PASSES"),
                        default=(HOLE_MIN_NEIGHBOURS, HOLE_PASSES),
                        help="fill missing pixels with at least MIN_NEIGHBOURS of 8 valid neighbours, PASSES times, "
                             "at training and test time (9 = no filling; default: the pipeline's, "
                             f"{HOLE_MIN_NEIGHBOURS} {HOLE_PASSES})")
    args = parser.parse_args()
    model = ARCHITECTURES[args.arch]
    if args.filters:
        model = replace(model, filters=tuple(args.filters))
    if args.hidden:
        model = replace(model, hidden_units=tuple(args.hidden))
    quick = get_preset("quick").seg
    config = replace(quick, model=model, epochs=args.epochs, batch_size=args.batch or quick.batch_size,
                     learning_rate=args.lr or quick.learning_rate, precision=args.precision)
    widths = "-".join(map(str, model.filters + model.hidden_units))
    fill = tuple(args.hole_fill)
    name = (f"seg_{args.arch}_{args.epochs}_{widths}_{config.batch_size}_{config.learning_rate:g}_{args.precision}"
            f"_fill{fill[0]}x{fill[1]}")
    filling = mock.patch("keras_hpe.models.segmentation.fill_holes",
                         partial(fill_holes, min_neighbours=fill[0], passes=fill[1]))

    with tempfile.TemporaryDirectory() as scratch, filling:
        work = args.work or Path(scratch)
        train_dir, test_dir = work / f"synth{args.frames}", work / "synth_test"
        for folder, frames, seed in ((train_dir, args.frames, TRAIN_SEED), (test_dir, TEST_FRAMES, TEST_SEED)):
            if not (folder / "manifest.json").is_file():
                generate_synth(folder, frames, seed=seed)
        result = train_segmentation(train_dir, work / name, config, val_dir=test_dir, progress=True)
        real = evaluate_model(load_segmentation_model(result.model_path), args.real_test)[0] if args.real_test else None
    history = result.metrics["history"]["val_pixel_accuracy"]
    train_minutes = result.metrics["train_seconds_this_run"] / 60
    for epoch, accuracy in enumerate(history, start=1):
        print(f"epoch {epoch}: held-out accuracy over all foreground pixels (arm included) {100 * accuracy:.2f}%")
    print(f"held-out per-pixel accuracy over hand pixels {100 * result.metrics['val']['per_pixel_accuracy']:.2f}% "
          f"after {train_minutes:.1f} training minutes ({args.frames} frames x {args.epochs} epochs)")
    summary = {
        "benchmark": "segmentation_accuracy",
        "arch": args.arch,
        "model": model.to_dict(),
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "precision": args.precision,
        "hole_fill": {"min_neighbours": fill[0], "passes": fill[1]},
        "train_frames": args.frames,
        "test_frames": TEST_FRAMES,
        "epochs": args.epochs,
        "train_seconds": result.metrics["train_seconds_this_run"],
        "train_minutes": round(train_minutes, 2),
        "per_pixel_accuracy": round(result.metrics["val"]["per_pixel_accuracy"], 4),
        "mean_class_accuracy": round(result.metrics["val"]["mean_class_accuracy"], 4),
        "per_epoch_foreground_accuracy": [round(value, 4) for value in history],
    }
    if real is not None:
        print(f"real evaluation split: per-pixel accuracy {100 * real.per_pixel_accuracy:.2f}%")
        summary["real_test"] = {"data": str(args.real_test), "per_pixel_accuracy": round(real.per_pixel_accuracy, 4),
                                "mean_class_accuracy": round(real.mean_class_accuracy, 4)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
