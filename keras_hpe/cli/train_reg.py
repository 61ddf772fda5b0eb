"""`keras-hpe train reg`: stage 3, the joint regression network, one variant of the paper's Table 4."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from keras_hpe.errors import UserError

VARIANT_HELP = (
    "direct: joints from depth alone (a); cascade: direct, then a second direct network on a tighter crop "
    "around the first estimate (b); semi: depth + segmentation by the stage-1 (synthetic-only) model (c); "
    "full: depth + segmentation by the stage-2 (weakly-supervised) model (d); oracle: depth + the data set's "
    "own part labels, a diagnostic bound that is not part of the method (e; needs labelled data, --eval-labels)"
)


def add_reg_parser(train_subparsers: argparse._SubParsersAction) -> None:
    """Register `reg` in the sub-commands of `keras-hpe train`."""
    parser = train_subparsers.add_parser(
        "reg",
        help="stage 3: train the joint regression network (variants a-d of Table 4, oracle e)",
        description=(
            "Train the regression network on a depth + joints data set (the sensor domain's training split; "
            "part labels are read by the oracle alone). Writes OUT/reg_<variant>.keras (the cascade also "
            "OUT/reg_cascade_refine.keras) and OUT/reg_<variant>.json; an interrupted run resumes when "
            "re-run with the same arguments, and ends as an uninterrupted run would (other arguments are "
            "refused). Semi and full segment the training data once with --seg and cache "
            "the label maps in OUT/seg_cache."
        ),
    )
    parser.add_argument("--variant", metavar="{direct,cascade,semi,full,oracle}", required=True, help=VARIANT_HELP)
    parser.add_argument("--data", type=Path, required=True, help="training data set folder (depth + joints)")
    parser.add_argument(
        "--seg", type=Path, default=None,
        help="segmentation model (.keras) for semi (seg_synth.keras) and full (seg_weak.keras); "
        "refused for direct, cascade and oracle",
    )
    parser.add_argument(
        "--val", type=Path, default=None,
        help="validation data set: loss each epoch and joint errors in the JSON (default: none)",
    )
    parser.add_argument(
        "--shared", action="store_true",
        help="semi/full/oracle: one regression head shared by all joints instead of one per joint "
        "(default: separate)",
    )
    # Imported here: cli/train.py imports this module to register `reg`.
    from keras_hpe.cli.train import add_common_options

    add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the variant, print where its files went and, last, a JSON summary line."""
    from keras_hpe.cli.train import with_precision
    from keras_hpe.presets import get_preset
    from keras_hpe.training.reg import train_regression

    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch is not None and args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    result = train_regression(
        args.data, args.out, args.variant, with_precision(get_preset(args.preset).reg, args.precision),
        seg_path=args.seg, val_dir=args.val, epochs=args.epochs, batch_size=args.batch,
        head="shared" if args.shared else "separate", seed=args.seed, progress=not args.quiet, strategy=args.strategy,
    )
    for path in result.model_paths:
        print(f"model written to {path}")
    print(f"metrics written to {result.metrics_path}")
    summary = {key: result.metrics[key] for key in ("variant", "head", "frames", "epochs", "train_seconds_this_run")}
    if "val" in result.metrics:
        summary["val_mean_3d_mm"] = result.metrics["val"]["mean_3d_mm"]
    print(json.dumps(summary))
    return 0
