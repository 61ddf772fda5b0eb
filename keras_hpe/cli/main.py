"""Entry point of `keras-hpe`.

Each command group lives in its own module of this package and exposes
`add_parser(subparsers)`, which registers its sub-command(s) and sets
`func(args) -> int | None` as the default of the parsed namespace.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# TensorFlow's C++ start-up chatter is noise on a command line; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe import __version__
from keras_hpe.errors import UserError

COMMAND_MODULES = (
    "keras_hpe.cli.data",
    "keras_hpe.cli.evaluate_joints",
    "keras_hpe.cli.train",
    "keras_hpe.cli.evaluate_seg",
    "keras_hpe.cli.restoration",
    "keras_hpe.cli.restore",
    "keras_hpe.cli.evaluate_reg",
    "keras_hpe.cli.predict",
    "keras_hpe.cli.export",
    "keras_hpe.cli.reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-hpe",
        description=(
            "Hand pose estimation through semi- and weakly-supervised learning "
            "(Neverova et al., CVIU 2017), in TensorFlow 2 / Keras 3."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"keras-hpe: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-hpe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
