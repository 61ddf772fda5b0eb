"""`keras-hpe train {seg,...}`: the training stages, one sub-command each.

This module only parses options; each stage's work lives in
`keras_hpe.training.<stage>`. A stage registers its sub-command by adding an
`add_<stage>_parser(commands)` function here and listing it in `STAGES`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

Config = TypeVar("Config")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `train` group and its stage sub-commands."""
    parser = subparsers.add_parser("train", help="train a stage of the method (seg: segmentation pre-training, ...)")
    commands = parser.add_subparsers(dest="train_command", metavar="STAGE", required=True)
    for add_stage_parser in STAGES:
        add_stage_parser(commands)


def add_common_options(
    parser: argparse.ArgumentParser,
    epochs_default: int | None = None,
    epochs_help: str = "passes over the training set (default: the preset's)",
) -> None:
    """Options every stage shares: output folder, preset, epochs, batch size, seed, progress."""
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder for the model, its metrics JSON, logs/ and the resume backup")
    # Names, not choices=PRESETS: importing the presets loads Keras, which every
    # `keras-hpe` command would then pay for at start-up; get_preset checks the name.
    parser.add_argument("--preset", metavar="{quick,paper}", default="quick",
                        help="sizes and hyper-parameters: quick (CPU, minutes) or paper (GPU) (default: quick)")
    parser.add_argument("--epochs", type=int, default=epochs_default, help=epochs_help)
    parser.add_argument("--batch", type=int, default=None, help="frames per step (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same run (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: show it)")
    add_placement_options(parser)


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    """--strategy and --precision: where and how precisely training runs (`training.devices`)."""
    # Names, not choices: the names live in training.devices and presets, which load TensorFlow and Keras.
    parser.add_argument(
        "--strategy", metavar="{auto,mirrored,default}", default="auto",
        help="auto: mirror over all GPUs when there are two or more, else one device; mirrored: "
        "tf.distribute.MirroredStrategy over all GPUs (over the CPU if there is none); default: one device. "
        "The batch size is the global batch, split among the replicas (default: auto)",
    )
    parser.add_argument(
        "--precision", metavar="{auto,float32,mixed}", default=None,
        help="mixed: float16 on GPUs, bfloat16 on CPUs, with float32 weights and outputs; auto: mixed on GPUs, "
        "and on CPUs with native bfloat16 for the segmentation network (measured 1.32x faster), float32 "
        "otherwise (default: the preset's, auto)",
    )


def with_precision(config: Config, precision: str | None) -> Config:
    """A training config (a dataclass with `precision`) with --precision's value, where given."""
    return config if precision is None else replace(config, precision=precision)


def add_seg_parser(commands: argparse._SubParsersAction) -> None:
    """`train seg`: supervised segmentation pre-training on synthetic data (stage 1)."""
    parser = commands.add_parser(
        "seg",
        help="stage 1: train the segmentation network on labelled (synthetic) frames",
        description=(
            "Pixelwise NLL over hand pixels. Writes OUT/seg_synth.keras and OUT/seg_synth.json; "
            "a killed run resumes from OUT/backup when re-run with the same options, and ends as an "
            "uninterrupted run would (other options are refused)."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, help="training data set folder, with part labels")
    parser.add_argument("--val", type=Path, default=None,
                        help="labelled data set to validate on every epoch and score at the end (default: none)")
    add_common_options(parser)
    parser.set_defaults(func=run_seg)


def run_seg(args: argparse.Namespace) -> int:
    """Train stage 1 and print where the model went; the last line is the metrics JSON."""
    from keras_hpe.presets import get_preset
    from keras_hpe.training.seg import train_segmentation

    result = train_segmentation(
        args.data, args.out, with_precision(get_preset(args.preset).seg, args.precision), val_dir=args.val,
        epochs=args.epochs, batch_size=args.batch, seed=args.seed, progress=not args.quiet, strategy=args.strategy,
    )
    print_segmentation_result(result, "segmentation model")
    return 0


def print_segmentation_result(result, what: str) -> None:
    """Where a segmentation stage wrote its files, then a JSON line: the last epoch's figures and final scores."""
    print(f"{what} written to {result.model_path}, metrics to {result.metrics_path}")
    summary = {key: values[-1] for key, values in result.metrics["history"].items()}
    summary.update({f"final_{key}": value for key, value in result.metrics.get("val", {}).items() if key != "data"})
    print(json.dumps({"model": str(result.model_path), **summary}))


# Imported here, at the end, because they use the helpers above.
from keras_hpe.cli.train_reg import add_reg_parser  # noqa: E402
from keras_hpe.cli.train_seg_weak import add_seg_weak_parser  # noqa: E402

STAGES = (add_seg_parser, add_seg_weak_parser, add_reg_parser)
