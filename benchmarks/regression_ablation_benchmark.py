"""Does the regression network use its part masks? Variants and settings of stage 3, scored on one test split.

Trains each requested run (a variant of `training.reg`, with overrides of the
quick preset's `RegTrainingConfig` and its `RegressionConfig`) on a labelled
sensor-domain training split and scores it on a labelled test split; every
run after the first is compared with the first by a paired bootstrap over the
test frames (relative change of the mean 3D error, 95 % interval). The oracle
(e) regresses from the true labels, so its error bounds what segmentation can
add; `semi` uses the `--seg` network's labels. Runs are `NAME:VARIANT[:JSON]`,
the JSON overriding config fields (`{"epochs": 20, "model": {"opening_size": 1}}`).
The last line printed is JSON.

Measured for the default regression (2,000 training frames rendered with
`keras-hpe data sensor --n 2000 --seed 99 --eval-labels`, 10 epochs; the 1,000
test frames of a quick run; `--seg` its stage-1 network, 54% per pixel on
them; 2 cores under load; one training run each):

| run                               | mean 3D error | vs direct        |
|-----------------------------------|---------------|------------------|
| direct (a)                        | 31.84 mm      |                  |
| oracle, 3 x 3 opening (the paper) | 28.65 mm      | -10.0%           |
| oracle, no opening                | 23.81 mm      | -25.2%           |
| oracle, no opening, 20 epochs     | 21.65 mm      | -32.0%           |
| oracle, no opening, p1 pool 2     | 24.59 mm      | -22.8%, 6x time  |
| semi, 3 x 3 opening               | 32.30 mm      | +1.4%            |
| semi, no opening                  | 31.31 mm      | -1.7%            |

    python benchmarks/regression_ablation_benchmark.py --train DIR --test DIR [--seg MODEL] \\
        direct:direct oracle:oracle 'open1:oracle:{"model": {"opening_size": 1}}'
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_hpe.data.dataset import load_arrays  # noqa: E402
from keras_hpe.data.skeleton import JOINT_NAMES, JOINT_PARTS, NUM_PARTS  # noqa: E402
from keras_hpe.evaluation.statistics import Bootstrap  # noqa: E402
from keras_hpe.models.morphology import binary_opening  # noqa: E402
from keras_hpe.models.regression import part_channels  # noqa: E402
from keras_hpe.presets import get_preset  # noqa: E402
from keras_hpe.training.reg import train_regression  # noqa: E402
from keras_hpe.training.reg_predict import SEG_VARIANTS, VARIANTS, evaluate_regression, load_pipeline  # noqa: E402


def parse_run(text: str) -> tuple[str, str, dict]:
    """`NAME:VARIANT[:JSON]` -> (name, variant, overrides)."""
    name, _, rest = text.partition(":")
    variant, _, overrides = rest.partition(":")
    if not name or variant not in VARIANTS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:VARIANT[:JSON] with VARIANT one of {VARIANTS}")
    try:
        values = json.loads(overrides) if overrides else {}
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: the overrides are not JSON: {error}") from None
    if not isinstance(values, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: the overrides must be a JSON object")
    return name, variant, values


def empty_masks(labels: np.ndarray, opening_size: int) -> np.ndarray:
    """Per joint, the fraction of frames whose mask (its parts in `labels`, opened) is empty: (14,)."""
    membership = np.zeros((NUM_PARTS, len(JOINT_PARTS)), np.float32)
    for joint, parts in enumerate(JOINT_PARTS):
        membership[[part - 1 for part in parts], joint] = 1.0
    masks = np.minimum(part_channels(labels).numpy() @ membership, 1.0)
    opened = ops.convert_to_numpy(binary_opening(ops.convert_to_tensor(masks), opening_size))
    return (opened.sum(axis=(1, 2)) == 0).mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=parse_run,
                        help="NAME:VARIANT[:JSON overrides]; the first is the reference")
    parser.add_argument("--train", type=Path, required=True, help="labelled sensor training split (--eval-labels)")
    parser.add_argument("--test", type=Path, required=True, help="labelled test split")
    parser.add_argument("--seg", type=Path, default=None, help="segmentation model for semi / full runs")
    parser.add_argument("--work", type=Path, default=None, help="folder for the trained runs (default: temporary)")
    parser.add_argument("--seed", type=int, default=1, help="training seed of every run (default: 1)")
    args = parser.parse_args()
    if any(variant in SEG_VARIANTS for _, variant, _ in args.runs) and args.seg is None:
        parser.error("semi and full runs need --seg")
    labels = load_arrays(args.test, ["labels"])["labels"]
    empty = {size: empty_masks(labels, size) for size in (1, 3)}
    print("true-label masks empty (% of test frames) without / with a 3 x 3 opening:")
    print("  " + ", ".join(f"{name} {100 * empty[1][j]:.0f}/{100 * empty[3][j]:.0f}"
                           for j, name in enumerate(JOINT_NAMES)))
    preset = get_preset("quick").reg
    results, errors = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        for name, variant, overrides in args.runs:
            fields = {key: value for key, value in overrides.items() if key != "model"}
            config = replace(preset, model=replace(preset.model, **overrides.get("model", {})), **fields)
            result = train_regression(args.train, work / name, variant, config, seed=args.seed, progress=False,
                                      seg_path=args.seg if variant in SEG_VARIANTS else None)
            scores, _ = evaluate_regression(load_pipeline(result.model_paths[0]), args.test)
            errors[name] = scores.errors_mm.mean(axis=1)  # per frame, as Table 4's intervals
            results[name] = {"variant": variant, "overrides": overrides, "mean_3d_mm": round(scores.mean_3d_mm, 2),
                             "train_seconds": result.metrics["train_seconds_this_run"]}
            line = f"{name:24s} {variant:8s} {scores.mean_3d_mm:6.2f} mm  ({results[name]['train_seconds']:.0f} s)"
            reference = args.runs[0][0]
            if name != reference:
                change = Bootstrap(len(errors[name])).error_change_percent(errors[name], errors[reference])
                results[name]["change_vs_reference_percent"] = {key: round(getattr(change, key), 2)
                                                               for key in ("estimate", "low", "high")}
                line += f"  {change.estimate:+.1f}% [{change.low:+.1f}, {change.high:+.1f}] vs {reference}"
            print(line, flush=True)
    print(json.dumps({"benchmark": "regression_ablation", "train": str(args.train), "test": str(args.test),
                      "empty_true_masks": {f"opening_{size}": dict(zip(JOINT_NAMES, np.round(values, 4).tolist()))
                                           for size, values in empty.items()},
                      "runs": results}))


if __name__ == "__main__":
    main()
