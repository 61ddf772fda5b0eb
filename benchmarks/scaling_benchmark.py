"""How each stage of `keras-hpe reproduce` grows with what drives it, fitted into `keras_hpe/costs.json`.

Runs the stages of miniature reproductions (`RUNS`: the quick plan with its synthetic, real and test
frames at three sizes, stage 1 for one epoch, stage 2 for one, the regressions for two) and runs that
vary one driver alone (stage 1 and 2 at the paper preset's batch of 1, 32 Annoy trees, one restoration
worker, six regression epochs). Each stage runs in a process of its own (stage_measurement.py: seconds
as stage.json records them, peak memory, disk, and how busy other processes kept the cores). With
--max-others it waits before each measurement, for at most --max-wait seconds, until other processes
use fewer cores than that; with --remeasure-above it measures again the points they disturbed more.

It then fits `keras_hpe.costs`: per stage the coefficients of its time, memory and disk terms
(non-negative least squares, each point weighted by 1 / its value, so every size counts alike; the
dictionary's time part by part, from the build's own timings: Annoy's items per unique patch, its
trees per n log n), the constants behind the predicted sizes (hand pixels per frame, unique patches
against all patches, the gate's accepted share, Annoy's bytes per patch and tree, bytes per weight of
the saved models), writes them to --costs, and writes --report (scaling_report.py: the points, the
fits, the predictions for the quick and the paper plans, and the quick plan's prediction against
measured quick runs, --compare-run and --compare-summary) with a plot beside it. Prints the figures;
the last line is JSON.

    python benchmarks/scaling_benchmark.py --work /tmp/scaling --max-others 0.5 --max-wait 10
    python benchmarks/scaling_benchmark.py --work /tmp/scaling --refit --compare-run runs/quick

Measurements are appended to WORK/measurements.jsonl and the runs' folders kept, so a rerun
measures only what is missing; --refit fits and reports them without measuring.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from keras_hpe import costs, stage_bytes
from keras_hpe.costs import FittedCosts, Machine, RunSizes
from keras_hpe.outputs import write_text
from keras_hpe.reproduce import STAGE_FILE, ReproducePlan, get_plan
from scaling_report import (PLOTTED, REG_STAGES, Point, comparisons, main_stage, placeholder, plot,
                            print_comparison, report)
from stage_measurement import QUIET_SECONDS, measure, wait_for_quiet

MEASUREMENTS = "measurements.jsonl"
MINI = {"seg_epochs": 1, "seg_weak_epochs": 1, "reg_epochs": 2}
# Three sizes of the quick plan, each twice the last; the dictionary from every 4th synthetic frame.
SIZES = {
    "a": {"synth_frames": 1000, "synth_test_frames": 50, "real_frames": 250, "real_test_frames": 50,
          "dictionary_every": 4},
    "b": {"synth_frames": 2000, "synth_test_frames": 100, "real_frames": 500, "real_test_frames": 100,
          "dictionary_every": 4},
    "c": {"synth_frames": 4000, "synth_test_frames": 200, "real_frames": 1000, "real_test_frames": 200,
          "dictionary_every": 4},
}


@dataclass(frozen=True)
class Run:
    """A miniature reproduction: the quick plan with `sizes`, the training settings of `preset`.

    links: stages read from another run's finished folder; stages: those measured (None: all);
    timed: False where the run changes how a stage is parallel (its seconds stay out of the time fit).
    """

    name: str
    sizes: dict
    preset: str = "quick"
    links: tuple[tuple[str, str], ...] = ()
    stages: tuple[str, ...] | None = None
    timed: bool = True

    def plan(self) -> ReproducePlan:
        return replace(get_plan("quick"), name=f"scaling_{self.name}", preset=self.preset, **self.sizes)


# Runs a, b, c grow every driver together; the others vary one alone: the Annoy trees, the restoration's
# workers, stage 1 and 2's batch (the paper preset's 1) and the regressions' epochs.
RUNS = (
    Run("a", {**SIZES["a"], **MINI}),
    Run("b", {**SIZES["b"], **MINI}),
    Run("c", {**SIZES["c"], **MINI}),
    Run("b_trees32", {**SIZES["b"], **MINI, "dictionary_trees": 32}, links=(("synth", "b"),), stages=("dictionary",)),
    Run("b_workers1", {**SIZES["b"], **MINI, "restore_workers": 1}, stages=("restore",), timed=False,
        links=(("seg_synth", "b"), ("dictionary", "b"), ("real", "b"))),
    Run("a_batch1", {**SIZES["a"], **MINI}, preset="paper", stages=("seg_synth", "seg_weak"),
        links=(("synth", "a"), ("synth_test", "a"), ("restore", "a"), ("real_test", "a"))),
    Run("b_reg6", {**SIZES["b"], **MINI, "reg_epochs": 6}, stages=REG_STAGES,
        links=(("real", "b"), ("seg_synth", "b"), ("seg_weak", "b"))),
)
RUNS_BY_NAME = {run.name: run for run in RUNS}


# --- measuring -------------------------------------------------------------------------------------------------


def measure_all(
    work: Path, max_others: float | None, max_wait: float, remeasure_above: float | None
) -> list[dict]:
    """Measure every stage of every run not yet in WORK/measurements.jsonl (nor disturbed by other processes
    above `remeasure_above` cores); all measurements."""
    from keras_hpe.reproduce import build_stages

    log = work / MEASUREMENTS
    done = [m for m in read_measurements(log)
            if remeasure_above is None or m.get("others_cores", math.inf) <= remeasure_above]
    write_text(log, "".join(json.dumps(m) + "\n" for m in done))
    measured = {(m["run"], m["stage"]) for m in done}
    for run in RUNS:
        out = work / "runs" / run.name
        out.mkdir(parents=True, exist_ok=True)
        for stage, source in run.links:
            link = out / stage
            if not link.is_symlink():
                link.symlink_to(Path("..") / source / stage)
        names = [stage for stage in run.stages or [stage.name for stage in build_stages(run.plan())]
                 if (run.name, stage) not in measured]
        for stage in names:
            if (out / stage).exists():  # measured again, or finished by a benchmark killed before it logged it
                shutil.rmtree(out / stage)
            wait_for_quiet(max_others, max_wait)
            record = {"run": run.name, **measure(run.plan(), stage, out)}
            done.append(record)
            with open(log, "a") as file:
                file.write(json.dumps(record) + "\n")
            print(f"  {run.name:<12} {stage:<12} {record['seconds']:>8.1f} s  "
                  f"{record['memory_bytes'] / 1e9:5.2f} GB  {record['disk_bytes'] / 1e6:9.1f} MB  "
                  f"load {record['load_before'][0]:.2f} -> {record['load_after'][0]:.2f}, "
                  f"others {record['others_cores']:.2f} cores", flush=True)
    return done


def read_measurements(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


# --- what drove each measurement -------------------------------------------------------------------------------


def stage_result(work: Path, run: str, stage: str) -> dict:
    """The result a run's stage (its own or a linked one) recorded."""
    return json.loads((work / "runs" / run / stage / STAGE_FILE).read_text())["result"]


