"""`keras-hpe reproduce`: the whole paper, from rendering the data to the report and the export.

The run is a list of `Stage`s, each a small function that turns the artefacts
of earlier stages into its own folder `OUT/<stage>/`:

    synth, synth_test, real, real_test      data sets (real = the simulated "sensor" domain, or NYU)
    seg_synth                               stage 1: segmentation trained on synthetic frames
    dictionary                              Annoy index of label patches of every 3rd synthetic frame
    restore                                 stage-1 predictions of the real frames, restored and gated
    seg_weak                                stage 2: segmentation fine-tuned on synthetic + restored real
    reg_direct, reg_cascade, reg_semi, reg_full   stage 3: the regression variants (a)-(d)
    evaluate                                Tables 2-4 numbers, success curves, Fig. 5, 6 and 9
    export                                  the full method as a TF Serving SavedModel
    report                                  README.md, tables, figures and summary.json

Each finished folder holds `stage.json`: the stage's parameters, the
fingerprints of the stages it read, the package version, the seconds it took
and its own fingerprint (new each time the stage completes, so whatever reads
a recomputed artefact is recomputed too). A stage whose `stage.json` matches is
skipped, so an interrupted run resumes; a stage whose parameters or inputs
changed runs again, and with it everything downstream. The export and the
report are written outside OUT (`--saved-models`, `--reports`); their
`stage.json` says where, and they rerun if that is gone. A stage
works in `OUT/<stage>.partial/` and that folder is renamed into place only
when complete; the partial folder survives an interruption, so data
generation continues at the next shard and training at the last epoch
(`keras.callbacks.BackupAndRestore`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

import keras_hpe
from keras_hpe.outputs import atomic_path, folder_lock, write_text
from keras_hpe.errors import UserError
from keras_hpe.faults import crash_point
from keras_hpe.restoration.index import DEFAULT_SEARCH_K, DEFAULT_TREES

if TYPE_CHECKING:
    from keras_hpe.data.sensor import SensorConfig

STAGE_FILE = "stage.json"
PENDING_FILE = "stage.pending.json"  # not "pending.json": the data set writer uses that name
PARTIAL_SUFFIX = ".partial"
DATA = "data"  # a data stage's data set sub-folder
DICTIONARY = "index"
RESTORED = "restored"
EVALUATION_FILE = "evaluation.json"
ERRORS_FILE = "joint_errors.npz"
COUNTS_FILE = "segmentation_counts.npz"  # per-frame counts of every Table 2/3 row, for the intervals
SYNTH_TEST_COUNTS_FILE = "synth_test_counts.npz"  # stage 1's, on the held-out synthetic frames
FIGURES = "figures"
REG_VARIANTS = ("direct", "cascade", "semi", "full")
NYU_NO_LABELS = (
    "not run: the NYU Hand Pose Dataset has no part labels, so segmentation accuracy cannot be measured"
)
# The paper's NYU sizes (72,757 train / 8,252 test frames) and synthetic set (~170k frames).
NYU_TRAIN_FRAMES = 72757
NYU_TEST_FRAMES = 8252


@dataclass(frozen=True)
class ReproducePlan:
    """The sizes of one reproduction run; the training configs come from `presets.get_preset(preset)`.

    Attributes:
        name: the plan's name.
        preset: the `presets.PRESETS` entry holding the stages' training configs.
        size: crop size S of every data set.
        synth_frames, synth_test_frames: synthetic training and held-out frames.
        real_frames: real training frames (depth + joints only).
        real_test_frames: labelled real evaluation frames: Tables 2-3 and the joint
            test set of Table 4 (with NYU: the first frames of its test split).
        shard_size: frames per data set shard.
        dictionary_every: the dictionary takes every n-th synthetic frame (paper: a third).
        patch, window: P and W of the restoration (eq. 1-2).
        dictionary_trees, search_k: Annoy's trees and search_k.
        restore_method: the restoration of stage 2 (paper: eq. 2, "integrate").
        restore_workers: restoration processes.
        table2_methods: the restorations compared in Table 2.
        seg_epochs, reg_epochs, batch_size: override the preset's (None: keep them).
        seg_weak_epochs: fine-tuning epochs of stage 2 (paper: 10).
        fig5_frames, fig9_frames: frames shown in Fig. 5 and Fig. 9.
    """

    name: str
    preset: str
    size: int
    synth_frames: int
    synth_test_frames: int
    real_frames: int
    real_test_frames: int
    shard_size: int = 1024
    dictionary_every: int = 3
    patch: int = 7
    window: int = 5
    dictionary_trees: int = DEFAULT_TREES
    search_k: int = DEFAULT_SEARCH_K
    restore_method: str = "integrate"
    restore_workers: int = 2
    table2_methods: tuple[str, ...] = ("none", "center", "integrate", "crf-potts", "crf-overlap")
    seg_epochs: int | None = None
    seg_weak_epochs: int = 10
    reg_epochs: int | None = None
    batch_size: int | None = None
    fig5_frames: int = 6
    fig9_frames: int = 24

    def __post_init__(self) -> None:
        counts = {name: getattr(self, name) for name in
                  ("size", "synth_frames", "synth_test_frames", "real_frames", "real_test_frames", "shard_size",
                   "dictionary_every", "dictionary_trees", "search_k", "restore_workers", "seg_weak_epochs",
                   "fig5_frames", "fig9_frames")}
        for name, value in counts.items():
            if int(value) != value or value < 1:
                raise UserError(f"reproduce plan {self.name!r}: {name} must be an integer >= 1, got {value!r}")
        if "none" not in self.table2_methods:
            raise UserError(f"reproduce plan {self.name!r}: table2_methods must include 'none', the reference")


PLANS: dict[str, ReproducePlan] = {
    # Ours: 50,000 synthetic frames at 64 x 64; the dictionary from every 25th (~2,000
    # frames) holds ~0.8M patches (~390 hand pixels a frame). Aimed at <= 30 min on 2 CPU
    # cores; stage 2 gets 2 epochs instead of the paper's 10 for that budget. 1,000 real test
    # frames (300 before) narrow the verdicts' bootstrap intervals by sqrt(1000 / 300) = 1.8x;
    # the evaluation stage took 101 s for 300 frames, so they cost about 4 more minutes.
    # Stage 1 sees fresh frames instead of repeated epochs, for the same training steps: rendering
    # is cheap and fresh frames cannot be overfitted. benchmarks/seg_accuracy_benchmark.py, default
    # network, held-out synthetic per pixel: 30,000 frames x 1 epoch 59.2% in 244 s of training,
    # 6,000 x 5 epochs 58.3% in 353 s (2 cores under load; one run each, so +0.9 points is not a
    # finding on its own). 50,000 frames (30,000 before) since stage 1 trains in bfloat16
    # (`presets.SegTrainingConfig`): the same training minutes as 30,000 in float32. The set
    # takes 1 GB on disk.
    "quick": ReproducePlan(
        name="quick", preset="quick", size=64,
        synth_frames=50000, synth_test_frames=500, real_frames=2000, real_test_frames=1000,
        dictionary_every=25, seg_epochs=1, restore_workers=2, seg_weak_epochs=2,
        table2_methods=("none", "center", "integrate", "crf-potts", "crf-overlap"),
    ),
    # The paper's scale: ~170k synthetic frames (a third of them, ~57k, give ~36M
    # dictionary patches), NYU's frame counts, 100 epochs of stage 1 (the preset's)
    # and 10 of stage 2; for a many-core machine with a GPU.
    "paper": ReproducePlan(
        name="paper", preset="paper", size=64,
        synth_frames=170000, synth_test_frames=5000, real_frames=NYU_TRAIN_FRAMES, real_test_frames=NYU_TEST_FRAMES,
        dictionary_trees=32, restore_workers=max(1, os.cpu_count() or 1), seg_weak_epochs=10,
    ),
    # Tests and notebooks: 32 x 32 crops, a few dozen frames, two epochs per training stage (the
    # fewest that let a killed run resume from an epoch checkpoint).
    "tiny": ReproducePlan(
        name="tiny", preset="quick", size=32,
        synth_frames=48, synth_test_frames=16, real_frames=32, real_test_frames=16, shard_size=32,
        dictionary_trees=2, search_k=50, restore_workers=1, seg_epochs=2, seg_weak_epochs=2, reg_epochs=2,
        batch_size=16, fig5_frames=3, fig9_frames=6,
    ),
}


def get_plan(name: str) -> ReproducePlan:
    """The plan called `name` ("quick", "paper" or "tiny")."""
    if name not in PLANS:
        raise UserError(f"unknown reproduce plan {name!r}; known: {', '.join(PLANS)}")
    return PLANS[name]


@dataclass(frozen=True)
class Stage:
    """One step of the run: `run(work, inputs, params, progress) -> result` fills the folder `work`.

    inputs: names of the earlier stages whose folders it reads (and whose fingerprints it records).
    params: everything else its output depends on (JSON values).
    outside: a file outside OUT that must exist for a finished stage to count (report, export).
    Settings that do not change the output (worker processes) are bound into `run`, not in `params`.
    """

    name: str
    inputs: tuple[str, ...]
    params: dict
    run: Callable[[Path, dict[str, Path], dict, bool], dict]
    outside: Callable[[dict], Path] | None = None


@dataclass
class StageRecord:
    """How a stage went in this run: `ran` False when its finished folder was reused."""

    name: str
    ran: bool
    seconds: float
    folder: Path
    result: dict


@dataclass
class ReproduceResult:
    """What `reproduce` did: the stages, the report's README, the export folder and summary.json's content."""

    stages: list[StageRecord]
    report_path: Path
    export_path: Path
    summary: dict
    headline: dict = field(default_factory=dict)


def derived_seed(seed: int, name: str) -> int:
    """A seed for `name` (a data set, a stage) derived from the run's seed: different per name, deterministic.

    In [0, 2**31): Annoy takes a signed 32-bit seed.
    """
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0] >> 1)


def reproduce(
    plan: ReproducePlan,
    out_dir: str | os.PathLike,
    *,
    reports_dir: str | os.PathLike = "reports",
    saved_models_dir: str | os.PathLike = "saved_models/keras_hpe",
    nyu_root: str | os.PathLike | None = None,
    sensor_config: SensorConfig | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ReproduceResult:
    """Run every stage of `plan` into `out_dir`, skipping those already done; write the report and the export.

    `nyu_root` replaces the simulated real domain by the NYU data set at that
    folder (train/ and test/); `sensor_config` (a `data.sensor.SensorConfig`)
    replaces the default sensor model of the simulated one.
    """
    from tqdm.auto import tqdm

    stages = build_stages(plan, reports_dir=reports_dir, saved_models_dir=saved_models_dir, nyu_root=nyu_root,
                          sensor_config=sensor_config, seed=seed)
    records: dict[str, StageRecord] = {}
    fingerprints: dict[str, str] = {}
    # One reproduction per folder at a time: a second one gets a UserError instead of mixing stages.
    with folder_lock(out_dir, "reproduction folder") as out_dir, \
            tqdm(total=len(stages), unit="stage", desc="reproduce", position=0, disable=not progress) as bar:
        for stage in stages:
            bar.set_description(f"reproduce: {stage.name}")
            record, fingerprints[stage.name] = run_stage(stage, out_dir, fingerprints, records, progress)
            records[stage.name] = record
            bar.update(1)
    report = records["report"].result
    summary = json.loads(Path(report["summary"]).read_text())
    return ReproduceResult(
        stages=list(records.values()),
        report_path=Path(report["readme"]),
        export_path=Path(records["export"].result["export_path"]),
        summary=summary,
        headline=headline_numbers(summary),
    )


def run_stage(
    stage: Stage,
    out_dir: Path,
    fingerprints: dict[str, str],
    records: dict[str, StageRecord],
    progress: bool,
) -> tuple[StageRecord, str]:
    """Run `stage` unless its finished folder matches; return its record and fingerprint."""
    key = {
        "stage": stage.name,
        "params": _json_normal(stage.params),
        "inputs": {name: fingerprints[name] for name in stage.inputs},
        "version": keras_hpe.__version__,
    }
    final = out_dir / stage.name
    partial = out_dir / f"{stage.name}{PARTIAL_SUFFIX}"
    inputs = {name: records[name].folder for name in stage.inputs}
    for folder in (final, partial):
        if folder.exists() and not ((folder / STAGE_FILE).is_file() or (folder / PENDING_FILE).is_file()):
            raise UserError(
                f"{folder} exists and is not a stage folder of a reproduction (no {STAGE_FILE}); "
                "move it away or choose another --out"
            )
    done = _read_stage(final)
    if done is not None and _matches(done, key, stage):
        return StageRecord(stage.name, False, done["seconds"], final, done["result"]), done["fingerprint"]
    finished = _read_stage(partial)  # complete, but interrupted before the rename
    if finished is None or not _matches(finished, key, stage):
        pending = partial / PENDING_FILE
        if partial.exists() and _read_json(pending) != key:
            shutil.rmtree(partial)  # left by a run with other parameters or inputs: its state is not ours
        partial.mkdir(parents=True, exist_ok=True)
        write_text(pending, json.dumps(key, indent=2) + "\n")
        started = time.perf_counter()
        result = stage.run(partial, inputs, stage.params, progress)
        seconds = time.perf_counter() - started
        # A new token per completed run: downstream stages rerun even if this one is redone with the same key.
        fingerprint = hashlib.sha256((json.dumps(key, sort_keys=True) + uuid.uuid4().hex).encode()).hexdigest()
        finished = {**key, "seconds": round(seconds, 3), "fingerprint": fingerprint,
                    "result": _json_normal(result)}
        write_text(partial / STAGE_FILE, json.dumps(finished, indent=2) + "\n")
        (partial / PENDING_FILE).unlink()
        crash_point("stage.done", stage.name)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return StageRecord(stage.name, True, finished["seconds"], final, finished["result"]), finished["fingerprint"]


def build_stages(
    plan: ReproducePlan,
    *,
    reports_dir: str | os.PathLike = "reports",
    saved_models_dir: str | os.PathLike = "saved_models/keras_hpe",
    nyu_root: str | os.PathLike | None = None,
    sensor_config: SensorConfig | None = None,
    seed: int = 0,
) -> list[Stage]:
    """The stages of a run, in order, with their parameters; checks the user's inputs first."""
    from keras_hpe.data.sensor import SensorConfig
    from keras_hpe.presets import get_preset

    preset = get_preset(plan.preset)
    if nyu_root is not None:
        nyu_root = Path(nyu_root)
        if sensor_config is not None:
            raise UserError("--sensor-config models the simulated real domain; it cannot be used with --nyu-root")
        for split in ("train", "test"):
            if not (nyu_root / split).is_dir():
                raise UserError(f"NYU folder {nyu_root / split} does not exist (expected ROOT/train and ROOT/test)")
    sensor = sensor_config or SensorConfig()
    seg = asdict(preset.seg)
    reg_config = preset.reg
    reg = reg_config.to_dict()
    size = {"size": plan.size, "shard_size": plan.shard_size}

    def synth(name: str, frames: int) -> Stage:
        return Stage(name, (), {**size, "frames": frames, "seed": derived_seed(seed, name)}, _run_synth)

    if nyu_root is None:
        real = [
            Stage("real", (), {**size, "frames": plan.real_frames, "seed": derived_seed(seed, "real"),
                               "eval_labels": False, "sensor": sensor.to_dict()}, _run_sensor),
            Stage("real_test", (), {**size, "frames": plan.real_test_frames, "seed": derived_seed(seed, "real_test"),
                                    "eval_labels": True, "sensor": sensor.to_dict()}, _run_sensor),
        ]
    else:
        root = str(nyu_root.resolve())
        real = [
            Stage("real", (), {**size, "root": root, "split": "train", "frames": plan.real_frames}, _run_nyu),
            Stage("real_test", (), {**size, "root": root, "split": "test", "frames": plan.real_test_frames}, _run_nyu),
        ]
    reg_stages = [
        Stage(f"reg_{variant}", ("real",) + ((seg_model,) if seg_model else ()),
              {"variant": variant, "config": reg, "reg_epochs": plan.reg_epochs, "batch_size": plan.batch_size,
               "seed": derived_seed(seed, f"reg_{variant}")},
              partial(_run_reg, config=reg_config, seg_model=seg_model))
        for variant, seg_model in (("direct", None), ("cascade", None), ("semi", "seg_synth"), ("full", "seg_weak"))
    ]
    reports_dir = Path(reports_dir).resolve()
    saved_models_dir = Path(saved_models_dir).resolve()
    return [
        synth("synth", plan.synth_frames),
        synth("synth_test", plan.synth_test_frames),
        *real,
        Stage("seg_synth", ("synth", "synth_test"),
              {"config": seg, "seg_epochs": plan.seg_epochs, "batch_size": plan.batch_size,
               "seed": derived_seed(seed, "seg_synth")},
              partial(_run_seg_synth, config=preset.seg)),
        Stage("dictionary", ("synth",),
              {"every": plan.dictionary_every, "patch": plan.patch, "trees": plan.dictionary_trees,
               "search_k": plan.search_k, "seed": derived_seed(seed, "dictionary")}, _run_dictionary),
        Stage("restore", ("seg_synth", "dictionary", "real"),
              {"method": plan.restore_method, "patch": plan.patch, "window": plan.window},
              partial(_run_restore, workers=plan.restore_workers)),
        Stage("seg_weak", ("seg_synth", "synth", "restore", "real_test"),
              {"config": seg, "epochs": plan.seg_weak_epochs, "batch_size": plan.batch_size,
               "seed": derived_seed(seed, "seg_weak")}, partial(_run_seg_weak, config=preset.seg)),
        *reg_stages,
        Stage("evaluate", ("seg_synth", "seg_weak", "dictionary", "real_test", *(s.name for s in reg_stages)),
              {"table2_methods": list(plan.table2_methods), "patch": plan.patch, "window": plan.window,
               "fig5_frames": plan.fig5_frames, "fig9_frames": plan.fig9_frames,
               "seed": derived_seed(seed, "evaluate")}, partial(_run_evaluate, workers=plan.restore_workers)),
        # The export comes before the report, so that the report can say where it is and how long it took.
        Stage("export", ("seg_weak", "reg_full"), {"saved_models": str(saved_models_dir)}, _run_export,
              outside=lambda result: Path(result["export_path"]) / "saved_model.pb"),
        Stage("report", ("synth", "synth_test", "real", "real_test", "seg_synth", "dictionary", "restore",
                         "seg_weak", *(s.name for s in reg_stages), "evaluate", "export"),
              {"reports": str(reports_dir), "plan": asdict(plan), "preset": {"seg": seg, "reg": reg},
               "seed": seed, "real_domain": "sensor" if nyu_root is None else "nyu"}, _run_report,
              outside=lambda result: Path(result["summary"])),
    ]


