"""`keras-hpe reproduce`: data -> stage 1 -> dictionary -> restoration -> stage 2 -> stage 3 -> report -> export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `reproduce`."""
    from keras_hpe.cli.train import add_placement_options
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
    add_placement_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the reproduction; print where the report and the export are, the headline numbers, then summary.json."""
    from keras_hpe.data.sensor import SensorConfig
    from keras_hpe.reproduce import get_plan, reproduce

    plan = get_plan(args.preset)
    sensor_config = None if args.sensor_config is None else SensorConfig.from_json(args.sensor_config)
    result = reproduce(
        plan,
        args.out if args.out is not None else Path("runs") / plan.name,
        reports_dir=args.reports,
        saved_models_dir=args.saved_models,
        nyu_root=args.nyu_root,
        sensor_config=sensor_config,
        seed=args.seed,
        progress=not args.no_progress,
        compare_dir=args.compare,
        strategy=args.strategy,
        precision=args.precision,
    )
    ran = [stage.name for stage in result.stages if stage.ran]
    print(f"stages run: {', '.join(ran) if ran else 'none (all up to date)'}")
    print(f"report: {result.report_path}")
    print(f"export: {result.export_path}")
    for name, value in result.headline.items():
        print(f"{name}: {'not run' if value is None else f'{value:.2f}'}")
    print(json.dumps(result.summary))
    return 0