def measured_sizes(work: Path, run: Run, weights: dict[str, int]) -> RunSizes:
    """The run's `RunSizes` with its dictionary's patches and its restoration's accepted frames as measured."""
    from keras_hpe.presets import get_preset

    plan = run.plan()
    dictionary = stage_result(work, run.name, "dictionary") if (work / "runs" / run.name / "dictionary").exists() \
        else {"patches_total": 0, "patches_unique": 0}
    restore = work / "runs" / run.name / "restore"
    accepted = stage_result(work, run.name, "restore")["accepted"] if restore.exists() else 0
    return RunSizes.of_plan(plan, get_preset(plan.preset), patches_total=dictionary["patches_total"],
                            patches_unique=dictionary["patches_unique"], accepted_frames=accepted, weights=weights)


def unique_growth(work: Path) -> list[dict]:
    """Unique against all patches of the first n synthetic frames of run c, the dictionary's own functions."""
    from keras_hpe.data.dataset import load_arrays
    from keras_hpe.restoration.patches import extract_patches, unique_patches

    labels = load_arrays(work / "runs" / "c" / "synth" / "data", ["labels"])["labels"]
    rows = []
    for frames in sorted({min(frames, len(labels)) for frames in (250, 500, 1000, 2000, 4000, len(labels))}):
        patches, _ = extract_patches(labels[:frames])
        rows.append({"frames": frames, "patches": len(patches), "unique": len(unique_patches(patches)[0])})
    return rows


# --- fitting --------------------------------------------------------------------------------------------------