def headline_numbers(summary: dict) -> dict:
    """The numbers a user looks at first, with the bounds of their 95 % intervals, from summary.json
    (None where a stage did not run or has no interval)."""

    def get(table: str, row: str, column: str) -> float | None:
        return (summary.get(table, {}).get(row) or {}).get(column)

    def bounds(name: str, table: str, row: str, column: str) -> dict[str, float | None]:
        interval = get("intervals", table, row) or {}
        return {f"{name}_{end}": (interval.get(column) or {}).get(end) for end in ("low", "high")}

    direct, full = get("table4", "direct", "mean_3d_mm"), get("table4", "full", "mean_3d_mm")
    synthetic, weak = get("table3", "synthetic_only", "per_pixel"), get("table3", "semi_weak", "per_pixel")
    raw, restored = get("table2", "none", "per_pixel"), get("table2", "integrate", "per_pixel")
    return {
        "direct_mean_3d_mm": direct,
        "full_mean_3d_mm": full,
        "full_vs_direct_3d_percent": None if None in (direct, full) else 100.0 * (full - direct) / direct,
        **bounds("full_vs_direct_3d_percent", "table4", "full", "change_3d_vs_direct_percent"),
        "stage2_gain_per_pixel_points": None if None in (synthetic, weak) else weak - synthetic,
        **bounds("stage2_gain_per_pixel_points", "table3", "semi_weak", "per_pixel_vs_synthetic_only"),
        "restoration_gain_per_pixel_points": None if None in (raw, restored) else restored - raw,
        **bounds("restoration_gain_per_pixel_points", "table2", "integrate", "per_pixel_vs_none"),
    }


