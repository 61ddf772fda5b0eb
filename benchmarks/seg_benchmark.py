"""Segmentation inference speed on CPU: ms per frame at batch 1, frames/s batched.

Times the network's forward pass plus its input preprocessing (depth
normalisation + LCN), i.e. `predict_parts` without the NumPy argmax, on random
depth crops. The last line printed is a JSON summary.

    python benchmarks/seg_benchmark.py [--model OUT/seg_synth.keras] [--size 64] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_hpe.models.segmentation import (  # noqa: E402
    SegmentationConfig,
    build_segmentation_model,
    model_crop_size,
    segmentation_input,
)


def median_seconds(step, repeats: int) -> float:
    """Median wall time of `step()` over `repeats` calls, after two warm-up calls."""
    step()
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="a .keras segmentation model (default: an untrained one of the paper's architecture)")
    parser.add_argument("--size", type=int, default=64,
                        help="crop size S when building the default model (default: 64)")
    parser.add_argument("--batch", type=int, default=128, help="batch size of the throughput run (default: 128)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement (default: 30)")
    args = parser.parse_args()

    if args.model:
        model = keras.saving.load_model(args.model)
    else:
        model = build_segmentation_model(replace(SegmentationConfig(), size=args.size))
    size = model_crop_size(model)

    @tf.function(reduce_retracing=True)
    def segment(depth_mm, center_d_mm):
        return model(segmentation_input(depth_mm, center_d_mm), training=False)

    rng = np.random.default_rng(0)

    def frames(n):
        depth_mm = rng.uniform(400.0, 700.0, size=(n, size, size)).astype(np.float32)
        return tf.constant(depth_mm), tf.constant(np.full(n, 550.0, np.float32))

    one = frames(1)
    batch = frames(args.batch)
    ms_per_frame = 1000.0 * median_seconds(lambda: segment(*one).numpy(), args.repeats)
    batched_s = median_seconds(lambda: segment(*batch).numpy(), max(3, args.repeats // 5))
    result = {
        "benchmark": "segmentation_inference",
        "model": args.model or "paper architecture (untrained)",
        "size": size,
        "params": int(model.count_params()),
        "batch1_ms_per_frame": round(ms_per_frame, 2),
        "batch": args.batch,
        "batched_frames_per_s": round(args.batch / batched_s, 1),
        "cpu_threads": os.cpu_count(),
    }
    print(f"batch 1: {ms_per_frame:.2f} ms/frame; batch {args.batch}: {args.batch / batched_s:.0f} frames/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