def fit_terms(
    rows: list[dict[str, float]], targets: list[float], terms: tuple[str, ...], totals: list[float] | None = None
) -> dict[str, float]:
    """Non-negative coefficients of `terms` fitting `targets`, each point's error relative to its total
    (the measured value of which the target is a part; default: the target)."""
    from scipy.optimize import nnls

    matrix = np.array([[row[term] for term in terms] for row in rows], dtype=np.float64)
    target = np.asarray(targets, dtype=np.float64)
    weight = 1.0 / np.maximum(np.abs(np.asarray(totals if totals is not None else targets, np.float64)), 1e-9)
    scale = np.maximum(np.abs(matrix).max(axis=0), 1e-30)
    solution, _ = nnls(matrix / scale * weight[:, None], target * weight)
    return {term: float(value / s) for term, value, s in zip(terms, solution, scale)}


def fit(
    work: Path, records: list[dict], command: str, weights: dict[str, int]
) -> tuple[FittedCosts, list[Point], dict]:
    """The cost model fitted to `records`, the points with their fitted values, and the growth figures."""
    sizes = {run.name: measured_sizes(work, run, weights) for run in RUNS}
    stage_order = [*costs.MODELS, *costs.TIME_TERMS]  # the stages in the order a run has them
    records = sorted(records, key=lambda m: (list(RUNS_BY_NAME).index(m["run"]), stage_order.index(m["stage"])))
    points = [Point(m["run"], m["stage"], costs.MODELS.get(m["stage"], m["stage"]),
                    costs.stage_terms(m["stage"], sizes[m["run"]]), sizes[m["run"]], m,
                    RUNS_BY_NAME[m["run"]].timed) for m in records]
    by_model = {model: [point for point in points if point.model == model] for model in costs.TIME_TERMS}

    # Constants behind the predicted sizes.
    growth = unique_growth(work)
    dictionaries = by_model["dictionary"]
    log_patches = np.log([row["patches"] for row in growth])
    exponent, log_scale = np.polyfit(log_patches, np.log([row["unique"] for row in growth]), 1)
    index = np.array([[p.sizes.patches_unique, p.sizes.patches_unique * p.sizes.trees] for p in dictionaries])
    index_bytes = np.array([dictionary_meta(work, p.run)["index_bytes"] for p in dictionaries])
    item_bytes, tree_bytes = np.linalg.lstsq(index, index_bytes, rcond=None)[0]
    restores = [p for p in by_model["restore"] if p.timed]
    accepted = sum(p.record["result"]["accepted"] for p in restores) / sum(p.sizes.real_frames for p in restores)
    model_files = {"segmentation": [], "regression": []}
    for run in ("a", "b", "c"):
        out = work / "runs" / run
        model_files["segmentation"] += [(out / name / f"{name}.keras", weights["segmentation"])
                                        for name in ("seg_synth", "seg_weak")]
        model_files["regression"] += [(out / "reg_direct" / "reg_direct.keras", weights["direct"]),
                                      (out / "reg_full" / "reg_full.keras", weights["regression"])]
    exports = by_model["export"]
    constants = {
        "hand_pixels_per_frame": growth[-1]["patches"] / growth[-1]["frames"],
        "unique_scale": float(np.exp(log_scale)), "unique_exponent": float(exponent),
        "accepted_fraction": accepted,
        "index_item_bytes": float(item_bytes), "index_tree_bytes": float(tree_bytes),
        "bytes_per_weight": {kind: sum(path.stat().st_size for path, _ in files) / sum(n for _, n in files)
                             for kind, files in model_files.items()},
        "saved_model_bytes_per_weight": float(np.mean([p.record["disk_bytes"] for p in exports]))
        / (weights["segmentation"] + weights["regression"]),
    }
    fitted = FittedCosts(time={}, memory={}, disk={}, constants=constants, command=command)

    for model, group in by_model.items():
        for point in group:  # the computed parts need the constants above
            point.exact_memory = stage_bytes.exact_memory_bytes(point.stage, point.sizes, fitted)
            point.exact_disk = stage_bytes.exact_disk_bytes(point.stage, point.sizes, fitted)[0]
        timed = [p for p in group if p.timed]
        if model == "dictionary":
            fitted.time[model] = fit_dictionary_time(work, timed)
        else:
            fitted.time[model] = fit_terms([p.terms for p in timed], [p.record["seconds"] for p in timed],
                                           costs.TIME_TERMS[model])
        for quantity, terms, exact in (("memory", costs.MEMORY_TERMS[model], "exact_memory"),
                                       ("disk", costs.DISK_TERMS[model], "exact_disk")):
            totals = [p.record[f"{quantity}_bytes"] for p in group]
            remainders = [max(total - getattr(p, exact), 0.0) for p, total in zip(group, totals)]
            getattr(fitted, quantity)[model] = fit_terms([p.terms for p in group], remainders, terms, totals)
        for point in group:
            point.fitted = {"seconds": costs.linear(fitted.time[model], point.terms),
                            "memory_bytes": point.exact_memory + costs.linear(fitted.memory[model], point.terms),
                            "disk_bytes": point.exact_disk + costs.linear(fitted.disk[model], point.terms)}
    workers = {p.run: p.record["seconds"] for p in by_model["restore"] if p.run in ("b", "b_workers1")}
    extra = {"unique_growth": growth, "restore_one_over_two_workers": workers["b_workers1"] / workers["b"],
             "exponents": growth_exponents(by_model)}
    measured = {
        "date": time.strftime("%Y-%m-%d", time.gmtime((work / MEASUREMENTS).stat().st_mtime)), "machine": {"processor": processor(), "cores": os.cpu_count(),
                                                       "python": platform.python_version()},
        "load_before": [min(m["load_before"][0] for m in records), max(m["load_before"][0] for m in records)],
        "others_cores": [min(m["others_cores"] for m in records), float(np.mean([m["others_cores"] for m in records])),
                         max(m["others_cores"] for m in records)],
        "points": len(records), "stage_seconds": round(sum(m["seconds"] for m in records), 1),
    }
    return replace(fitted, measured=measured), points, extra


