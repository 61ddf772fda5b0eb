"""Stage 1's training speed on CPU: frames per second of segmentation training, per setting.

Renders a small synthetic set once, then trains the segmentation network in a
fresh process per candidate (thread counts and the precision policy must be
set before TensorFlow starts) and times `fit` between the end of a warm-up
and the last step. The candidates vary one thing each against `fp32` (the
quick preset: float32, batch 8, TensorFlow's default threads, no XLA):
precision (`mixed_bfloat16`), XLA (`jit_compile=True`), intra-/inter-op
threads, batch size, and the architecture (`undilated`: the paper's layers
without dilation or spaced pooling windows, i.e. what the dense shifted
pooling costs). Two more runs measure the input pipeline: `data_only`
iterates the tf.data pipeline without training, and `cached` trains on one
batch held in memory, so fp32 / cached is the fraction of the training speed
the pipeline leaves. With --repeats, the candidates run in interleaved
rounds and each reports its median (this machine's speed drifts by tens of
percent within minutes). The last line printed is a JSON summary.

    python benchmarks/seg_train_benchmark.py [--steps 200] [--repeats 3] [--only fp32 bf16 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name -> (description, settings); settings not given take the fp32 baseline's.
CANDIDATES = {
    "fp32": ("float32, batch 8, default threads (the quick preset)", {}),
    "bf16": ("mixed_bfloat16 (training.fit.training_copy)", {"precision": "mixed_bfloat16"}),
    "xla": ("jit_compile=True (XLA on CPU)", {"xla": True}),
    "intra2_inter1": ("2 intra-op threads, 1 inter-op thread", {"intra": 2, "inter": 1}),
    "intra1_inter2": ("1 intra-op thread, 2 inter-op threads", {"intra": 1, "inter": 2}),
    "batch16": ("batch 16", {"batch": 16}),
    "batch32": ("batch 32", {"batch": 32}),
    "undilated": ("no dilation, adjacent pooling windows (what shifted pooling costs)", {"arch": "undilated"}),
    "cached": ("one batch held in memory: no input pipeline", {"cached": True}),
    "data_only": ("the tf.data pipeline alone, no training", {"data_only": True}),
}
FRAMES = 2048
WARMUP_STEPS = 20


def run_one(settings: dict, data: Path, steps: int) -> dict:
    """Train (or only read data) under `settings` in this process; return frames/s."""
    import tensorflow as tf

    if settings.get("intra"):
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra"])
    if settings.get("inter"):
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter"])
    import keras

    from keras_hpe.models.segmentation import UNDILATED_SEGMENTATION, SegmentationConfig, build_segmentation_model
    from keras_hpe.presets import get_preset
    from keras_hpe.training.devices import Placement
    from keras_hpe.training.fit import make_optimizer, training_copy
    from keras_hpe.training.inputs import seg_dataset
    from keras_hpe.training.seg import compile_segmentation

    batch = settings.get("batch", 8)
    dataset = seg_dataset(data, batch, size=64, shuffle=True).repeat()
    total = WARMUP_STEPS + steps
    if settings.get("data_only"):
        iterator = iter(dataset)
        for _ in range(WARMUP_STEPS):
            next(iterator)
        started = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        return {"frames_per_s": round(steps * batch / (time.perf_counter() - started), 1)}
    if settings.get("cached"):
        dataset = dataset.take(1).cache().repeat()
    arch = UNDILATED_SEGMENTATION if settings.get("arch") == "undilated" else SegmentationConfig()
    placement = Placement(tf.distribute.get_strategy(), settings.get("precision", "float32"))
    model = training_copy(build_segmentation_model(arch), placement)
    compile_segmentation(model, make_optimizer(get_preset("quick").seg, total))
    model.jit_compile = bool(settings.get("xla"))
    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            if step in (WARMUP_STEPS - 1, total - 1):
                marks[step] = time.perf_counter()

    model.fit(dataset, steps_per_epoch=total, epochs=1, verbose=0, callbacks=[Clock()])
    seconds = marks[total - 1] - marks[WARMUP_STEPS - 1]
    return {"frames_per_s": round(steps * batch / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per candidate (default: 200)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="interleaved rounds over the candidates; each reports its median (default: 1)")
    parser.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), default=sorted(CANDIDATES),
                        help="candidates to run (default: all)")
    parser.add_argument("--one", choices=sorted(CANDIDATES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(CANDIDATES[args.one][1], args.data, args.steps)))
        return

    from keras_hpe.data.synth import generate_synth

    runs = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "synth"
        generate_synth(data, FRAMES, seed=0, progress=False)
        for round_ in range(1, args.repeats + 1):
            for name in args.only:
                child = subprocess.run(
                    [sys.executable, __file__, "--one", name, "--data", str(data), "--steps", str(args.steps)],
                    check=True, capture_output=True, text=True,
                )
                runs[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
                print(f"round {round_}: {name:14s} {runs[name][-1]['frames_per_s']:8.1f} frames/s   "
                      f"{CANDIDATES[name][0]}", flush=True)
    results = {}
    for name, measured in runs.items():
        rates = sorted(run["frames_per_s"] for run in measured)
        results[name] = {"frames_per_s": rates[len(rates) // 2], "all_frames_per_s": rates}
    baseline = results.get("fp32", {}).get("frames_per_s")
    if baseline:
        for name, result in results.items():
            result["vs_fp32"] = round(result["frames_per_s"] / baseline, 3)
    for name, result in results.items():
        print(f"median {name:14s} {result['frames_per_s']:8.1f} frames/s  x{result.get('vs_fp32', 1):.2f}")
    print(json.dumps({"benchmark": "segmentation_training_speed", "steps": args.steps, "repeats": args.repeats,
                      "cpu_threads": os.cpu_count(), "candidates": results}))


if __name__ == "__main__":
    main()
