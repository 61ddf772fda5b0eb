"""`keras-hpe export`: write trained models as a TensorFlow Serving SavedModel."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_hpe.data.crop import CUBE_MM


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `export` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export segmentation + regression models as a TF Serving SavedModel (OUT/<version>/)",
        description=(
            "Write OUT/<version>/ in the TensorFlow Serving layout. Its serving_default signature takes "
            "depth_mm (B, S, S) float32 crops in mm and center_uvd (B, 3) crop centres, and returns "
            "joints_xyz (B, 14, 3) mm, joints_uvd (B, 14, 3) and parts (B, S, S) uint8; the crop "
            "normalisation and the camera are inside the graph."
        ),
    )
    parser.add_argument("--reg", type=Path, required=True, help="regression model (.keras)")
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
        "--cube-mm", type=float, default=CUBE_MM,
        help=f"side of the crop cube the models were trained with, mm (default: {CUBE_MM:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_hpe.export import export_estimator
    from keras_hpe.pipeline import load_estimator

    estimator = load_estimator(args.reg, args.seg, cube_mm=args.cube_mm)
    path = export_estimator(estimator, args.out, args.version)
    print(f"exported {', '.join(estimator.info.outputs)} for {estimator.size}x{estimator.size} crops to {path}")
    return 0