def processor() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def fit_dictionary_time(work: Path, points: list[Point]) -> dict[str, float]:
    """The dictionary's time part by part, from `build_dictionary`'s own timings in meta.json."""
    builds = [dictionary_meta(work, p.run)["build_seconds"] for p in points]

    def through_origin(term: str, seconds: list[float]) -> float:
        return fit_terms([p.terms for p in points], seconds, (term,))[term]

    coefficients = {
        "unique": through_origin("unique", [b["add_items"] for b in builds]),
        "tree_work": through_origin("tree_work", [b["build_trees"] for b in builds]),
        "patches": through_origin("patches", [b["extract"] + b["neighbours"] for b in builds]),
    }
    rest = [p.record["seconds"] - sum(b.values()) for p, b in zip(points, builds)]  # loading the labels, writing
    return {**fit_terms([p.terms for p in points], rest, ("fixed", "loaded_frames")), **coefficients}


def dictionary_meta(work: Path, run: str) -> dict:
    return json.loads((work / "runs" / run / "dictionary" / "index" / "meta.json").read_text())


def growth_exponents(by_model: dict[str, list[Point]]) -> dict[str, float]:
    """d log(seconds) / d log(driver) from run a to run c: 1 = linear; below 1 the fixed part still weighs."""
    exponents = {}
    for model, axis in PLOTTED.items():
        ends = {p.run: p for p in by_model.get(model, []) if p.run in ("a", "c") and p.stage == main_stage(model)}
        if len(ends) == 2 and ends["a"].terms[axis] != ends["c"].terms[axis]:
            a, c = ends["a"], ends["c"]
            exponents[model] = math.log(c.record["seconds"] / a.record["seconds"]) / math.log(
                c.terms[axis] / a.terms[axis])
    return exponents


# --- predictions and the report ----------------------------------------------------------------------------------


MACHINES = {"reference (2 cores)": Machine(), "32 cores": Machine(cores=32), "32 cores + 1 GPU": Machine(32, 1),
            "32 cores + 8 GPUs": Machine(32, 8)}


def predict(plan: ReproducePlan, fitted: FittedCosts, machine: Machine) -> costs.RunCost:
    from keras_hpe.presets import get_preset
    from keras_hpe.reproduce import build_stages

    preset = get_preset(plan.preset)
    if machine.cores != costs.REFERENCE_CORES:
        plan = replace(plan, restore_workers=machine.cores)  # the paper plan's workers are the machine's cores
    stages = [stage.name for stage in build_stages(plan)]
    return costs.predict_run(plan, stages, preset, fitted, machine, costs.model_weights(preset, plan.size))


# --- main -------------------------------------------------------------------------------------------------------


# What the recorded command shows for each path option: the report is read on other machines.
PATH_PLACEHOLDERS = {"--work": "WORK", "--costs": "COSTS", "--report": "REPORT", "--compare-run": "RUN",
                     "--compare-summary": "SUMMARY"}


