"""`keras-hpe restore`: pseudo ground truth for the real training frames (paper sections 3.1-3.2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from keras_hpe.cli.runner import add_runner_options, beam_runner
from keras_hpe.restoration.restore import METHODS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `restore` sub-command."""
    parser = subparsers.add_parser(
        "restore",
        help="segment real frames, restore the maps against the patch dictionary, keep the improved ones",
        description=(
            "Segments every frame of a real training set with the stage-1 model, restores each map "
            "against the dictionary (eq. 1-2), scores raw and restored maps by their part barycenters' "
            "distance to the annotated joints, and writes the frames whose restoration is better as a "
            "data set with the restored maps as labels, plus quality.csv and restore_summary.json. "
            "The real frames' labels, if any, are never read. A killed run resumes when re-run."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="stage-1 segmentation model, e.g. seg_synth.keras")
    parser.add_argument("--index", type=Path, required=True,
                        help="patch dictionary folder (`keras-hpe dictionary build`)")
    parser.add_argument("--data", type=Path, required=True,
                        help="real training data set folder (depth_mm, center_uvd, joints_xyz)")
    parser.add_argument("--out", type=Path, required=True, help="output data set folder, new or empty (re-running the same job reuses it)")
    parser.add_argument("--method", choices=METHODS, default="integrate",
                        help="restoration: integrate (eq. 2), center, none, crf-potts, crf-overlap "
                        "(default: integrate)")
    parser.add_argument("--patch", type=int, default=7, help="patch size P the dictionary must have (default: 7)")
    parser.add_argument("--window", type=int, default=5, help="voting window W of eq. 2 (default: 5)")
    parser.add_argument("--chunk", type=int, default=256,
                        help="frames per step, the unit a resumed run restarts from (default: 256)")
    parser.add_argument("--batch", type=int, default=64, help="frames per inference batch (default: 64)")
    add_runner_options(parser, "restorations")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: show it)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the restoration; the last line printed is a JSON summary."""
    from keras_hpe.outputs import check_output_folder
    from keras_hpe.restoration.pseudo_labels import restore_dataset

    check_output_folder(args.out, "--out")
    result = restore_dataset(
        args.model, args.index, args.data, args.out, method=args.method, patch=args.patch, window=args.window,
        workers=args.workers, chunk_frames=args.chunk, batch_size=args.batch, progress=not args.quiet,
        runner=beam_runner(args),
    )
    summary = result.summary
    print(f"restored data set {result.out_dir}: {summary['accepted']} of {summary['frames']} frames accepted "
          f"(rejection rate {100 * summary['rejection_rate']:.1f}%, paper: 5-10%); verdicts in {result.quality_path}")
    print(json.dumps({key: value for key, value in summary.items() if key != "job"}))
    return 0
