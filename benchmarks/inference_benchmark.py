"""End-to-end inference speed: crop + segmentation + regression per hand, at batch 1 and batched.

Times the estimator graph (`HandPoseEstimator`, which `keras-hpe predict` runs)
in one runtime, --format: keras (the Keras models in TensorFlow, in process),
saved_model (the TF Serving export, loaded with `tf.saved_model.load`),
litert, litert-fp16, litert-int8 (`ai_edge_litert`) or onnx (`onnxruntime`);
the exports are made to a temporary folder by `keras_hpe.export` first. Each
call is the NumPy crop (`crop.crop_depth`) plus one call of the runtime.
Untrained models of the default configs unless --seg/--reg are given (speed
does not depend on the weights; int8 calibration needs --calibration). For a
format other than keras the Keras graph is timed too, for the speed-up. With
--data, also the mean 3D joint error on that data set in this format and in
Keras, and the joint differences between the two. Prints human-readable
lines, then a last line of JSON.
Targets: <= 15 ms per hand at batch 1, >= 300 hands/s batched, at 64 x 64 (DESIGN.md);
litert-int8 >= 2x the Keras throughput, its mean 3D error within 1 mm of float32 (issue 13).

    python benchmarks/inference_benchmark.py --seconds 5
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


def make_estimator(size: int, variant: str, seg: Path | None, reg: Path | None):
    """The estimator to time: loaded models, or untrained ones of the default configs at `size`."""
    import keras

    from keras_hpe.models.regression import RegressionConfig, build_direct_regression, build_regression
    from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
    from keras_hpe.pipeline import HandPoseEstimator, load_estimator

    if reg is not None:
        return load_estimator(reg, seg)
    keras.utils.set_random_seed(0)
    if variant == "direct":
        return HandPoseEstimator(build_direct_regression(RegressionConfig(input_size=size)))
    return HandPoseEstimator(
        build_regression(RegressionConfig(input_size=size), variant=variant),
        build_segmentation_model(SegmentationConfig(size=size)),
    )


def time_calls(fn, seconds: float, min_calls: int = 5) -> float:
    """Median seconds per call of `fn()` over about `seconds`, after one warm-up call.

    The median, not the mean: on a shared machine a few calls stall behind other processes.
    """
    fn()
    durations, start = [], time.perf_counter()
    while len(durations) < min_calls or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - begin)
    return float(np.median(durations))


Runner = Callable[[np.ndarray, np.ndarray], dict]
FORMATS = ("keras", *EXPORT_FORMATS)


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


def measure(run: Runner, size: int, frames: np.ndarray, centers: np.ndarray, batch: int, seconds: float) -> dict:
    """Per-hand latency at batch 1 and throughput at `batch`, with the crop, and each step alone."""
    crops = np.stack([crop_depth(f, c, size) for f, c in zip(frames, centers)])
    index = np.arange(batch) % len(frames)
    centers32 = centers.astype(np.float32)

    def one_hand():
        crop = crop_depth(frames[0], centers[0], size)
        run(crop[None], centers32[:1])

    def batched():
        batch_crops = np.stack([crop_depth(frames[i], centers[i], size) for i in index])
        run(batch_crops, centers32[index])

    batch1_s = time_calls(one_hand, seconds)
    batched_s = time_calls(batched, seconds)
    crop_s = time_calls(lambda: crop_depth(frames[0], centers[0], size), min(seconds, 1.0), min_calls=50)
    graph1_s = time_calls(lambda: run(crops[:1], centers32[:1]), seconds)
    batch_crops = crops[index]
    graph_batched_s = time_calls(lambda: run(batch_crops, centers32[index]), seconds)
    return {
        "size": size,
        "batch": batch,
        "ms_per_hand_batch1": round(1e3 * batch1_s, 2),
        "hands_per_s_batched": round(batch / batched_s, 1),
        "ms_crop_per_hand": round(1e3 * crop_s, 3),
        "ms_graph_batch1": round(1e3 * graph1_s, 2),
        f"ms_graph_batch{batch}": round(1e3 * graph_batched_s, 2),
    }


def accuracy(run: Runner, keras_run: Runner, data: Path, batch: int) -> dict:
    """Mean 3D joint error (mm) on the data set `data` in this runtime and in Keras, and their differences."""
    from keras_hpe.data.dataset import load_arrays

    arrays = load_arrays(data, ["depth_mm", "center_uvd", "joints_xyz"])
    centers = arrays["center_uvd"].astype(np.float32)
    chunks = [slice(i, i + batch) for i in range(0, len(centers), batch)]
    outputs = [run(arrays["depth_mm"][c], centers[c]) for c in chunks]
    expected = [keras_run(arrays["depth_mm"][c], centers[c]) for c in chunks]
    joints = np.concatenate([o["joints_xyz"] for o in outputs])
    keras_joints = np.concatenate([o["joints_xyz"] for o in expected])
    difference = np.linalg.norm(joints - keras_joints, axis=-1)
    result = {
        "frames": len(joints),
        "mean_error_mm": round(float(np.linalg.norm(joints - arrays["joints_xyz"], axis=-1).mean()), 3),
        "keras_mean_error_mm": round(float(np.linalg.norm(keras_joints - arrays["joints_xyz"], axis=-1).mean()), 3),
        "mean_joint_difference_mm": round(float(difference.mean()), 4),
        "max_joint_difference_mm": round(float(difference.max()), 4),
    }
    if "parts" in outputs[0]:
        parts = np.concatenate([o["parts"] for o in outputs])
        result["parts_equal"] = round(float(np.mean(parts == np.concatenate([o["parts"] for o in expected]))), 5)
    return result


def profile(estimator, crops: np.ndarray, centers: np.ndarray, batch: int, seconds: float) -> dict:
    """Milliseconds per call of each step of the graph alone (input normalisation, segmentation, regression)."""
    import tensorflow as tf

    from keras_hpe.data.crop import normalize_depth
    from keras_hpe.models.segmentation import segmentation_input

    steps = {
        "inputs": tf.function(lambda d, c: (normalize_depth(d[..., None], c), segmentation_input(d, c))),
        "segmentation": tf.function(lambda x: estimator.segmentation(x, training=False)),
        "regression": tf.function(lambda *x: estimator.regression(list(x), training=False)),
    }
    result = {}
    for n in (1, batch):
        index = np.arange(n) % len(crops)
        depth_mm, center_d = tf.constant(crops[index]), tf.constant(centers[index, 2].astype(np.float32))
        depth, seg_input = steps["inputs"](depth_mm, center_d)
        result[f"ms_inputs_batch{n}"] = round(1e3 * time_calls(lambda: steps["inputs"](depth_mm, center_d), seconds), 2)
        if estimator.segmentation is None:
            regression_inputs = [depth]
        else:
            probs = steps["segmentation"](seg_input)
            result[f"ms_segmentation_batch{n}"] = round(
                1e3 * time_calls(lambda: steps["segmentation"](seg_input)[0, 0, 0, 0].numpy(), seconds), 2
            )
            regression_inputs = [depth, probs]
        result[f"ms_regression_batch{n}"] = round(
            1e3 * time_calls(lambda: steps["regression"](*regression_inputs)[0, 0, 0].numpy(), seconds), 2
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=FORMATS, default="keras",
                        help="runtime to time: keras (in process), saved_model (TensorFlow), litert, litert-fp16, "
                        "litert-int8 (ai_edge_litert), onnx (onnxruntime) (default: keras)")
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
                        help="data set with joints: also score the 3D error in this format and in Keras "
                        "(default: none)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of the LiteRT and ONNX runtimes (default: the CPU count; TensorFlow uses all)")
    parser.add_argument("--batch", type=int, default=64, help="hands per call when batched (default: 64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default: 5 s)")
    parser.add_argument("--profile", action="store_true",
                        help="also time each step of the graph alone (inputs, segmentation, regression); keras only")
    parser.add_argument("--frames", type=Path, default=Path("/tmp/keras_hpe_inference_benchmark"),
                        help="folder for the simulated NYU-format frames (default: /tmp/keras_hpe_inference_benchmark)")
    args = parser.parse_args()
    if args.profile and args.format != "keras":
        parser.error("--profile times the Keras graph's steps: use it with --format keras")
    if (args.format == "litert-int8") != (args.calibration is not None):
        parser.error("--calibration goes with --format litert-int8, and litert-int8 needs it")

    from keras_hpe.data.crop import center_of_mass_uvd

    split_dir = args.frames / "test"
    if not any(split_dir.glob("*.png")):
        write_nyu_like(args.frames, "test", 8, seed=0)
    frames = np.stack([read_depth_png(p) for p in sorted(split_dir.glob("*.png"))[:8]])
    centers = np.stack([center_of_mass_uvd(f) for f in frames])
    estimator = make_estimator(args.size, args.variant, args.seg, args.reg)
    with tempfile.TemporaryDirectory(prefix="keras_hpe_export_") as folder:
        run = make_runner(args.format, estimator, Path(folder), args.calibration, args.threads)
        result = {"format": args.format}
        result.update(measure(run, estimator.size, frames, centers, args.batch, args.seconds))
        keras_run = make_runner("keras", estimator, Path(folder), None, args.threads)
        if args.format != "keras":
            crops = np.stack([crop_depth(frames[i % len(frames)], centers[i % len(frames)], estimator.size)
                              for i in range(args.batch)])
            centers32 = centers[np.arange(args.batch) % len(frames)].astype(np.float32)
            keras_s = time_calls(lambda: keras_run(crops, centers32), args.seconds)
            result[f"keras_ms_graph_batch{args.batch}"] = round(1e3 * keras_s, 2)
            result["speedup_vs_keras_graph_batched"] = round(
                1e3 * keras_s / result[f"ms_graph_batch{args.batch}"], 2)
        if args.data is not None:
            result.update(accuracy(run, keras_run, args.data, args.batch))
    if args.profile:
        crops = np.stack([crop_depth(f, c, estimator.size) for f, c in zip(frames, centers)])
        result.update(profile(estimator, crops, centers, args.batch, args.seconds))
    result.update({
        "variant": args.variant if args.reg is None else str(args.reg),
        "threads": None if args.format in ("keras", "saved_model") else args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    })
    print(f"{args.format}: cpu count {os.cpu_count()}, crop {result['size']}x{result['size']}, "
          f"regression {result['variant']}")
    print(f"batch 1:  {result['ms_per_hand_batch1']} ms per hand (crop {result['ms_crop_per_hand']} ms, "
          f"graph {result['ms_graph_batch1']} ms)  target <= 15 ms")
    print(f"batch {args.batch}: {result['hands_per_s_batched']} hands/s  target >= 300 hands/s")
    if "speedup_vs_keras_graph_batched" in result:
        print(f"graph at batch {args.batch}: {result['speedup_vs_keras_graph_batched']}x the Keras graph's speed"
              + ("  target >= 2x" if args.format == "litert-int8" else ""))
    if "mean_error_mm" in result:
        print(f"mean 3D error on {result['frames']} frames of {args.data}: {result['mean_error_mm']} mm "
              f"(Keras {result['keras_mean_error_mm']} mm); joints differ from Keras by "
              f"{result['mean_joint_difference_mm']} mm on average, {result['max_joint_difference_mm']} mm at most")
    for key in sorted(k for k in result if k.startswith("ms_") and "_batch" in k and k != "ms_per_hand_batch1"):
        print(f"  {key}: {result[key]}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
