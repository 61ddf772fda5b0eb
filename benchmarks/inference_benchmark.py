"""End-to-end inference speed: crop + segmentation + regression per hand, at batch 1 and batched.

Times `HandPoseEstimator` (the graph `keras-hpe predict` and the TF Serving
export run) on simulated full-size frames: the NumPy crop (`crop.crop_depth`)
plus one estimator call. Untrained models of the default configs unless
--seg/--reg are given (speed does not depend on the weights). Prints
human-readable lines, then a last line of JSON.
Targets (DESIGN.md): <= 15 ms per hand at batch 1, >= 300 hands/s batched, at 64 x 64.

    python benchmarks/inference_benchmark.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from keras_hpe.data.crop import crop_depth
from keras_hpe.data.nyu import read_depth_png, write_nyu_like


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


def measure(estimator, frames: np.ndarray, centers: np.ndarray, batch: int, seconds: float) -> dict:
    """Per-hand latency at batch 1 and throughput at `batch`, with the crop, and each step alone."""
    size = estimator.size
    crops = np.stack([crop_depth(f, c, size) for f, c in zip(frames, centers)])
    index = np.arange(batch) % len(frames)
    centers32 = centers.astype(np.float32)

    def one_hand():
        crop = crop_depth(frames[0], centers[0], size)
        estimator(crop[None], centers32[:1])["joints_xyz"].numpy()

    def batched():
        batch_crops = np.stack([crop_depth(frames[i], centers[i], size) for i in index])
        estimator(batch_crops, centers32[index])["joints_xyz"].numpy()

    batch1_s = time_calls(one_hand, seconds)
    batched_s = time_calls(batched, seconds)
    crop_s = time_calls(lambda: crop_depth(frames[0], centers[0], size), min(seconds, 1.0), min_calls=50)
    graph1_s = time_calls(lambda: estimator(crops[:1], centers32[:1])["joints_xyz"].numpy(), seconds)
    batch_crops = crops[index]
    graph_batched_s = time_calls(lambda: estimator(batch_crops, centers32[index])["joints_xyz"].numpy(), seconds)
    return {
        "size": size,
        "batch": batch,
        "ms_per_hand_batch1": round(1e3 * batch1_s, 2),
        "hands_per_s_batched": round(batch / batched_s, 1),
        "ms_crop_per_hand": round(1e3 * crop_s, 3),
        "ms_graph_batch1": round(1e3 * graph1_s, 2),
        f"ms_graph_batch{batch}": round(1e3 * graph_batched_s, 2),
    }


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
    parser.add_argument("--size", type=int, default=64, help="crop size S for untrained models (default: 64)")
    parser.add_argument("--variant", choices=("separate", "shared", "direct"), default="separate",
                        help="regression variant of the untrained models (default: separate, the paper's)")
    parser.add_argument("--seg", type=Path, default=None,
                        help="trained segmentation model (.keras) (default: untrained, or the one --reg's JSON names)")
    parser.add_argument("--reg", type=Path, default=None, help="trained regression model (.keras) (default: untrained)")
    parser.add_argument("--batch", type=int, default=64, help="hands per call when batched (default: 64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default: 5 s)")
    parser.add_argument("--profile", action="store_true",
                        help="also time each step of the graph alone (inputs, segmentation, regression)")
    parser.add_argument("--frames", type=Path, default=Path("/tmp/keras_hpe_inference_benchmark"),
                        help="folder for the simulated NYU-format frames (default: /tmp/keras_hpe_inference_benchmark)")
    args = parser.parse_args()

    from keras_hpe.data.crop import center_of_mass_uvd

    split_dir = args.frames / "test"
    if not any(split_dir.glob("*.png")):
        write_nyu_like(args.frames, "test", 8, seed=0)
    frames = np.stack([read_depth_png(p) for p in sorted(split_dir.glob("*.png"))[:8]])
    centers = np.stack([center_of_mass_uvd(f) for f in frames])
    estimator = make_estimator(args.size, args.variant, args.seg, args.reg)
    result = measure(estimator, frames, centers, args.batch, args.seconds)
    if args.profile:
        crops = np.stack([crop_depth(f, c, estimator.size) for f, c in zip(frames, centers)])
        result.update(profile(estimator, crops, centers, args.batch, args.seconds))
    result.update({
        "variant": args.variant if args.reg is None else str(args.reg),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    })
    print(f"cpu count: {os.cpu_count()}, crop {result['size']}x{result['size']}, regression {result['variant']}")
    print(f"batch 1:  {result['ms_per_hand_batch1']} ms per hand (crop {result['ms_crop_per_hand']} ms, "
          f"graph {result['ms_graph_batch1']} ms)  target <= 15 ms")
    print(f"batch {args.batch}: {result['hands_per_s_batched']} hands/s  target >= 300 hands/s")
    for key in sorted(k for k in result if k.startswith("ms_") and "_batch" in k and k != "ms_per_hand_batch1"):
        print(f"  {key}: {result[key]}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