# --- the stages: each fills its folder `work` from its inputs' folders ----------------------------------------


def _run_synth(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.synth import generate_synth

    manifest = generate_synth(work / DATA, params["frames"], seed=params["seed"], size=params["size"],
                              shard_size=params["shard_size"], progress=progress)
    return {"frames": manifest.count}


def _run_sensor(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.sensor import SensorConfig, generate_sensor

    manifest = generate_sensor(work / DATA, params["frames"], seed=params["seed"], size=params["size"],
                               eval_labels=params["eval_labels"], config=SensorConfig(**params["sensor"]),
                               shard_size=params["shard_size"], progress=progress)
    return {"frames": manifest.count}


def _run_nyu(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.nyu import load_nyu

    manifest = load_nyu(params["root"], params["split"], work / DATA, size=params["size"], limit=params["frames"],
                        shard_size=params["shard_size"], progress=progress)
    return {"frames": manifest.count}


def _run_seg_synth(work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, config) -> dict:
    from keras_hpe.evaluation.segmentation import save_frame_counts
    from keras_hpe.training.seg import accuracy_summary, evaluate_model, load_segmentation_model, train_segmentation

    result = train_segmentation(inputs["synth"] / DATA, work, config, val_dir=inputs["synth_test"] / DATA,
                                epochs=params["seg_epochs"], batch_size=params["batch_size"], seed=params["seed"],
                                progress=progress)
    # Scored again here for the per-frame counts behind stage 1's interval (the metrics JSON keeps totals only).
    scores = evaluate_model(load_segmentation_model(result.model_path), inputs["synth_test"] / DATA)[0]
    save_frame_counts(work / SYNTH_TEST_COUNTS_FILE, {"synth_test": scores.frame_counts})
    return {"model": result.model_path.name, "synth_test": {**accuracy_summary(scores), "hand_iou": scores.hand_iou}}


def _run_dictionary(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.dataset import load_arrays, read_manifest
    from keras_hpe.restoration.index import build_dictionary

    data = inputs["synth"] / DATA
    labels = load_arrays(data, ["labels"])["labels"][:: params["every"]]
    source = {"path": str(data.resolve()), "every": params["every"], "frames_used": int(len(labels)),
              "manifest": _manifest_dict(read_manifest(data))}
    meta = build_dictionary(labels, work / DICTIONARY, patch=params["patch"], n_trees=params["trees"],
                            search_k=params["search_k"], seed=params["seed"], source_manifest=source,
                            progress=progress)
    return {"patches_total": meta.patches_total, "patches_unique": meta.patches_unique, "frames": meta.frames}


def _run_restore(work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, workers: int) -> dict:
    from keras_hpe.restoration.pseudo_labels import restore_dataset

    result = restore_dataset(
        inputs["seg_synth"] / "seg_synth.keras", inputs["dictionary"] / DICTIONARY, inputs["real"] / DATA,
        work / RESTORED, method=params["method"], patch=params["patch"], window=params["window"],
        workers=workers, progress=progress,
    )
    return result.summary


def _run_seg_weak(work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, config) -> dict:
    from keras_hpe.data.dataset import read_manifest
    from keras_hpe.training.seg_weak import train_segmentation_weak

    real_test = inputs["real_test"] / DATA
    labelled = "labels" in read_manifest(real_test).fields
    result = train_segmentation_weak(
        inputs["seg_synth"] / "seg_synth.keras", inputs["synth"] / DATA, inputs["restore"] / RESTORED, work, config,
        epochs=params["epochs"], batch_size=params["batch_size"], val_dir=real_test if labelled else None,
        seed=params["seed"], progress=progress,
    )
    return {"model": result.model_path.name, "real_test": result.metrics.get("val")}


def _run_reg(
    work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, config, seg_model: str | None
) -> dict:
    from keras_hpe.training.reg import train_regression

    seg_path = None if seg_model is None else inputs[seg_model] / f"{seg_model}.keras"
    result = train_regression(inputs["real"] / DATA, work, params["variant"], config, seg_path=seg_path,
                              epochs=params["reg_epochs"], batch_size=params["batch_size"], seed=params["seed"],
                              progress=progress)
    return {"models": [path.name for path in result.model_paths]}


def _run_evaluate(work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, workers: int) -> dict:
    """Tables 2-4 on the real test split, the success curves' errors and the picture figures."""
    from keras_hpe.data.dataset import load_frames, read_manifest
    from keras_hpe.evaluation.restoration import table2_scores, table3_scores
    from keras_hpe.evaluation.segmentation import plot_per_part_accuracy, save_frame_counts
    from keras_hpe.reports.figures import plot_pose_montage, sample_frames
    from keras_hpe.reports.tables import segmentation_percent
    from keras_hpe.training.reg import evaluate_regression, load_pipeline

    real_test = inputs["real_test"] / DATA
    manifest = read_manifest(real_test)
    seg_synth, seg_weak = inputs["seg_synth"] / "seg_synth.keras", inputs["seg_weak"] / "seg_weak.keras"
    index_dir = inputs["dictionary"] / DICTIONARY
    figures_dir = work / FIGURES
    figures_dir.mkdir()
    evaluation: dict = {"table2": None, "table3": None, "table4": {}, "not_run": {}, "frames": manifest.count}
    figures: dict[str, str] = {}
    counts = {}
    if "labels" in manifest.fields:
        table2 = table2_scores(seg_synth, index_dir, real_test, params["table2_methods"], patch=params["patch"],
                               window=params["window"], workers=workers, progress=progress)
        table3 = table3_scores(seg_synth, seg_weak, real_test)
        for name, rows in (("table2", table2), ("table3", table3)):
            evaluation[name] = {row: segmentation_percent(scores, row) for row, scores in rows.items()}
            counts.update({f"{name}/{row}": scores.frame_counts for row, scores in rows.items()})
        figures["fig6"] = plot_per_part_accuracy(
            {"synthetic only": table3["synthetic_only"], "semi/weakly supervised": table3["semi_weak"]},
            figures_dir / "fig6_per_part_accuracy.png").name
        frames = sample_frames(manifest.count, params["fig5_frames"], params["seed"])
        figures["fig5"] = _segmentation_examples(figures_dir / "fig5_segmentation.png", real_test, frames, seg_synth,
                                                 seg_weak, index_dir, params).name
    else:
        evaluation["not_run"] = {"table2": NYU_NO_LABELS, "table3": NYU_NO_LABELS,
                                 "fig5": NYU_NO_LABELS, "fig6": NYU_NO_LABELS}
    errors_mm, pred_full_uvd = {}, None
    for variant in REG_VARIANTS:
        name = f"reg_{variant}"
        pipeline = load_pipeline(inputs[name] / f"{name}.keras")
        errors, pred_uvd = evaluate_regression(pipeline, real_test, progress=progress)
        evaluation["table4"][variant] = errors.to_dict()
        errors_mm[variant] = errors.errors_mm
        pred_full_uvd = pred_uvd if variant == "full" else pred_full_uvd
    np.savez(work / ERRORS_FILE, **errors_mm)
    save_frame_counts(work / COUNTS_FILE, counts)
    frames = sample_frames(manifest.count, params["fig9_frames"], params["seed"])
    arrays = load_frames(real_test, frames, ["depth_mm", "center_uvd", "joints_uvd"])
    figures["fig9"] = plot_pose_montage(
        figures_dir / "fig9_pose_montage.png", arrays["depth_mm"], pred_full_uvd[frames], arrays["center_uvd"],
        gt_uvd=arrays["joints_uvd"], frame_ids=frames, cube_mm=manifest.cube_mm, camera=manifest.camera_model,
    ).name
    evaluation["figures"] = figures
    write_text(work / EVALUATION_FILE, json.dumps(_json_normal(evaluation), indent=2) + "\n")
    return {"figures": figures, "not_run": evaluation["not_run"]}


def _segmentation_examples(
    out_png: Path, data_dir: Path, frames: np.ndarray, seg_synth: Path, seg_weak: Path, index_dir: Path, params: dict
) -> Path:
    """Fig. 5 for `frames`: the synthetic-only prediction, its restoration (eq. 2) and the fine-tuned prediction."""
    from keras_hpe.data.dataset import load_frames
    from keras_hpe.models.segmentation import predict_parts
    from keras_hpe.reports.figures import plot_segmentation_examples
    from keras_hpe.restoration.restore import restore_frames
    from keras_hpe.training.seg import load_segmentation_model

    arrays = load_frames(data_dir, frames, ["depth_mm", "labels", "center_uvd"])
    depth_mm, center_d_mm = arrays["depth_mm"], arrays["center_uvd"][:, 2]
    synthetic_only = predict_parts(load_segmentation_model(seg_synth), depth_mm, center_d_mm)[1]
    fine_tuned = predict_parts(load_segmentation_model(seg_weak), depth_mm, center_d_mm)[1]
    restored = restore_frames(synthetic_only, index_dir, method="integrate", window=params["window"],
                              patch=params["patch"])
    return plot_segmentation_examples(out_png, depth_mm, synthetic_only=synthetic_only, restored=restored,
                                      fine_tuned=fine_tuned, ground_truth=arrays["labels"])


def _run_export(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.export import export_estimator
    from keras_hpe.pipeline import load_estimator

    estimator = load_estimator(inputs["reg_full"] / "reg_full.keras", inputs["seg_weak"] / "seg_weak.keras")
    path = export_estimator(estimator, params["saved_models"])
    return {"export_path": str(path), "version": int(path.name)}


def _run_report(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    """write_report into the reports folder, with the figures copied beside it."""
    from keras_hpe.data.dataset import read_manifest
    from keras_hpe.evaluation.segmentation import load_frame_counts
    from keras_hpe.reports.report import write_report
    from keras_hpe.reports.tables import TABLE4_METHODS
    from keras_hpe.restoration.index import DictionaryMeta

    reports_dir = Path(params["reports"])
    evaluation = json.loads((inputs["evaluate"] / EVALUATION_FILE).read_text())
    figures = {}
    for name, file in evaluation["figures"].items():
        figures[name] = reports_dir / FIGURES / file
        with atomic_path(figures[name]) as tmp:
            shutil.copyfile(inputs["evaluate"] / FIGURES / file, tmp)
    with np.load(inputs["evaluate"] / ERRORS_FILE) as errors_file:
        errors_mm = {variant: errors_file[variant] for variant in evaluation["table4"]}
    curves = {TABLE4_METHODS[variant]: _joint_errors(values, errors_mm[variant])
              for variant, values in evaluation["table4"].items()}
    # Folders of earlier versions have no per-frame counts: their segmentation verdicts are "not checked".
    counts_file, stage1_file = inputs["evaluate"] / COUNTS_FILE, inputs["seg_synth"] / SYNTH_TEST_COUNTS_FILE
    counts = load_frame_counts(counts_file) if counts_file.is_file() else {}
    table_counts = {table: {name.split("/", 1)[1]: value for name, value in counts.items()
                            if name.startswith(f"{table}/")} for table in ("table2", "table3")}
    stages = {name: json.loads((folder / STAGE_FILE).read_text()) for name, folder in inputs.items()}
    manifests = {name: _manifest_dict(read_manifest(inputs[name] / DATA))
                 for name in ("synth", "synth_test", "real", "real_test")}
    manifests["restored real (accepted pseudo labels)"] = _manifest_dict(read_manifest(inputs["restore"] / RESTORED))
    dictionary = DictionaryMeta.from_dict(json.loads((inputs["dictionary"] / DICTIONARY / "meta.json").read_text()))
    config = {
        **{key: params[key] for key in ("plan", "preset", "seed", "real_domain")},
        "not_run": evaluation["not_run"],
        "restoration": stages["restore"]["result"],
        "dictionary": {key: value for key, value in dictionary.to_dict().items() if key != "source_manifest"},
        "export": stages["export"]["result"],
    }
    synth_test = stages["seg_synth"]["result"].get("synth_test")  # fractions, from accuracy_summary
    stage1 = None if synth_test is None else {
        "per_pixel": 100.0 * synth_test["per_pixel_accuracy"], "per_class": 100.0 * synth_test["mean_class_accuracy"],
        "frames": synth_test["frames"]}
    # The report is read on other machines: paths of this one's folders appear as the options naming them.
    folders = {"OUT": work.parent, "SAVED_MODELS": Path(stages["export"]["params"]["saved_models"])}
    manifests, config = _shown_paths(manifests, folders), _shown_paths(config, folders)
    readme = write_report(
        reports_dir,
        stage1=stage1,
        table2=evaluation["table2"],
        table3=evaluation["table3"],
        table4={variant: values for variant, values in evaluation["table4"].items()},
        stage1_counts=load_frame_counts(stage1_file)["synth_test"] if stage1_file.is_file() else None,
        table2_counts=table_counts["table2"],
        table3_counts=table_counts["table3"],
        table4_errors_mm=errors_mm,
        curves=curves,
        seconds={name: stage["seconds"] for name, stage in stages.items()},
        manifests=manifests,
        config=config,
        figures=figures,
    )
    return {"readme": str(readme), "summary": str(reports_dir / "summary.json")}


# --- helpers ---------------------------------------------------------------------------------------------------


def _joint_errors(values: dict, errors_mm: np.ndarray):
    """A `JointErrors` back from its `to_dict()` and its per-frame errors."""
    from keras_hpe.evaluation.joints import JointErrors

    return JointErrors(
        mean_3d_mm=values["mean_3d_mm"], per_joint_mm=values["per_joint_mm"], mean_2d_px=values["mean_2d_px"],
        frames=values["frames"], thresholds_mm=np.asarray(values["thresholds_mm"]),
        curves={mode: np.asarray(curve) for mode, curve in values["curves"].items()}, errors_mm=errors_mm,
    )


def _shown_paths(value, folders: dict[str, Path]):
    """`value` with every path string inside one of `folders` written as "NAME/relative/path"."""
    if isinstance(value, dict):
        return {key: _shown_paths(item, folders) for key, item in value.items()}
    if isinstance(value, list):
        return [_shown_paths(item, folders) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        for name, folder in folders.items():
            folder = os.path.abspath(folder)
            if os.path.commonpath([os.path.abspath(value), folder]) == folder:
                return Path(name, os.path.relpath(value, folder)).as_posix()
    return value


def _manifest_dict(manifest) -> dict:
    return {key: value for key, value in manifest.to_dict().items() if key != "shards"}


def _read_stage(folder: Path) -> dict | None:
    values = _read_json(folder / STAGE_FILE)
    required = ("seconds", "fingerprint", "result")
    return values if isinstance(values, dict) and all(name in values for name in required) else None


def _read_json(path: Path) -> object:
    """The JSON value in `path`, or None if it is missing or unreadable.

    Stage files are never written half (atomic); a damaged or hand-edited one counts as absent,
    so its stage runs again.
    """
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _matches(done: dict, key: dict, stage: Stage) -> bool:
    """The finished stage has this key, and what it wrote outside OUT is still there."""
    if any(done.get(name) != value for name, value in key.items()):
        return False
    return stage.outside is None or stage.outside(done["result"]).exists()


def _json_normal(values: object) -> object:
    """`values` as read back from JSON (tuples -> lists, numpy scalars -> numbers), for comparing keys."""
    return json.loads(json.dumps(values, default=lambda value: value.item() if isinstance(value, np.generic)
                                 else str(value)))
