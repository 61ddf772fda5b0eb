"""`keras-hpe predict`: joints for full-size depth frames (NYU PNG or .npy), thousands at a time.

The job itself, its outputs and how it resumes are `keras_hpe.predict`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_hpe.data.crop import CUBE_MM
from keras_hpe.errors import UserError
from keras_hpe.outputs import check_output_folder
from keras_hpe.predict import (
    DEFAULT_BATCH,
    DEFAULT_OVERLAYS,
    FRAMES_NAME,
    JOINTS_NAME,
    OVERLAY_DIR,
    STATE_NAME,
    check_settings,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `predict` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="estimate hand joints on depth frames (NYU PNG or .npy, files, folders, lists), write joints and overlays",
        description=(
            "Run segmentation + regression on full-size depth frames (640x480 NYU PNG, depth = (G<<8)|B, "
            "or .npy (480, 640) in mm), batch by batch: memory does not grow with the number of frames. "
            "The hand centre is the depth's centre of mass unless --centers gives it; the crop size comes "
            f"from the models. OUT gets, one line per frame in input order, {JOINTS_NAME} (the community's NYU "
            "format: 14 joints x 'u v d', pixels and mm, as evaluate-joints reads it) and "
            f"{FRAMES_NAME} (JSON: file, centre, joints in xyz mm and uvd, overlay), and "
            f"{OVERLAY_DIR}/<line>_<name>.png for a few frames. A frame that cannot be read or shows no hand "
            f"is skipped (its {JOINTS_NAME} line is 42 nan, its {FRAMES_NAME} line holds the error) and the "
            "others are predicted; the command then exits 2 naming it. After each batch the results are "
            f"appended and {STATE_NAME} records them: the same command run again after an interruption goes on "
            "after the last whole batch, with the results of an uninterrupted run; another run (other frames, "
            "models, centres or --overlays) into the same OUT is refused."
        ),
    )
    parser.add_argument(
        "inputs", type=Path, nargs="*", metavar="INPUT",
        help="depth frames, .png (NYU) or .npy (mm), or folders of them (every *.png and *.npy directly inside, "
        "sorted by name)",
    )
    parser.add_argument(
        "--list", type=Path, action="append", default=[], metavar="FILE",
        help="text file naming one frame or folder a line (relative to the file's own folder; blank lines and "
        "# comments skipped); its frames follow the INPUTs; may be given more than once",
    )
    parser.add_argument(
        "--reg", type=Path, required=True,
        help="regression model (.keras) of any variant: direct, cascade (reg_cascade.keras: its second model and "
        "cube come from the .json beside it), semi or full",
    )
    parser.add_argument(
        "--seg", type=Path, default=None,
        help="segmentation model (.keras) (default: the one named in the .json beside --reg; none for a "
        "direct-regression model)",
    )
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    parser.add_argument(
        "--centers", type=Path, default=None,
        help="crop centres instead of the centre of mass: CSV with columns file,u,v,d or JSON "
        "{file: [u, v, d]}; file is the name or the path as named (default: centre of mass)",
    )
    parser.add_argument(
        "--cube-mm", type=float, default=CUBE_MM,
        help=f"side of the crop cube the models were trained with, mm (default: {CUBE_MM:g})",
    )
    parser.add_argument(
        "--batch", "--batch-size", dest="batch", type=int, default=DEFAULT_BATCH,
        help="frames read, estimated and saved at a time; an interrupted run resumes after the last whole batch, "
        f"and the same --batch gives the same bytes (default: {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--overlays", type=_overlay_count, default=DEFAULT_OVERLAYS, metavar="N|all",
        help="overlay pictures (about 0.1 s each) for N frames spread evenly over the run, the first among them; "
        f"0 for none, 'all' for every frame (default: {DEFAULT_OVERLAYS})",
    )
    # Names, not choices: they live in models.inference, which loads TensorFlow and Keras.
    parser.add_argument(
        "--precision", metavar="{float32,bfloat16}", default="float32",
        help="float32: the networks as trained; bfloat16: the segmentation network's 5x5 convolutions in bfloat16, "
        "faster on CPUs with native bfloat16 (AVX512_BF16, AMX), joints 0.3 mm from float32's on average "
        "(the README has the figures) (default: float32)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.set_defaults(func=run)


def _overlay_count(text: str) -> int | None:
    """--overlays: a whole number, or None for 'all'."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from keras_hpe.pipeline import InferenceOptions, load_estimator
    from keras_hpe.predict import list_frames, predict_frames, read_centers

    check_output_folder(args.out, "--out")
    check_settings(args.batch, args.overlays)
    centers = read_centers(args.centers) if args.centers is not None else None
    frames = list_frames(args.inputs, args.list)  # before the models load: a mistyped path fails at once
    options = InferenceOptions(precision=args.precision)
    estimator = load_estimator(args.reg, args.seg, cube_mm=args.cube_mm, options=options)
    result = predict_frames(estimator, frames, args.out, centers=centers, batch=args.batch, overlays=args.overlays,
                            progress=not args.no_progress)
    print(f"{result.frames - result.skipped} of {result.frames} frame(s) predicted: joints in "
          f"{args.out / JOINTS_NAME} and {args.out / FRAMES_NAME}, {result.overlays} overlay(s) in "
          f"{args.out / OVERLAY_DIR}")
    if result.skipped:
        raise UserError(
            f"{result.skipped} of {result.frames} frame(s) skipped (each one's error is on its line of "
            f"{args.out / FRAMES_NAME}), the first: {result.first_skipped}"
        )
    return 0
