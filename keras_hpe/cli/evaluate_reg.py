"""`keras-hpe evaluate-reg`: joint errors of a trained regression variant on a data set (NYU protocol)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SUMMARY_KEYS = ("mean_3d_mm", "per_joint_mm", "mean_2d_px", "frames")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `evaluate-reg` sub-command."""
    parser = subparsers.add_parser(
        "evaluate-reg",
        help="score a trained regression variant on a depth + joints data set (mean 3D / 2D error, curves)",
        description=(
            "Predict joints with a trained variant (reg_<variant>.keras; its JSON beside it names the cascade's "
            "second model and the segmentation model), convert them to mm and uvd with the data set's camera "
            "and score them by the NYU protocol. The last line printed is a JSON summary."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="trained model, OUT/reg_<variant>.keras")
    parser.add_argument(
        "--seg", type=Path, default=None,
        help="segmentation model for semi/full (default: the one the model was trained with, from its JSON)",
    )
    parser.add_argument("--data", type=Path, required=True, help="test data set folder (depth + joints)")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="also write <model>_eval.json, <model>_pred_uvd.txt and the max-error success curve "
        "<model>_curve.png here (default: print only)",
    )
    parser.add_argument("--batch", type=int, default=64, help="frames per prediction batch (default: 64)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the summary, write the files, print the JSON line."""
    from keras_hpe.cli.evaluate_joints import format_summary
    from keras_hpe.errors import UserError
    from keras_hpe.evaluation.joints import plot_success_curves
    from keras_hpe.outputs import check_output_folder, output_folder, write_text
    from keras_hpe.training.reg_predict import evaluate_regression, load_pipeline

    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    if args.out is not None:
        check_output_folder(args.out, "--out")
    pipeline = load_pipeline(args.model, args.seg)
    errors, pred_uvd = evaluate_regression(pipeline, args.data, args.batch, progress=True)
    print(f"{pipeline.variant} ({args.model}) on {args.data}")
    print(format_summary(errors, "nyu"))
    summary = {"variant": pipeline.variant, **{key: errors.to_dict()[key] for key in SUMMARY_KEYS}}
    if args.out is not None:
        stem = args.model.stem
        lines = [" ".join(f"{value:.4f}" for value in frame) for frame in pred_uvd.reshape(len(pred_uvd), -1)]
        with output_folder(args.out, "--out"):
            write_text(args.out / f"{stem}_eval.json",
                       json.dumps({**errors.to_dict(), "variant": pipeline.variant}) + "\n")
            write_text(args.out / f"{stem}_pred_uvd.txt", "\n".join(lines) + "\n")
            curve = plot_success_curves({pipeline.variant: errors}, args.out / f"{stem}_curve.png")
        print(f"results written to {args.out} (success curve {curve.name})")
    print(json.dumps(summary))
    return 0
