"""Entry point of `keras-hpe`.

Each command group lives in its own module of this package and exposes
`add_parser(subparsers)`, which registers its sub-command(s) and sets
`func(args) -> int | None` as the default of the parsed namespace.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys

# TensorFlow's C++ start-up chatter is noise on a command line; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe import __version__
from keras_hpe.errors import UserError
from keras_hpe.quiet import filtered_stderr

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
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())
    try:
        return int(args.func(args) or 0)
    except (UserError, OSError) as error:
        # OSError: the machine's side of a user's request (a full disk, a file that vanished, no permission).
        print(f"keras-hpe: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-hpe: interrupted", file=sys.stderr)
        return 130


def one_line(message: str) -> str:
    """`message` on one line: control characters (from a user's file names or fields) shown escaped."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], message.strip())


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What TensorFlow's C++ libraries print to fd 2 while they load: written before absl's logging
# is set up, so TF_CPP_MIN_LOG_LEVEL does not silence them (TF 2.21).
_TF_START_UP = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:.]+ +\d+ \S+\] "
    r"|To enable the following instructions"
)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Import TensorFlow (whenever a command first does) with its start-up log lines filtered out.

    A command's error must be the one line it prints on stderr; these info
    lines (oneDNN, CPU features) would precede it. Anything else TensorFlow
    writes while loading is passed through.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr(_TF_START_UP):
            self.loader.exec_module(module)


if __name__ == "__main__":
    sys.exit(main())
