"""`keras-hpe train seg-weak`: stage 2, weakly-supervised fine-tuning of the segmentation network."""

from __future__ import annotations

import argparse
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
            "with the same options, and ends as an uninterrupted run would (other options are refused)."
        ),
    )
    parser.add_argument("--init", type=Path, required=True, help="stage-1 model to start from, e.g. seg_synth.keras")
    parser.add_argument("--synth", type=Path, required=True, help="synthetic training data set folder (with labels)")
    parser.add_argument("--restored", type=Path, required=True,
                        help="restored real data set (`keras-hpe restore --out`)")
    parser.add_argument("--val", type=Path, default=None,
                        help="labelled real evaluation split to score the fine-tuned model on (default: none)")
    parser.add_argument("--synth-weight", type=float, default=0.9,
                        help="probability that a frame is synthetic (default: 0.9, the paper's 9:1)")
    # Imported here: cli/train.py imports this module to register `seg-weak`.
    from keras_hpe.cli.train import add_common_options

    add_common_options(parser, epochs_default=10, epochs_help="passes over the synthetic set (default: 10, the paper's)")
    parser.set_defaults(func=run_seg_weak)


def run_seg_weak(args: argparse.Namespace) -> int:
    """Fine-tune (stage 2) and print where the model went; the last line is the metrics JSON."""
    from keras_hpe.cli.train import print_segmentation_result, with_precision
    from keras_hpe.presets import get_preset
    from keras_hpe.training.seg_weak import train_segmentation_weak

    result = train_segmentation_weak(
        args.init, args.synth, args.restored, args.out, with_precision(get_preset(args.preset).seg, args.precision),
        epochs=args.epochs, batch_size=args.batch, synth_weight=args.synth_weight, val_dir=args.val, seed=args.seed,
        progress=not args.quiet, strategy=args.strategy,
    )
    print_segmentation_result(result, "fine-tuned segmentation model")
    return 0
