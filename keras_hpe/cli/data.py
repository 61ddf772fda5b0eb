"""`keras-hpe data {synth,sensor,nyu,show}`: make, convert and look at data sets."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_hpe.cli.runner import add_runner_options, beam_runner
from keras_hpe.data.dataset import Manifest
from keras_hpe.errors import UserError
from keras_hpe.outputs import check_output_file

# Crop sizes in pixels: the paper-style 48-128, and 32 for tests and quick looks.
CROP_SIZES = (32, 48, 64, 96, 128)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `data` and its sub-commands synth, sensor, nyu and show."""
    parser = subparsers.add_parser("data", help="make, convert and look at data sets (shards + manifest.json)")
    commands = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = commands.add_parser("synth", help="render synthetic hands with dense part labels")
    _add_generation_options(synth)
    synth.set_defaults(func=run_synth)

    sensor = commands.add_parser("sensor", help='render the "simulated real" domain through the depth-sensor model')
    _add_generation_options(sensor)
    sensor.add_argument("--eval-labels", action="store_true",
                        help="also store the clean part labels (the evaluation split; training never reads them)")
    sensor.add_argument("--sensor-config", type=Path, metavar="FILE",
                        help="JSON object overriding fields of the default SensorConfig (default: none)")
    sensor.set_defaults(func=run_sensor)

    nyu = commands.add_parser("nyu", help="convert the NYU Hand Pose Dataset (ROOT/train, ROOT/test) to a data set")
    nyu.add_argument("--root", type=Path, required=True, help="NYU folder holding train/ and test/")
    nyu.add_argument("--split", choices=("train", "test"), default="test", help="which split (default: test)")
    nyu.add_argument("--out", type=Path, required=True, help="output data set folder")
    nyu.add_argument("--limit", type=int, help="convert only the first N frames (default: all)")
    nyu.add_argument("--size", type=int, default=64, help=f"crop size S in pixels, one of {CROP_SIZES} (default: 64)")
    nyu.set_defaults(func=run_nyu)

    show = commands.add_parser("show", help="draw a montage of frames: depth, parts, joints and skeleton")
    show.add_argument("data_dir", type=Path, metavar="DIR", help="data set folder")
    show.add_argument("--out", type=Path, required=True, help="output PNG file")
    show.add_argument("--n", type=int, default=16, help="number of frames, spread over the data set (default: 16)")
    show.set_defaults(func=run_show)


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, required=True, help="number of frames")
    parser.add_argument("--out", type=Path, required=True, help="output data set folder (an interrupted run resumes)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default: 0)")
    parser.add_argument("--size", type=int, default=64,
                        help=f"crop size S in pixels, one of {CROP_SIZES}; 32 is for tests (default: 64)")
    add_runner_options(parser, "shards")


def _check_size(size: int) -> None:
    if size not in CROP_SIZES:
        raise UserError(f"--size must be one of {', '.join(map(str, CROP_SIZES))}, got {size}")


def _check_n(n: int) -> None:
    if n <= 0:
        raise UserError(f"--n must be > 0, got {n}")


def _summary(manifest: Manifest, out: Path) -> None:
    labels = "with labels" if "labels" in manifest.fields else "no labels"
    print(f"{manifest.domain}: {manifest.count} frames, {manifest.size}x{manifest.size}, {labels}, "
          f"seed {manifest.seed} -> {out}")


def run_synth(args: argparse.Namespace) -> int:
    _check_n(args.n)
    _check_size(args.size)
    runner = beam_runner(args)
    from keras_hpe.data.synth import generate_synth

    manifest = generate_synth(args.out, args.n, seed=args.seed, size=args.size, progress=True, workers=args.workers,
                              runner=runner)
    _summary(manifest, args.out)
    return 0


def run_sensor(args: argparse.Namespace) -> int:
    _check_n(args.n)
    _check_size(args.size)
    runner = beam_runner(args)
    from keras_hpe.data.sensor import SensorConfig, generate_sensor

    config = SensorConfig.from_json(args.sensor_config) if args.sensor_config else SensorConfig()
    manifest = generate_sensor(args.out, args.n, seed=args.seed, size=args.size, eval_labels=args.eval_labels,
                               config=config, progress=True, workers=args.workers, runner=runner)
    _summary(manifest, args.out)
    return 0


def run_nyu(args: argparse.Namespace) -> int:
    _check_size(args.size)
    from keras_hpe.data.nyu import load_nyu

    _summary(load_nyu(args.root, args.split, args.out, size=args.size, limit=args.limit, progress=True), args.out)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from keras_hpe.data.show import montage

    check_output_file(args.out, "--out")
    path = montage(args.data_dir, args.out, n=args.n)
    print(f"montage of {args.data_dir} -> {path}")
    return 0