def recorded_command(argv: list[str]) -> str:
    """The command line that measured or refitted, without --refit and --compare-note, its paths as placeholders
    (RUN1, RUN2, ... for a repeated option, as `scaling_report.comparisons` names the runs)."""
    argv = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--") else [arg])]
    counts = {option: argv.count(option) for option in PATH_PLACEHOLDERS}
    seen = dict.fromkeys(PATH_PLACEHOLDERS, 0)
    words, previous = [], ""
    for arg in argv:
        if previous in PATH_PLACEHOLDERS:
            words.append(placeholder(PATH_PLACEHOLDERS[previous], seen[previous], counts[previous]))
            seen[previous] += 1
        elif arg not in ("--refit", "--compare-note") and previous != "--compare-note":
            words.append(arg)
        previous = arg
    return " ".join(["python benchmarks/scaling_benchmark.py", *words])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/scaling"),
                        help="folder of the miniature runs and measurements.jsonl, kept for reruns "
                        "(default: runs/scaling)")
    parser.add_argument("--costs", type=Path, default=costs.COSTS_FILE,
                        help=f"the fitted cost model to write (default: {costs.COSTS_FILE})")
    parser.add_argument("--report", type=Path, default=Path("reports/scaling.md"),
                        help="the report to write; the plot goes beside it as .png (default: reports/scaling.md)")
    parser.add_argument("--max-others", type=float, default=None, metavar="CORES",
                        help="wait before each measurement until other processes use fewer cores than this "
                        f"(over {QUIET_SECONDS} s; default: do not wait)")
    parser.add_argument("--max-wait", type=float, default=60,
                        help="seconds to wait for other processes before measuring anyway (default: 60)")
    parser.add_argument("--remeasure-above", type=float, default=None, metavar="CORES",
                        help="measure again the points during which other processes used more cores than this on "
                        "average, or whose record lacks that figure (default: keep every point)")
    parser.add_argument("--refit", action="store_true", help="fit and report WORK's measurements, measure nothing")
    parser.add_argument("--compare-run", type=Path, action="append", default=[],
                        help="a quick run's folder whose stage.json seconds the prediction is compared with "
                        "(repeatable)")
    parser.add_argument("--compare-summary", type=Path, action="append", default=[],
                        help="a quick run's report summary.json whose seconds are compared (repeatable)")
    parser.add_argument("--compare-note", default="",
                        help="a sentence for the report under the comparison: where and under what load the compared "
                        "runs ran (default: none)")
    args = parser.parse_args()
    from keras_hpe.presets import get_preset

    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = read_measurements(args.work / MEASUREMENTS) if args.refit else \
        measure_all(args.work, args.max_others, args.max_wait, args.remeasure_above)
    measuring = time.perf_counter() - started
    command = recorded_command(sys.argv[1:])
    weights = costs.model_weights(get_preset("quick"), costs.REFERENCE_SIZE)
    if weights != costs.model_weights(get_preset("paper"), costs.REFERENCE_SIZE):
        raise SystemExit("the quick and paper presets' networks differ: the points measure one of them")
    fitted, points, extra = fit(args.work, records, command, weights)
    fitted.save(args.costs)
    quick = predict(get_plan("quick"), fitted, Machine())
    paper = {name: predict(get_plan("paper"), fitted, machine) for name, machine in MACHINES.items()}
    compared = comparisons(quick, args.compare_run, args.compare_summary)
    sizes = {name: costs.predicted_sizes(get_plan(name), get_preset(get_plan(name).preset), fitted, weights)
             for name in ("quick", "paper")}
    plot(points, fitted, sizes, args.report.with_suffix(".png"))
    summary = {
        "constants": fitted.constants, "time": fitted.time, "growth_exponents": extra["exponents"],
        "quick": quick.to_dict()["total"], "paper": {name: cost.to_dict()["total"] for name, cost in paper.items()},
        "compared": compared, "load_before": fitted.measured["load_before"],
        "others_cores": fitted.measured["others_cores"],
    }
    report(args.report, fitted, points, extra, SIZES, sizes, quick, paper, compared, args.compare_note, summary)
    print(f"{len(records)} measurements ({measuring / 60:.1f} min this run); wrote {args.costs}, {args.report}")
    print(quick.table())
    print(paper["reference (2 cores)"].table())
    for name, cost in paper.items():
        print(f"paper plan, {name}: {costs.format_duration(cost.seconds)}")
    print_comparison(compared)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
