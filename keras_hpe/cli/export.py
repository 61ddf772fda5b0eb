"""`keras-hpe export`: write trained models as a TF Serving SavedModel, and as LiteRT and ONNX files beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_hpe.data.crop import CUBE_MM
from keras_hpe.export import CALIBRATION_FRAMES, FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `export` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export segmentation + regression models as a TF Serving SavedModel, LiteRT and ONNX (OUT/<version>/)",
        description=(
            "Write OUT/<version>/ in the TensorFlow Serving layout, plus the LiteRT and ONNX files --format asks "
            "for: model.tflite, model_fp16.tflite, model_int8.tflite, model.onnx. Each takes depth_mm (B, S, S) "
            "float32 crops in mm and center_uvd (B, 3) crop centres, and returns joints_xyz (B, 14, 3) mm, "
            "joints_uvd (B, 14, 3) and parts (B, S, S) uint8 (none for a direct or cascade model); the crop "
            "normalisation, a cascade's second crop and the camera are inside the graph."
        ),
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
    parser.add_argument(
        "--out", type=Path, default=Path("saved_models/keras_hpe"),
        help="model folder watched by TF Serving (default: saved_models/keras_hpe)",
    )
    parser.add_argument(
        "--version", type=int, default=None,
        help="version number (sub-folder) to write; must not exist yet (default: 1 + the highest present)",
    )
    parser.add_argument(
        "--format", nargs="+", choices=FORMATS, default=["saved_model"], metavar="FORMAT",
        help="formats to write, one or more of: saved_model (always written: the others are converted from it), "
        "litert (float32), litert-fp16 (float16 weights), litert-int8 (int8 networks; needs --calibration), "
        "onnx (default: saved_model)",
    )
    parser.add_argument(
        "--calibration", type=Path, default=None, metavar="DIR",
        help="data set folder of real training crops (e.g. made by `keras-hpe data sensor`) whose frames "
        "calibrate litert-int8 (default: none; required for litert-int8)",
    )
    parser.add_argument(
        "--calibration-frames", type=int, default=CALIBRATION_FRAMES, metavar="N",
        help=f"frames of --calibration to use, spread evenly over it (default: {CALIBRATION_FRAMES})",
    )
    parser.add_argument(
        "--cube-mm", type=float, default=CUBE_MM,
        help=f"side of the crop cube the models were trained with, mm (default: {CUBE_MM:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_hpe.export import check_formats, export_estimator
    from keras_hpe.outputs import check_output_folder
    from keras_hpe.pipeline import load_estimator

    formats = check_formats(args.format, args.calibration)
    check_output_folder(args.out, "--out")
    estimator = load_estimator(args.reg, args.seg, cube_mm=args.cube_mm)
    path = export_estimator(estimator, args.out, args.version, formats, args.calibration, args.calibration_frames)
    files = ", ".join(sorted(p.name for p in path.iterdir() if p.is_file()))
    cascade = estimator.info.cascade
    steps = "" if cascade is None else f" (cascade: second cube {cascade['refine_cube_mm']:g} mm)"
    print(f"exported {', '.join(estimator.info.outputs)} for {estimator.size}x{estimator.size} crops{steps} to "
          f"{path} ({files})")
    return 0
