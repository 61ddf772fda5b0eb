"""`keras-hpe reproduce`: the whole paper, from rendering the data to the report and the export.

The run is a list of `Stage`s, each a small function that turns the artefacts
of earlier stages into its own folder `OUT/<stage>/`:

    synth, synth_test, real, real_test      data sets (real = the simulated "sensor" domain, or NYU)
    seg_synth                               stage 1: segmentation trained on synthetic frames
    dictionary                              Annoy index of label patches of every 3rd synthetic frame
    restore                                 stage-1 predictions of the real frames, restored and gated
    seg_weak                                stage 2: segmentation fine-tuned on synthetic + restored real
    reg_direct, reg_cascade, reg_semi, reg_full   stage 3: the regression variants (a)-(d)
    reg_oracle                              (e): regression from the true segmentation, a diagnostic (simulated data)
    evaluate                                Tables 2-4 numbers, success curves, Fig. 5, 6, 7 and 9
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
(`training.fit.fit_resumable`). The stages themselves are in `stages.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

import keras_hpe
from keras_hpe.outputs import folder_lock, write_text
from keras_hpe.errors import UserError
from keras_hpe.faults import crash_point
from keras_hpe.restoration.index import DEFAULT_SEARCH_K, DEFAULT_TREES, FORMAT as DICTIONARY_FORMAT
from keras_hpe.stages import (
    STAGE_FILE,
    json_normal,
    run_dictionary,
    run_evaluate,
    run_export,
    run_nyu,
    run_reg,
    run_report,
    run_restore,
    run_seg_synth,
    run_seg_weak,
    run_sensor,
    run_synth,
)

if TYPE_CHECKING:
    from keras_hpe.data.sensor import SensorConfig

PENDING_FILE = "stage.pending.json"  # not "pending.json": the data set writer uses that name
PARTIAL_SUFFIX = ".partial"
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
        fig5_frames, fig7_frames, fig9_frames: frames shown in Fig. 5, Fig. 7 and Fig. 9.
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
    fig7_frames: int = 4
    fig9_frames: int = 24

    def __post_init__(self) -> None:
        counts = {name: getattr(self, name) for name in
                  ("size", "synth_frames", "synth_test_frames", "real_frames", "real_test_frames", "shard_size",
                   "dictionary_every", "dictionary_trees", "search_k", "restore_workers", "seg_weak_epochs",
                   "fig5_frames", "fig7_frames", "fig9_frames")}
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
        batch_size=16, fig5_frames=3, fig7_frames=2, fig9_frames=6,
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
    compare_dir: str | os.PathLike | None = None,
    strategy: str = "auto",
    precision: str | None = None,
) -> ReproduceResult:
    """Run every stage of `plan` into `out_dir`, skipping those already done; write the report and the export.

    `nyu_root` replaces the simulated real domain by the NYU data set at that
    folder (train/ and test/); `sensor_config` (a `data.sensor.SensorConfig`)
    replaces the default sensor model of the simulated one. `compare_dir` (with
    `nyu_root`) holds other methods' published predictions of the NYU test frames,
    one text file per method (`evaluation.joints.read_published_predictions`):
    rows of Table 4 and curves of Fig. 8. `strategy` and `precision` place the
    training stages (`training.devices`); `precision` (None: the preset's)
    is a parameter of those stages, the strategy is not: a run resumes on
    other devices.
    """
    from tqdm.auto import tqdm

    stages = build_stages(plan, reports_dir=reports_dir, saved_models_dir=saved_models_dir, nyu_root=nyu_root,
                          sensor_config=sensor_config, seed=seed, compare_dir=compare_dir, strategy=strategy,
                          precision=precision)
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
        "params": json_normal(stage.params),
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
                    "result": json_normal(result)}
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
    compare_dir: str | os.PathLike | None = None,
    strategy: str = "auto",
    precision: str | None = None,
) -> list[Stage]:
    """The stages of a run, in order, with their parameters; checks the user's inputs first."""
    from keras_hpe.data.sensor import SensorConfig
    from keras_hpe.presets import get_preset
    from keras_hpe.training.devices import make_strategy

    preset = get_preset(plan.preset)
    if precision is not None:
        preset = replace(preset, seg=replace(preset.seg, precision=precision),
                         reg=replace(preset.reg, precision=precision))
    # One strategy for every training stage; like the restoration's workers, not a parameter of the stages.
    strategy = make_strategy(strategy)
    if nyu_root is not None:
        nyu_root = Path(nyu_root)
        if sensor_config is not None:
            raise UserError("--sensor-config models the simulated real domain; it cannot be used with --nyu-root")
        for split in ("train", "test"):
            if not (nyu_root / split).is_dir():
                raise UserError(f"NYU folder {nyu_root / split} does not exist (expected ROOT/train and ROOT/test)")
    published = _published_predictions(plan, nyu_root, compare_dir)
    sensor = sensor_config or SensorConfig()
    seg = asdict(preset.seg)
    reg_config = preset.reg
    reg = reg_config.to_dict()
    size = {"size": plan.size, "shard_size": plan.shard_size}

    def synth(name: str, frames: int) -> Stage:
        return Stage(name, (), {**size, "frames": frames, "seed": derived_seed(seed, name)}, run_synth)

    if nyu_root is None:
        real = [
            # The simulator labels the training split too, for the oracle (e) alone: no stage of the method
            # reads them (tests/test_reproduce.py checks), and rendering them draws no random numbers.
            Stage("real", (), {**size, "frames": plan.real_frames, "seed": derived_seed(seed, "real"),
                               "eval_labels": True, "sensor": sensor.to_dict()}, run_sensor),
            Stage("real_test", (), {**size, "frames": plan.real_test_frames, "seed": derived_seed(seed, "real_test"),
                                    "eval_labels": True, "sensor": sensor.to_dict()}, run_sensor),
        ]
    else:
        root = str(nyu_root.resolve())
        real = [
            Stage("real", (), {**size, "root": root, "split": "train", "frames": plan.real_frames}, run_nyu),
            Stage("real_test", (), {**size, "root": root, "split": "test", "frames": plan.real_test_frames}, run_nyu),
        ]
    reg_stages = [
        Stage(f"reg_{variant}", ("real",) + ((seg_model,) if seg_model else ()),
              {"variant": variant, "config": reg, "reg_epochs": plan.reg_epochs, "batch_size": plan.batch_size,
               "seed": derived_seed(seed, f"reg_{variant}")},
              partial(run_reg, config=reg_config, seg_model=seg_model, strategy=strategy))
        for variant, seg_model in (("direct", None), ("cascade", None), ("semi", "seg_synth"), ("full", "seg_weak"),
                                   *((("oracle", None),) if nyu_root is None else ()))
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
              partial(run_seg_synth, config=preset.seg, strategy=strategy)),
        Stage("dictionary", ("synth",),
              {"every": plan.dictionary_every, "patch": plan.patch, "trees": plan.dictionary_trees,
               "search_k": plan.search_k, "seed": derived_seed(seed, "dictionary"),
               "format": DICTIONARY_FORMAT}, run_dictionary),
        Stage("restore", ("seg_synth", "dictionary", "real"),
              {"method": plan.restore_method, "patch": plan.patch, "window": plan.window},
              partial(run_restore, workers=plan.restore_workers)),
        Stage("seg_weak", ("seg_synth", "synth", "restore", "real_test"),
              {"config": seg, "epochs": plan.seg_weak_epochs, "batch_size": plan.batch_size,
               "seed": derived_seed(seed, "seg_weak")}, partial(run_seg_weak, config=preset.seg, strategy=strategy)),
        *reg_stages,
        Stage("evaluate", ("seg_synth", "seg_weak", "dictionary", "real_test", *(s.name for s in reg_stages), "real",
                           "restore"),
              {"table2_methods": list(plan.table2_methods), "patch": plan.patch, "window": plan.window,
               "fig5_frames": plan.fig5_frames, "fig7_frames": plan.fig7_frames, "fig9_frames": plan.fig9_frames,
               "seed": derived_seed(seed, "evaluate"),
               "published": {name: hashlib.sha256(uvd.tobytes()).hexdigest() for name, uvd in published.items()}},
              partial(run_evaluate, workers=plan.restore_workers, published=published)),
        # The export comes before the report, so that the report can say where it is and how long it took.
        Stage("export", ("seg_weak", "reg_full"), {"saved_models": str(saved_models_dir)}, run_export,
              outside=lambda result: Path(result["export_path"]) / "saved_model.pb"),
        Stage("report", ("synth", "synth_test", "real", "real_test", "seg_synth", "dictionary", "restore",
                         "seg_weak", *(s.name for s in reg_stages), "evaluate", "export"),
              {"reports": str(reports_dir), "plan": asdict(plan), "preset": {"seg": seg, "reg": reg},
               "seed": seed, "real_domain": "sensor" if nyu_root is None else "nyu"}, run_report,
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


# --- helpers ---------------------------------------------------------------------------------------------------


def _published_predictions(
    plan: ReproducePlan, nyu_root: Path | None, compare_dir: str | os.PathLike | None
) -> dict[str, np.ndarray]:
    """--compare's predictions by method, checked against the NYU test frames the plan evaluates (none without it)."""
    from keras_hpe.data.nyu import read_joints
    from keras_hpe.evaluation.joints import read_published_predictions

    if compare_dir is None:
        return {}
    if nyu_root is None:
        raise UserError("--compare needs --nyu-root: published predictions are of the NYU test frames")
    return read_published_predictions(compare_dir, min(plan.real_test_frames, len(read_joints(nyu_root / "test")[0])))


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
