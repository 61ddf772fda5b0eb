"""What a reproduction costs before it runs: each stage's time, peak memory and disk (`reproduce --plan`).

A stage's seconds and peak memory are sums of terms linear in the quantities
that drive it (`stage_terms`: frames, training steps and frames, dictionary
patches), with coefficients fitted to measurements. The one place those
constants live is `costs.json` beside this module, written by
`benchmarks/scaling_benchmark.py` (its "command" says how), which runs every
stage through `reproduce.run_stage` at three or more sizes on the reference
machine. Everything grows linearly in its driver except the Annoy trees,
whose build grows as n log n in the unique patches (`tree_work`). Memory
adds what a stage holds by design (`stage_bytes.exact_memory_bytes`: label
maps loaded whole, the Annoy index memory-mapped) to a fitted remainder.

Disk is computed from the sizes where the code fixes them (`stage_bytes`): the
shards' bytes per frame (`np.savez` of the fields), the dictionary's arrays per
patch, the models' weights; Annoy's bytes per patch and tree, the models' bytes per
weight and a small remainder per stage (logs, JSON, figures) are fitted. The
data-dependent sizes are predicted from measured constants: hand pixels per
synthetic frame, unique patches as a power law of all patches (Heaps' law),
and the share of restored frames the quality gate accepts.

Other machines: the costs were measured on 2 CPU cores (`REFERENCE_CORES`),
without a GPU. On a `Machine`, the restoration and the evaluation, whose
restorations run in `plan.restore_workers` processes, divide by the workers
its cores allow over the reference's 2; the training stages divide by the
GPUs a batch can use (`--strategy` mirrors a batch over them; a batch of one
frame uses one) times `gpu_speedup`, the speed of one GPU over the 2
reference cores on these steps: it cannot be measured here, and its default
(`DEFAULT_GPU_SPEEDUP`) is an assumption. The other stages run in one process
(rendering, the deterministic one-thread Annoy build) and keep their
measured time. A stage's peak memory is that of a fresh process running it
(the reproduction runs all stages in one process, which may hold more).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from keras_hpe.data.dataset import FIELDS
from keras_hpe.data.nyu import NYU_FIELDS
from keras_hpe.errors import UserError
from keras_hpe.stage_bytes import STAGE_FRAMES, exact_disk_bytes, exact_memory_bytes

if TYPE_CHECKING:
    from keras_hpe.presets import Preset
    from keras_hpe.reproduce import ReproducePlan, Stage

COSTS_FILE = Path(__file__).with_name("costs.json")
FORMAT = "keras_hpe.costs/1"
REFERENCE_CORES = 2  # the measuring machine's; its restorations ran in 2 worker processes
REFERENCE_SIZE = 64  # crop side of the measurements; per-frame terms scale with the pixels
# One GPU over the 2 reference cores on a training step: not measurable here, so an assumption.
DEFAULT_GPU_SPEEDUP = 10.0
# The cost model of each stage where it is not the stage's name: a domain's two sets share their rendering's.
MODELS = {"synth": "render_synth", "synth_test": "render_synth", "real": "render_sensor",
          "real_test": "render_sensor"}
PARALLEL_STAGES = ("restore", "evaluate")
# Terms of each cost model's seconds, peak memory and disk remainder (`stage_terms` defines them).
TIME_TERMS = {
    "render_synth": ("fixed", "frames"),
    "render_sensor": ("fixed", "frames"),
    # Scoring the test frames (stage 1: after every epoch) is left in the fixed part: about 1 % of either stage.
    "seg_synth": ("fixed", "steps", "frames"),
    "dictionary": ("fixed", "loaded_frames", "patches", "unique", "tree_work"),
    "restore": ("fixed", "frames"),
    "seg_weak": ("fixed", "steps", "frames"),
    **{f"reg_{variant}": ("fixed", "frame_epochs", "frames")
       for variant in ("direct", "cascade", "semi", "full", "oracle")},
    "evaluate": ("fixed", "frames"),
    "export": ("fixed",),
    "report": ("fixed",),
}
# Memory beyond the computed part (`exact_memory_bytes`).
MEMORY_TERMS = {
    **{name: ("fixed", "shard_frames") for name in ("render_synth", "render_sensor")},
    "seg_synth": ("fixed", "test_frames"),
    "dictionary": ("fixed", "unique"),
    "restore": ("fixed", "workers"),
    "seg_weak": ("fixed", "test_frames"),
    **{f"reg_{variant}": ("fixed", "buffered_frames") for variant in ("direct", "cascade", "semi", "full", "oracle")},
    "evaluate": ("fixed", "frames"),
    "export": ("fixed",),
    "report": ("fixed",),
}
DISK_TERMS = {name: ("fixed", "frames") if name in ("restore", "evaluate") else ("fixed",) for name in TIME_TERMS}


@dataclass(frozen=True)
class FittedCosts:
    """The contents of costs.json: per cost model, the coefficient of each term; measured constants.

    time: seconds per unit of each term; memory and disk: bytes per unit,
    beyond the computed parts (`exact_memory_bytes`, `exact_disk_bytes`). constants:
    hand_pixels_per_frame (synthetic, 64 x 64), unique_scale and
    unique_exponent (unique patches = scale x patches ** exponent),
    accepted_fraction (restored frames the gate accepts), index_item_bytes
    and index_tree_bytes (Annoy's file per unique patch: item + trees x
    tree), bytes_per_weight (a saved .keras file per weight, by model kind),
    saved_model_bytes_per_weight (the export's).
    """

    time: dict[str, dict[str, float]]
    memory: dict[str, dict[str, float]]
    disk: dict[str, dict[str, float]]
    constants: dict[str, object]
    measured: dict = field(default_factory=dict)
    command: str = ""
    format: str = FORMAT

    @classmethod
    def load(cls, path: str | os.PathLike = COSTS_FILE) -> "FittedCosts":
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UserError(f"cannot read the cost model {path}: {error}; run benchmarks/scaling_benchmark.py") \
                from None
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise UserError(f"{path} is not a {FORMAT} cost model; run benchmarks/scaling_benchmark.py")
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name in values})

    def save(self, path: str | os.PathLike) -> None:
        from keras_hpe.outputs import write_text

        write_text(Path(path), json.dumps(asdict(self), indent=2) + "\n")


@dataclass(frozen=True)
class Machine:
    """Where a run is predicted for: its CPU cores, the GPUs its training uses and one GPU's assumed speed-up."""

    cores: int = REFERENCE_CORES
    gpus: int = 0
    gpu_speedup: float = DEFAULT_GPU_SPEEDUP

    def __post_init__(self) -> None:
        if self.cores < 1 or self.gpus < 0 or not self.gpu_speedup > 0:
            raise UserError(f"a machine has >= 1 core, >= 0 GPUs and a GPU speed-up > 0, got {self}")

    def describe(self) -> str:
        gpus = "no GPU" if not self.gpus else f"{self.gpus} GPU(s) at {self.gpu_speedup:g}x 2 cores (assumed)"
        return f"{self.cores} cores, {gpus}"


@dataclass(frozen=True)
class RunSizes:
    """The quantities that drive a run's costs (`RunSizes.of_plan`; the benchmark gives measured ones).

    patches_total, patches_unique: the dictionary's label patches; accepted_frames: restored
    real frames the gate keeps; weights: trainable and other weights of each model kind
    ("segmentation", "regression" (masked), "direct"); real_fields: the real sets' fields.
    """

    size: int
    shard_size: int
    synth_frames: int
    synth_test_frames: int
    real_frames: int
    real_test_frames: int
    real_fields: tuple[str, ...]
    seg_batch: int
    seg_epochs: int
    seg_weak_epochs: int
    reg_batch: int
    reg_epochs: int
    reg_shuffle_buffer: int
    patch: int
    trees: int
    workers: int
    patches_total: float
    patches_unique: float
    accepted_frames: float
    weights: Mapping[str, int]

    @classmethod
    def of_plan(
        cls, plan: ReproducePlan, preset: Preset, *, patches_total: float, patches_unique: float,
        accepted_frames: float, weights: Mapping[str, int], real_domain: str = "sensor",
    ) -> "RunSizes":
        return cls(
            size=plan.size, shard_size=plan.shard_size, synth_frames=plan.synth_frames,
            synth_test_frames=plan.synth_test_frames, real_frames=plan.real_frames,
            real_test_frames=plan.real_test_frames, real_fields=FIELDS if real_domain == "sensor" else NYU_FIELDS,
            seg_batch=plan.batch_size or preset.seg.batch_size, seg_epochs=plan.seg_epochs or preset.seg.epochs,
            seg_weak_epochs=plan.seg_weak_epochs, reg_batch=plan.batch_size or preset.reg.batch_size,
            reg_epochs=plan.reg_epochs or preset.reg.epochs, reg_shuffle_buffer=preset.reg.shuffle_buffer,
            patch=plan.patch,
            trees=plan.dictionary_trees, workers=plan.restore_workers, patches_total=patches_total,
            patches_unique=patches_unique, accepted_frames=accepted_frames, weights=dict(weights),
        )

    @property
    def pixels(self) -> float:
        """Pixels per crop over the measurements' (64 x 64): per-frame work scales with them."""
        return (self.size / REFERENCE_SIZE) ** 2

    @property
    def seg_steps(self) -> int:
        return math.ceil(self.synth_frames / self.seg_batch) * self.seg_epochs

    @property
    def seg_weak_steps(self) -> int:
        from keras_hpe.training.seg_weak import weak_steps_per_epoch

        return weak_steps_per_epoch(round(self.accepted_frames), self.seg_batch) * self.seg_weak_epochs


@dataclass(frozen=True)
class StageCost:
    """One stage's prediction; seconds and memory are None where its cost model was not measured (NYU)."""

    name: str
    driver: str
    seconds: float | None
    reference_seconds: float | None
    memory_bytes: float | None
    disk_bytes: float
    temporary_bytes: float
    folder: str  # where its disk goes: "out", "saved_models" or "reports"


@dataclass
class RunCost:
    """A whole run's prediction on `machine`; `measured_on` says where the costs were measured."""

    plan: str
    machine: Machine
    stages: list[StageCost]
    measured_on: str = ""

    @property
    def seconds(self) -> float:
        return sum(stage.seconds or 0.0 for stage in self.stages)

    @property
    def memory_bytes(self) -> float:
        return max(stage.memory_bytes or 0.0 for stage in self.stages)

    def disk_bytes(self, folders: Sequence[str] = ("out", "saved_models", "reports")) -> float:
        """Bytes the run leaves in `folders`, plus the largest temporary of a stage writing there."""
        chosen = [stage for stage in self.stages if stage.folder in folders]
        return sum(stage.disk_bytes for stage in chosen) + max((stage.temporary_bytes for stage in chosen), default=0)

    def to_dict(self) -> dict:
        def rounded(stage: StageCost) -> dict:
            return {name: round(value, 1) if isinstance(value, float) else value
                    for name, value in asdict(stage).items()}

        return {
            "plan": self.plan, "machine": asdict(self.machine), "measured_on": self.measured_on,
            "stages": [rounded(stage) for stage in self.stages],
            "total": {"seconds": round(self.seconds, 1), "memory_bytes": round(self.memory_bytes),
                      "disk_bytes": round(self.disk_bytes()),
                      "unmeasured": [stage.name for stage in self.stages if stage.seconds is None]},
        }

    def table(self) -> str:
        """The stages and the totals as aligned text lines."""
        rows = [("stage", "driven by", "time", "peak memory", "disk")]
        for stage in self.stages:
            rows.append((stage.name, stage.driver, format_duration(stage.seconds), format_bytes(stage.memory_bytes),
                         format_bytes(stage.disk_bytes)))
        unmeasured = [stage.name for stage in self.stages if stage.seconds is None]
        rows.append(("total", f"without {', '.join(unmeasured)} (not measured)" if unmeasured else "",
                     format_duration(self.seconds), f"{format_bytes(self.memory_bytes)} max",
                     f"{format_bytes(self.disk_bytes())} peak"))
        widths = [max(len(row[column]) for row in rows) for column in range(5)]
        return "\n".join("  ".join(value.ljust(width) if column < 2 else value.rjust(width)
                                   for column, (value, width) in enumerate(zip(row, widths))).rstrip()
                         for row in rows)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


def format_bytes(count: float | None) -> str:
    if count is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def stage_terms(stage: str, sizes: RunSizes) -> dict[str, float]:
    """The values of the terms (`TIME_TERMS`, `MEMORY_TERMS`, `DISK_TERMS`) of `stage` for a run of `sizes`."""
    px = sizes.pixels
    if stage in STAGE_FRAMES:
        frames = getattr(sizes, STAGE_FRAMES[stage])
        return {"fixed": 1.0, "frames": frames * px, "shard_frames": min(frames, sizes.shard_size) * px}
    if stage == "seg_synth":
        steps = sizes.seg_steps
        return {"fixed": 1.0, "steps": steps, "frames": steps * sizes.seg_batch * px,
                "test_frames": sizes.synth_test_frames * px}
    if stage == "dictionary":
        unique = sizes.patches_unique
        return {"fixed": 1.0, "loaded_frames": sizes.synth_frames * px, "patches": sizes.patches_total,
                "unique": unique, "tree_work": sizes.trees * unique * math.log2(max(unique, 2.0))}
    if stage == "restore":
        return {"fixed": 1.0, "frames": sizes.real_frames * px, "workers": sizes.workers}
    if stage == "seg_weak":
        steps = sizes.seg_weak_steps
        labelled = "labels" in sizes.real_fields  # the fine-tuned model is scored on the labelled test split
        return {"fixed": 1.0, "steps": steps, "frames": steps * sizes.seg_batch * px,
                "test_frames": sizes.real_test_frames * px * labelled}
    if stage.startswith("reg_"):
        return {"fixed": 1.0, "frame_epochs": sizes.real_frames * sizes.reg_epochs * px,
                "frames": sizes.real_frames * px,
                "buffered_frames": min(sizes.real_frames, sizes.reg_shuffle_buffer) * px}
    if stage == "evaluate":
        return {"fixed": 1.0, "frames": sizes.real_test_frames * px}
    if stage in ("export", "report"):
        return {"fixed": 1.0}
    raise UserError(f"no cost model for stage {stage!r}")


def linear(coefficients: Mapping[str, float], terms: Mapping[str, float]) -> float:
    return float(sum(value * terms[name] for name, value in coefficients.items()))


def predicted_sizes(
    plan: ReproducePlan, preset: Preset, fitted: FittedCosts, weights: Mapping[str, int], real_domain: str = "sensor"
) -> RunSizes:
    """The plan's `RunSizes`, with the dictionary's patches and the gate's accepted frames from measured constants."""
    constants = fitted.constants
    frames = math.ceil(plan.synth_frames / plan.dictionary_every)
    total = frames * constants["hand_pixels_per_frame"] * (plan.size / REFERENCE_SIZE) ** 2
    unique = min(total, constants["unique_scale"] * total ** constants["unique_exponent"])
    return RunSizes.of_plan(plan, preset, patches_total=total, patches_unique=unique,
                            accepted_frames=constants["accepted_fraction"] * plan.real_frames, weights=weights,
                            real_domain=real_domain)


def model_weights(preset: Preset, size: int) -> dict[str, int]:
    """Weights of each model kind the plan trains, counted on the networks built for crops of `size`."""
    from keras_hpe.models.regression import build_direct_regression, build_regression
    from keras_hpe.models.segmentation import build_segmentation_model

    reg = replace(preset.reg.model, input_size=size)
    return {"segmentation": build_segmentation_model(replace(preset.seg.model, size=size)).count_params(),
            "regression": build_regression(reg).count_params(), "direct": build_direct_regression(reg).count_params()}


def predict_stage(stage: str, sizes: RunSizes, fitted: FittedCosts, machine: Machine) -> StageCost:
    terms = stage_terms(stage, sizes)
    model = MODELS.get(stage, stage)
    # Loading NYU was not measured; its data set's bytes are those of a simulated one without labels.
    measured = not (stage in ("real", "real_test") and "labels" not in sizes.real_fields)
    reference = linear(fitted.time[model], terms) if measured else None
    memory = exact_memory_bytes(stage, sizes, fitted) + linear(fitted.memory[model], terms) if measured else None
    kept, temporary = exact_disk_bytes(stage, sizes, fitted)
    disk = kept + linear(fitted.disk[model], terms)
    folder = {"export": "saved_models", "report": "reports"}.get(stage, "out")
    return StageCost(stage, describe_driver(stage, sizes), None if reference is None else
                     reference / speedup(stage, sizes, machine), reference, memory, disk, temporary, folder)


def speedup(stage: str, sizes: RunSizes, machine: Machine) -> float:
    """How much faster `stage` runs on `machine` than on the reference machine (the module's assumptions)."""
    if stage in PARALLEL_STAGES:
        return min(sizes.workers, machine.cores) / REFERENCE_CORES
    batch = {"seg_synth": sizes.seg_batch, "seg_weak": sizes.seg_batch}.get(
        stage, sizes.reg_batch if stage.startswith("reg_") else 0)
    gpus = min(machine.gpus, batch)
    return gpus * machine.gpu_speedup if gpus else 1.0


def predict_run(
    plan: ReproducePlan, stages: Sequence[str], preset: Preset, fitted: FittedCosts, machine: Machine,
    weights: Mapping[str, int], real_domain: str = "sensor",
) -> RunCost:
    sizes = predicted_sizes(plan, preset, fitted, weights, real_domain)
    machine_info = fitted.measured.get("machine", {})
    measured_on = (f"{machine_info.get('processor', '?')}, {machine_info.get('cores', '?')} cores, "
                   f"{fitted.measured.get('date', '?')}")
    return RunCost(plan.name, machine, [predict_stage(stage, sizes, fitted, machine) for stage in stages], measured_on)


def plan_run(
    plan: ReproducePlan,
    stages: Sequence[Stage],
    out_dir: str | os.PathLike,
    *,
    reports_dir: str | os.PathLike = "reports",
    saved_models_dir: str | os.PathLike = "saved_models/keras_hpe",
    strategy: str = "auto",
    gpu_speedup: float = DEFAULT_GPU_SPEEDUP,
    fitted: FittedCosts | None = None,
) -> tuple[RunCost, float, float]:
    """`stages` of `plan` (`reproduce.build_stages`) predicted on this machine: (costs, bytes needed on `out_dir`'s
    filesystem, bytes free there); UserError if the run does not fit on the disk. Writes nothing."""
    import tensorflow as tf

    from keras_hpe.presets import get_preset

    real_domain = next(stage.params["real_domain"] for stage in stages if stage.name == "report")
    gpus = len(tf.config.list_physical_devices("GPU"))
    # --strategy default trains on one device; auto and mirrored use every GPU.
    machine = Machine(os.cpu_count() or 1, min(gpus, 1) if strategy == "default" else gpus, gpu_speedup)
    preset = get_preset(plan.preset)
    run = predict_run(plan, [stage.name for stage in stages], preset, fitted or FittedCosts.load(), machine,
                      model_weights(preset, plan.size), real_domain)
    needed, free = check_free_space(run, Path(out_dir), {"saved_models": Path(saved_models_dir),
                                                         "reports": Path(reports_dir)})
    return run, needed, free


def describe_driver(stage: str, sizes: RunSizes) -> str:
    if stage in STAGE_FRAMES:
        return f"{getattr(sizes, STAGE_FRAMES[stage]):,} frames"
    if stage == "seg_synth":
        return f"{sizes.seg_steps:,} steps of {sizes.seg_batch} ({sizes.seg_epochs} epochs)"
    if stage == "dictionary":
        return (f"~{sizes.patches_unique / 1e6:.2f}M unique of ~{sizes.patches_total / 1e6:.2f}M patches, "
                f"{sizes.trees} trees")
    if stage == "restore":
        return f"{sizes.real_frames:,} real frames, {sizes.workers} workers"
    if stage == "seg_weak":
        return f"{sizes.seg_weak_steps:,} steps of {sizes.seg_batch} (~{sizes.accepted_frames:,.0f} accepted)"
    if stage.startswith("reg_"):
        return f"{sizes.real_frames:,} frames x {sizes.reg_epochs} epochs"
    if stage == "evaluate":
        return f"{sizes.real_test_frames:,} test frames"
    return ""


def check_free_space(run: RunCost, out_dir: Path, outside: Mapping[str, Path]) -> tuple[float, float]:
    """(bytes the run needs on `out_dir`'s filesystem, bytes free there); UserError if they do not fit.

    `outside` maps "saved_models" and "reports" to their folders: their bytes count where they share
    the filesystem. Nothing is created: a missing folder is looked up at its nearest existing parent.
    """
    device = existing_parent(out_dir).stat().st_dev
    folders = ["out", *(name for name, path in outside.items() if existing_parent(path).stat().st_dev == device)]
    needed, free = run.disk_bytes(folders), shutil.disk_usage(existing_parent(out_dir)).free
    if needed > free:
        raise UserError(f"the {run.plan} plan needs {format_bytes(needed)} on the filesystem of {out_dir}, which "
                        f"has {format_bytes(free)} free (predicted by keras_hpe/costs.py)")
    return needed, free


def existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path
