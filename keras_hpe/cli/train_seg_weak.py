"""`keras-hpe train seg-weak`: stage 2, weakly-supervised fine-tuning of the segmentation network."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_seg_weak_parser(commands: argparse._SubParsersAction) -> None:
    """Register `train seg-weak` among the `train` stages."""
    parser = commands.add_parser(
        "seg-weak",
        help="stage 2: fine-tune the segmentation network on synthetic + restored real frames (9:1)",
        description=(
            "Fine-tunes the stage-1 model on a mix of synthetic frames and the accepted restored real "
            "frames written by `keras-hpe restore` (each frame synthetic with probability 0.9). Writes "
            "OUT/seg_weak.keras and OUT/seg_weak.json; a killed run resumes from OUT/backup when re-run "
            "with the same options."
        ),
    )
    parser.add_argument("--init", type=Path, required=True, help="stage-1 model to start from, e.g. seg_synth.keras")
    parser.add_argument("--synth", type=Path, required=True, help="synthetic training data set folder (with labels)")
    parser.add_argument("--restored", type=Path, required=True,
                        help="restored real data set (`keras-hpe restore --out`)")
    parser.add_argument("--val", type=Path, default=None,
                        help="labelled real evaluation split to score the fine-tuned model on (default: none)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder for the model, its metrics JSON, logs/ and the resume backup")
    parser.add_argument("--preset", metavar="{quick,paper}", default="quick",
                        help="optimiser, schedule, batch size and augmentation: quick or paper (default: quick)")
    parser.add_argument("--epochs", type=int, default=10,
                        help="passes over the synthetic set (default: 10, the paper's)")
    parser.add_argument("--batch", type=int, default=None, help="frames per step (default: the preset's)")
    parser.add_argument("--synth-weight", type=float, default=0.9,
                        help="probability that a frame is synthetic (default: 0.9, the paper's 9:1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same run (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: show it)")
    parser.set_defaults(func=run_seg_weak)


def run_seg_weak(args: argparse.Namespace) -> int:
    """Fine-tune (stage 2) and print where the model went; the last line is the metrics JSON."""
    from keras_hpe.presets import get_preset
    from keras_hpe.training.seg_weak import train_segmentation_weak

    result = train_segmentation_weak(
        args.init, args.synth, args.restored, args.out, get_preset(args.preset).seg, epochs=args.epochs,
        batch_size=args.batch, synth_weight=args.synth_weight, val_dir=args.val, seed=args.seed,
        progress=not args.quiet,
    )
    print(f"fine-tuned segmentation model written to {result.model_path}, metrics to {result.metrics_path}")
    summary = {key: values[-1] for key, values in result.metrics["history"].items()}
    summary.update({f"final_{key}": value for key, value in result.metrics.get("val", {}).items() if key != "data"})
    print(json.dumps({"model": str(result.model_path), **summary}))
    return 0
