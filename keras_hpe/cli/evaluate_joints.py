"""`keras-hpe evaluate-joints`: score uvd joint predictions by the standard NYU protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from keras_hpe.data.camera import NYU_CAMERA
from keras_hpe.errors import UserError
from keras_hpe.outputs import check_output_file
from keras_hpe.evaluation.joints import (
    COMMUNITY_NYU_CAMERA,
    CURVE_MODES,
    JointErrors,
    evaluate_joints,
    plot_success_curves,
    read_joints_txt,
)

CAMERAS = {"community": COMMUNITY_NYU_CAMERA, "nyu": NYU_CAMERA}
SUMMARY_KEYS = ("mean_3d_mm", "per_joint_mm", "mean_2d_px", "frames")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `evaluate-joints` sub-command."""
    parser = subparsers.add_parser(
        "evaluate-joints",
        help="score joint predictions (uvd text) against ground truth, NYU protocol",
        description=(
            "Mean 3D error (mm), per-joint errors, 2D error (px) and success curves of "
            "uvd joint predictions, computed like the community's NYU evaluation code. "
            "Files: one frame a line, 42 numbers = 14 joints x (u px, v px, d mm). "
            "The last line printed is a JSON summary."
        ),
    )
    parser.add_argument("--gt", type=Path, required=True, help="ground-truth joints, uvd text file")
    parser.add_argument(
        "--pred", type=Path, required=True, help="predicted joints, uvd text file, same frames in the same order"
    )
    parser.add_argument("--curve", type=Path, default=None, help="also write the success curve to this PNG")
    parser.add_argument(
        "--curve-mode",
        choices=CURVE_MODES,
        default="max",
        help="success curve: frames with max joint error <= D (paper Fig. 8), "
        "frames with mean error <= D, or all joints <= D (default: max)",
    )
    parser.add_argument(
        "--camera",
        choices=sorted(CAMERAS),
        default="community",
        help="intrinsics for uvd -> xyz: 'community' (588.03/587.07, reproduces published "
        "NYU numbers) or 'nyu' (exact Kinect 588.036865/587.075073) (default: community)",
    )
    parser.add_argument(
        "--name", default=None, help="method name in the curve legend (default: the --pred file name)"
    )
    parser.set_defaults(func=run)


def format_summary(errors: JointErrors, camera_name: str) -> str:
    """Readable report: means, a few success rates, the per-joint table."""
    camera = CAMERAS[camera_name]
    max_curve = dict(zip(errors.thresholds_mm.tolist(), errors.curves["max"].tolist()))
    rates = ", ".join(
        f"{d:g} mm: {100 * max_curve[d]:.1f}%" for d in (10.0, 20.0, 40.0, 80.0) if d in max_curve
    )
    lines = [
        f"NYU joint evaluation: {errors.frames} frames, camera {camera_name} "
        f"(fx {camera.fx:g}, fy {camera.fy:g}, cx {camera.cx:g}, cy {camera.cy:g})",
        f"mean 3D error: {errors.mean_3d_mm:.3f} mm",
        f"mean 2D error: {errors.mean_2d_px:.3f} px",
    ]
    if rates:
        lines.append(f"frames with all joints within D: {rates}")
    lines.append(f"{'joint':<12} {'error_mm':>9}")
    lines += [f"{name:<12} {value:>9.3f}" for name, value in errors.per_joint_mm.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate --pred against --gt, print the summary and the JSON line, draw the curve."""
    if args.curve is not None:
        check_output_file(args.curve, "--curve")
    gt_uvd = read_joints_txt(args.gt)
    pred_uvd = read_joints_txt(args.pred)
    if len(pred_uvd) != len(gt_uvd):
        raise UserError(f"{args.pred} has {len(pred_uvd)} frames but {args.gt} has {len(gt_uvd)}")
    errors = evaluate_joints(pred_uvd, gt_uvd, camera=CAMERAS[args.camera])
    print(format_summary(errors, args.camera))
    if args.curve is not None:
        plot_success_curves({args.name or args.pred.stem: errors}, args.curve, mode=args.curve_mode)
        print(f"success curve written to {args.curve}")
    summary = errors.to_dict()
    print(json.dumps({key: summary[key] for key in SUMMARY_KEYS}))
    return 0
