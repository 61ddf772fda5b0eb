"""End-to-end inference speed: crop + segmentation + regression per hand, at batch 1 and batched.

Times the estimator graph (`HandPoseEstimator`, which `keras-hpe predict` runs)
in one runtime, --format: keras (the Keras models in TensorFlow, in process),
saved_model (the TF Serving export, loaded with `tf.saved_model.load`),
litert, litert-fp16, litert-int8 (`ai_edge_litert`) or onnx (`onnxruntime`);
the exports are made to a temporary folder by `keras_hpe.export` first. Each
call is the NumPy crop (`crop.crop_depth`) plus one call of the runtime.
Untrained models of the default configs unless --seg/--reg are given (speed
does not depend on the weights; int8 calibration needs --calibration).

With --format keras, each path of `PATHS` is timed, the paths interleaved
round by round (the cores are shared: medians, with the range over rounds):
the float32 reference (the trained networks as they are, in a graph with
variables), then each optimisation added to the one before (weights frozen to
constants, inference copies of the networks), then bfloat16 convolutions.
With --data, each path's mean 3D joint error on that data set and its joints'
differences from the reference. For another format, the reference is timed
too, for the speed-up. --profile times each step of each path's graph alone
(input normalisation, segmentation, part labels, regression). Prints
human-readable lines, then a last line of JSON.
Targets: <= 5 ms per hand at batch 1, >= 600 hands/s batched, at 64 x 64, with the reference's
mean 3D error within 0.1 mm (issue 13); litert-int8 >= 2x the Keras throughput, its mean 3D error
within 1 mm of float32.

    python benchmarks/inference_benchmark.py --reg REG --data REAL_TEST --seconds 5
    python benchmarks/inference_benchmark.py --format litert-int8 --reg REG --calibration REAL --data REAL_TEST
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from keras_hpe.data.crop import crop_depth
from keras_hpe.data.nyu import read_depth_png, write_nyu_like
from keras_hpe.export import FORMATS as EXPORT_FORMATS
from keras_hpe.pipeline import REFERENCE, InferenceOptions

# Each path adds one optimisation to the one before.
PATHS = {
    "reference": REFERENCE,
    "frozen": InferenceOptions(inference_copies=False),
    "float32": InferenceOptions(),
    "bfloat16": InferenceOptions(precision="bfloat16"),
}
FORMATS = ("keras", *EXPORT_FORMATS)
Runner = Callable[[np.ndarray, np.ndarray], dict]


def make_estimator(size: int, variant: str, seg: Path | None, reg: Path | None, options: InferenceOptions):
    """The estimator to time: loaded models, or untrained ones of the default configs at `size`."""
    import keras

    from keras_hpe.models.regression import RegressionConfig, build_direct_regression, build_regression
    from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
    from keras_hpe.pipeline import HandPoseEstimator, load_estimator

    if reg is not None:
        return load_estimator(reg, seg, options=options)
    keras.utils.set_random_seed(0)
    if variant == "direct":
        return HandPoseEstimator(build_direct_regression(RegressionConfig(input_size=size)), options=options)
    return HandPoseEstimator(
        build_regression(RegressionConfig(input_size=size), variant=variant),
        build_segmentation_model(SegmentationConfig(size=size)),
        options=options,
    )


def time_interleaved(calls: dict[str, Callable[[], object]], seconds: float, rounds: int = 5) -> dict[str, tuple]:
    """Seconds per call of each function: (median, lowest, highest) over `rounds` interleaved rounds.

    Each round calls every function for about `seconds / rounds` (at least twice), after one warm-up
    call; a round's figure is its median call. Interleaved, a burst of load on the shared cores
    slows every function's round alike rather than one function's whole measurement.
    """
    for fn in calls.values():
        fn()
    per_round = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            durations, start = [], time.perf_counter()
            while len(durations) < 2 or time.perf_counter() - start < seconds / rounds:
                begin = time.perf_counter()
                fn()
                durations.append(time.perf_counter() - begin)
            per_round[name].append(float(np.median(durations)))
    return {name: (float(np.median(v)), min(v), max(v)) for name, v in per_round.items()}


def make_runner(fmt: str, estimator, folder: Path, calibration: Path | None, threads: int) -> Runner:
    """`run(crops (B, S, S), centres (B, 3)) -> {output name: NumPy array}` in the runtime of `fmt`."""
    if fmt == "keras":
        return lambda crops, centers: {k: v.numpy() for k, v in estimator(crops, centers).items()}
    from keras_hpe.export import FILES, export_estimator

    path = export_estimator(estimator, folder, formats=[fmt], calibration=calibration)
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda crops, centers: {
            k: v.numpy() for k, v in serve(depth_mm=tf.constant(crops), center_uvd=tf.constant(centers)).items()
        }
    if fmt == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = False  # a profile would land in the working folder
        session = onnxruntime.InferenceSession(str(path / FILES[fmt]), options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return lambda crops, centers: dict(zip(names, session.run(names, {"depth_mm": crops, "center_uvd": centers})))
    from ai_edge_litert.interpreter import Interpreter

    serve = Interpreter(model_path=str(path / FILES[fmt]), num_threads=threads).get_signature_runner()
    return lambda crops, centers: serve(depth_mm=crops, center_uvd=centers)


def measure(runs: dict[str, Runner], size: int, frames: np.ndarray, centers: np.ndarray, batch: int,
            seconds: float) -> dict[str, dict]:
    """Per path: ms per hand at batch 1 and hands/s at `batch`, each with the NumPy crop, and the graph alone."""
    crops = np.stack([crop_depth(f, c, size) for f, c in zip(frames, centers)])
    index = np.arange(batch) % len(frames)
    centers32 = centers.astype(np.float32)
    batch_crops = crops[index]

    def one_hand(run: Runner) -> Callable[[], object]:
        return lambda: run(crop_depth(frames[0], centers[0], size)[None], centers32[:1])

    def batched(run: Runner) -> Callable[[], object]:
        return lambda: run(np.stack([crop_depth(frames[i], centers[i], size) for i in index]), centers32[index])

    timings = {
        "batch1": time_interleaved({name: one_hand(run) for name, run in runs.items()}, seconds),
        "batched": time_interleaved({name: batched(run) for name, run in runs.items()}, seconds),
        "graph1": time_interleaved({name: (lambda r=run: r(crops[:1], centers32[:1])) for name, run in runs.items()},
                                   seconds),
        "graph_batched": time_interleaved(
            {name: (lambda r=run: r(batch_crops, centers32[index])) for name, run in runs.items()}, seconds),
    }
    crop_s = time_interleaved({"crop": lambda: crop_depth(frames[0], centers[0], size)}, min(seconds, 1.0))["crop"]
    results = {}
    for name in runs:
        (batch1_s, batch1_lo, batch1_hi), (batched_s, batched_lo, batched_hi) = (
            timings["batch1"][name], timings["batched"][name])
        results[name] = {
            "ms_per_hand_batch1": round(1e3 * batch1_s, 2),
            "ms_per_hand_batch1_range": [round(1e3 * batch1_lo, 2), round(1e3 * batch1_hi, 2)],
            "hands_per_s_batched": round(batch / batched_s, 1),
            "hands_per_s_batched_range": [round(batch / batched_hi, 1), round(batch / batched_lo, 1)],
            "ms_graph_batch1": round(1e3 * timings["graph1"][name][0], 2),
            f"ms_graph_batch{batch}": round(1e3 * timings["graph_batched"][name][0], 2),
        }
    results["crop"] = {"ms_per_hand": round(1e3 * crop_s[0], 3)}
    return results


def accuracy(run: Runner, reference_run: Runner, data: Path, batch: int) -> dict:
    """Mean 3D joint error (mm) on the data set `data` with `run` and the reference, and their differences."""
    from keras_hpe.data.dataset import load_arrays

    arrays = load_arrays(data, ["depth_mm", "center_uvd", "joints_xyz"])
    centers = arrays["center_uvd"].astype(np.float32)
    chunks = [slice(i, i + batch) for i in range(0, len(centers), batch)]
    outputs = [run(arrays["depth_mm"][c], centers[c]) for c in chunks]
    expected = [reference_run(arrays["depth_mm"][c], centers[c]) for c in chunks]
    joints = np.concatenate([o["joints_xyz"] for o in outputs])
    reference_joints = np.concatenate([o["joints_xyz"] for o in expected])
    difference = np.linalg.norm(joints - reference_joints, axis=-1)
    result = {
        "frames": len(joints),
        "mean_error_mm": round(float(np.linalg.norm(joints - arrays["joints_xyz"], axis=-1).mean()), 3),
        "reference_mean_error_mm": round(
            float(np.linalg.norm(reference_joints - arrays["joints_xyz"], axis=-1).mean()), 3),
        "mean_joint_difference_mm": round(float(difference.mean()), 4),
        "max_joint_difference_mm": round(float(difference.max()), 4),
    }
    if "parts" in outputs[0]:
        parts = np.concatenate([o["parts"] for o in outputs])
        result["parts_equal"] = round(float(np.mean(parts == np.concatenate([o["parts"] for o in expected]))), 5)
    return result


def profile(estimators: dict, crops: np.ndarray, centers: np.ndarray, batch: int, seconds: float) -> dict:
    """Per path, ms per call of each step of its graph alone (frozen as the path's graph is), at batch 1 and batched.

    Steps: the input normalisation (both networks' inputs), the segmentation network, the part labels
    (argmax, one-hot), the regression network, and the whole graph. Each step alone pays a call's
    overhead (about 0.2 ms), so at batch 1 the steps add up to more than the whole.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from keras_hpe.data.crop import normalize_depth
    from keras_hpe.models.regression import part_channels
    from keras_hpe.models.segmentation import segmentation_input

    def step(fn, frozen: bool, *specs) -> Callable[..., list]:
        """`fn` traced for `specs`, frozen if the path freezes; it returns its outputs as a flat list."""
        traced = tf.function(fn).get_concrete_function(*specs)
        graph = convert_variables_to_constants_v2(traced) if frozen else traced
        return lambda *args: tf.nest.flatten(graph(*args))

    def labels(scores, depth_mm):
        return part_channels(tf.where(depth_mm > 0, tf.argmax(scores, -1, output_type=tf.int32), 0))

    result = {}
    for n in (1, batch):
        index = np.arange(n) % len(crops)
        depth_mm, center_uvd = tf.constant(crops[index]), tf.constant(centers[index].astype(np.float32))
        calls = {}
        for name, estimator in estimators.items():
            frozen = estimator.options.frozen
            image, centre = tf.TensorSpec((None, estimator.size, estimator.size)), tf.TensorSpec((None, 3))
            inputs = step(lambda d, c: (normalize_depth(d[..., None], c[:, 2]), segmentation_input(d, c[:, 2])),
                          frozen, image, centre)
            depth, seg_input = inputs(depth_mm, center_uvd)
            calls[f"{name} inputs"] = lambda f=inputs: f(depth_mm, center_uvd)[0].numpy()
            regression_inputs = [depth]
            if estimator.segmentation is not None:
                segmentation = step(lambda x, m=estimator.segmentation: m(x, training=False), frozen,
                                    tf.TensorSpec(seg_input.shape))
                (scores,) = segmentation(seg_input)
                label_step = step(labels, frozen, tf.TensorSpec(scores.shape), image)
                regression_inputs += label_step(scores, depth_mm)
                calls[f"{name} segmentation"] = lambda f=segmentation: f(seg_input)[0].numpy()
                calls[f"{name} labels"] = lambda f=label_step, s=scores: f(s, depth_mm)[0].numpy()
            regression = step(lambda *x, m=estimator.regression: m(list(x), training=False), frozen,
                              *[tf.TensorSpec(t.shape) for t in regression_inputs])
            calls[f"{name} regression"] = lambda f=regression: f(*regression_inputs)[0].numpy()
            calls[f"{name} whole"] = lambda e=estimator: e(depth_mm, center_uvd)["joints_xyz"].numpy()
        timings = time_interleaved(calls, seconds)
        for key, (seconds_per_call, _, _) in timings.items():
            name, what = key.split(" ", 1)
            result.setdefault(name, {})[f"ms_{what}_batch{n}"] = round(1e3 * seconds_per_call, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=FORMATS, default="keras",
                        help="runtime to time: keras (in process, every path of the estimator), saved_model "
                        "(TensorFlow), litert, litert-fp16, litert-int8 (ai_edge_litert), onnx (onnxruntime) "
                        "(default: keras)")
    parser.add_argument("--paths", nargs="+", choices=tuple(PATHS), default=list(PATHS),
                        help=f"estimator paths to time with --format keras (default: all: {', '.join(PATHS)})")
    parser.add_argument("--size", type=int, default=64, help="crop size S for untrained models (default: 64)")
    parser.add_argument("--variant", choices=("separate", "shared", "direct"), default="separate",
                        help="regression variant of the untrained models (default: separate, the paper's)")
    parser.add_argument("--seg", type=Path, default=None,
                        help="trained segmentation model (.keras) (default: untrained, or the one --reg's JSON names)")
    parser.add_argument("--reg", type=Path, default=None, help="trained regression model (.keras) (default: untrained)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="data set of real training crops that calibrates litert-int8 (default: none; "
                        "required for litert-int8)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data set with joints: also score the 3D error of each path and format (default: none)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of each runtime: TensorFlow's intra-op pool, LiteRT, ONNX Runtime "
                        "(default: TensorFlow's own choice, the CPU count for the others)")
    parser.add_argument("--batch", type=int, default=64, help="hands per call when batched (default: 64)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="time per measurement of each path, spread over 5 interleaved rounds (default: 5 s)")
    parser.add_argument("--profile", action="store_true",
                        help="also time each step of each path's graph alone; keras only")
    parser.add_argument("--frames", type=Path, default=Path("/tmp/keras_hpe_inference_benchmark"),
                        help="folder for the simulated NYU-format frames (default: /tmp/keras_hpe_inference_benchmark)")
    args = parser.parse_args()
    if args.profile and args.format != "keras":
        parser.error("--profile times the Keras graph's steps: use it with --format keras")
    if (args.format == "litert-int8") != (args.calibration is not None):
        parser.error("--calibration goes with --format litert-int8, and litert-int8 needs it")
    if args.threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    threads = args.threads or os.cpu_count()

    from keras_hpe.data.crop import center_of_mass_uvd

    split_dir = args.frames / "test"
    if not any(split_dir.glob("*.png")):
        write_nyu_like(args.frames, "test", 8, seed=0)
    frames = np.stack([read_depth_png(p) for p in sorted(split_dir.glob("*.png"))[:8]])
    centers = np.stack([center_of_mass_uvd(f) for f in frames])
    paths = args.paths if args.format == "keras" else ["reference", "float32"]
    estimators = {name: make_estimator(args.size, args.variant, args.seg, args.reg, PATHS[name]) for name in paths}
    size = next(iter(estimators.values())).size
    result = {"format": args.format, "size": size, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="keras_hpe_export_") as folder:
        runs = {name: make_runner("keras", e, Path(folder), None, threads) for name, e in estimators.items()}
        if args.format != "keras":
            # The export of the default float32 estimator, against the reference.
            runs = {"reference": runs["reference"],
                    args.format: make_runner(args.format, estimators["float32"], Path(folder), args.calibration,
                                             threads)}
        result["paths"] = measure(runs, size, frames, centers, args.batch, args.seconds)
        if args.data is not None:
            for name, run in runs.items():
                result["paths"][name].update(accuracy(run, runs["reference"], args.data, args.batch))
    crop_ms = result["paths"].pop("crop")["ms_per_hand"]
    if args.format != "keras":
        graph_key = f"ms_graph_batch{args.batch}"
        result["speedup_vs_keras_graph_batched"] = round(
            result["paths"]["reference"][graph_key] / result["paths"][args.format][graph_key], 2)
    if args.profile:
        crops = np.stack([crop_depth(f, c, size) for f, c in zip(frames, centers)])
        for name, steps in profile(estimators, crops, centers, args.batch, args.seconds).items():
            result["paths"][name]["profile"] = steps
    result.update({
        "ms_crop_per_hand": crop_ms,
        "regression": args.variant if args.reg is None else str(args.reg),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    })
    print(f"{args.format}: cpu count {os.cpu_count()}, crop {size}x{size} ({crop_ms} ms per hand in NumPy), "
          f"regression {result['regression']}, threads {args.threads or 'default'}")
    print("targets: <= 5 ms per hand at batch 1, >= 600 hands/s batched, mean 3D error within 0.1 mm of the reference")
    for name, figures in result["paths"].items():
        line = (f"{name:>12}: batch 1 {figures['ms_per_hand_batch1']} ms per hand "
                f"({figures['ms_per_hand_batch1_range'][0]}-{figures['ms_per_hand_batch1_range'][1]}), "
                f"batch {args.batch} {figures['hands_per_s_batched']} hands/s "
                f"({figures['hands_per_s_batched_range'][0]}-{figures['hands_per_s_batched_range'][1]})")
        if "mean_error_mm" in figures:
            line += (f"; mean 3D error {figures['mean_error_mm']} mm, joints {figures['mean_joint_difference_mm']} mm "
                     f"from the reference on average, {figures['max_joint_difference_mm']} mm at most")
            if "parts_equal" in figures:
                line += f", {100 * figures['parts_equal']:.3f} % of the part labels equal"
        print(line)
        for key, ms in figures.get("profile", {}).items():
            print(f"{'':>14}{key}: {ms}")
    if "speedup_vs_keras_graph_batched" in result:
        print(f"graph at batch {args.batch}: {result['speedup_vs_keras_graph_batched']}x the Keras reference's speed"
              + ("  target >= 2x" if args.format == "litert-int8" else ""))
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
