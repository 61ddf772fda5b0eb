"""--workers, --runner and --beam-option: where `data synth|sensor` and `restore` do their per-item work."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from keras_hpe.errors import UserError

if TYPE_CHECKING:
    from keras_hpe.beam import BeamRunner


def add_runner_options(parser: argparse.ArgumentParser, work: str) -> None:
    """Add the three options to a command whose items of work (`work`, e.g. "shards") may run on Beam."""
    parser.add_argument("--workers", type=int, default=1,
                        help=f"processes computing the {work} on this machine: the local path's, or with --runner beam "
                        "the local Beam runner's (default: 1)")
    parser.add_argument("--runner", choices=("local", "beam"), default="local",
                        help=f"local: compute the {work} in this process, or in --workers spawned processes; "
                        "beam: on an Apache Beam runner, the local FnApiRunner unless --beam-option runner=... "
                        "names another (the output is the same, bit for bit) (default: local)")
    parser.add_argument("--beam-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a Beam pipeline option for --runner beam, repeatable; KEY alone for a switch; e.g. "
                        "runner=DataflowRunner, project=P, region=R, temp_location=gs://B/tmp (default: none)")


def beam_runner(args: argparse.Namespace) -> BeamRunner | None:
    """The `keras_hpe.beam.BeamRunner` that the options ask for, or None for the local path."""
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.runner == "local":
        if args.beam_option:
            raise UserError("--beam-option needs --runner beam")
        return None
    try:
        from keras_hpe.beam import BeamRunner
    except ImportError as error:
        raise UserError(f"--runner beam needs Apache Beam ({error}): pip install 'keras_hpe[beam]', or "
                        "the apache-beam of requirements.txt") from None
    return BeamRunner.from_options(args.beam_option, args.workers)
