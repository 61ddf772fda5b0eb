"""`keras-hpe reproduce`: data -> stage 1 -> dictionary -> restoration -> stage 2 -> stage 3 -> report -> export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `reproduce`."""
    from keras_hpe.cli.train import add_placement_options
    from keras_hpe.costs import DEFAULT_GPU_SPEEDUP
    from keras_hpe.reproduce import PLANS

    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper end to end: data, the three training stages, Tables 2-4, figures, export",
        description="Run every stage of the reproduction into --out, skipping the stages already done there "
        "with the same parameters (an interrupted run resumes), then write the report to --reports and the "
        "full method (stage-2 segmentation + full regression) as a TF Serving SavedModel to --saved-models.",
    )
    parser.add_argument(
        "--preset", choices=list(PLANS), default="quick",
        help="quick: <= 30 min on 2 CPU cores; paper: the paper's scale, for a big machine; "
        "tiny: a minute-long smoke run for tests and notebooks (default: quick)",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the stages' artefacts (default: runs/<preset>)")
    parser.add_argument("--reports", type=Path, default=Path("reports"),
                        help="folder the report is written to (default: reports)")
    parser.add_argument("--saved-models", type=Path, default=Path("saved_models/keras_hpe"),
                        help="TF Serving model folder; the export is its next version <N>/ "
                        "(default: saved_models/keras_hpe)")
    parser.add_argument("--nyu-root", type=Path, default=None,
                        help="use the NYU Hand Pose Dataset at this folder (train/, test/) as the real domain "
                        "instead of the simulated one; Tables 2-3 are then not run (NYU has no part labels)")
    parser.add_argument("--compare", type=Path, default=None, metavar="DIR",
                        help="with --nyu-root: a folder of other methods' published NYU test predictions, one "
                        "DIR/<method>.txt per method in evaluate-joints' format (one line per test frame used, "
                        "14 joints x u v d), each scored like evaluate-joints and added to Table 4 and Fig. 8")
    parser.add_argument("--sensor-config", type=Path, default=None,
                        help="JSON object overriding fields of the simulated sensor model (data.sensor.SensorConfig)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    parser.add_argument("--plan", action="store_true",
                        help="run nothing: print each stage's predicted time, peak memory and disk for this preset "
                        "and these options on this machine (keras_hpe/costs.py), and the totals; exit 2 if the "
                        "filesystem of --out has too little free space for the run")
    parser.add_argument("--gpu-speedup", type=float, default=DEFAULT_GPU_SPEEDUP, metavar="X",
                        help="with --plan: the speed of one GPU over 2 CPU cores on training steps, an assumption "
                        f"(not measured; default: {DEFAULT_GPU_SPEEDUP:g})")
    add_placement_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the reproduction; print where the report and the export are, the headline numbers, then summary.json.

    With --plan, print the predicted costs instead (`print_plan`)."""
    from keras_hpe.data.sensor import SensorConfig
    from keras_hpe.reproduce import get_plan, reproduce

    plan = get_plan(args.preset)
    out = args.out if args.out is not None else Path("runs") / plan.name
    sensor_config = None if args.sensor_config is None else SensorConfig.from_json(args.sensor_config)
    options = dict(reports_dir=args.reports, saved_models_dir=args.saved_models, nyu_root=args.nyu_root,
                   sensor_config=sensor_config, seed=args.seed, compare_dir=args.compare, strategy=args.strategy,
                   precision=args.precision)
    if args.plan:
        return print_plan(plan, out, options, args.gpu_speedup)
    result = reproduce(plan, out, progress=not args.no_progress, **options)
    ran = [stage.name for stage in result.stages if stage.ran]
    print(f"stages run: {', '.join(ran) if ran else 'none (all up to date)'}")
    print(f"report: {result.report_path}")
    print(f"export: {result.export_path}")
    for name, value in result.headline.items():
        print(f"{name}: {'not run' if value is None else f'{value:.2f}'}")
    print(json.dumps(result.summary))
    return 0


def print_plan(plan, out: Path, options: dict, gpu_speedup: float) -> int:
    """The plan's stages with their predicted costs, the disk check, then the prediction as JSON; writes nothing."""
    from keras_hpe.costs import format_bytes, plan_run
    from keras_hpe.reproduce import build_stages

    # Built as `reproduce` builds them, which checks the inputs (--nyu-root, --compare) the same way.
    stages = build_stages(plan, **options)
    cost, needed, free = plan_run(plan, stages, out, reports_dir=options["reports_dir"],
                                  saved_models_dir=options["saved_models_dir"], strategy=options["strategy"],
                                  gpu_speedup=gpu_speedup)
    print(f"plan {plan.name} (preset {plan.preset}): {plan.synth_frames:,} + {plan.synth_test_frames:,} synthetic "
          f"and {plan.real_frames:,} + {plan.real_test_frames:,} real frames of {plan.size} x {plan.size}")
    print(f"predicted for this machine ({cost.machine.describe()}) from costs measured on {cost.measured_on}")
    print(cost.table())
    print("memory: the peak of a stage in a process of its own; the dictionary's, restore's and evaluate's include "
          "the Annoy index, memory-mapped (page cache)")
    print(f"disk: {format_bytes(needed)} needed on the filesystem of {out}, {format_bytes(free)} free")
    print(json.dumps({**cost.to_dict(), "disk_needed_bytes": round(needed), "disk_free_bytes": free}))
    return 0
