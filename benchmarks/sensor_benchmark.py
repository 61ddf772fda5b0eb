"""Simulated-real throughput: frames/s of the `sensor` domain (render at native resolution, sensor model, crop).

Prints human-readable lines, then a last line of JSON with "frames_per_s" and "size".
Target (the sensor task): >= 50 frames/s at 64 x 64 on one core.

    python benchmarks/sensor_benchmark.py --size 64 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from keras_hpe.data.sensor import render_sensor_frames


def measure(size: int, seconds: float, batch: int, eval_labels: bool, seed: int = 0) -> dict:
    """Render batches of `batch` frames for about `seconds`; return the rate and how much depth survives."""
    rng = np.random.default_rng(seed)
    render_sensor_frames(rng, 4, size)  # warm-up: imports, first allocations
    frames, depth_pixels = 0, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        out = render_sensor_frames(rng, batch, size, eval_labels=eval_labels)
        frames += batch
        depth_pixels += int(np.count_nonzero(out["depth_mm"]))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "size": size,
        "batch": batch,
        "eval_labels": eval_labels,
        "frames": frames,
        "seconds": round(elapsed, 3),
        "frames_per_s": round(frames / elapsed, 1),
        # On a shared machine wall time includes other jobs; CPU time of this process does not.
        "frames_per_cpu_s": round(frames / cpu, 1),
        "depth_pixel_fraction": round(depth_pixels / (frames * size * size), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="crop size S (S x S pixels), default 64")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to render, default 5 s")
    parser.add_argument("--batch", type=int, default=64, help="frames rendered per call, default 64")
    parser.add_argument("--eval-labels", action="store_true", help="also crop the clean part labels (eval split)")
    args = parser.parse_args()
    result = measure(args.size, args.seconds, args.batch, args.eval_labels)
    print(f"{result['frames']} frames of {args.size}x{args.size} in {result['seconds']} s, batches of {args.batch}")
    print(f"{result['frames_per_s']} frames/s wall, {result['frames_per_cpu_s']} frames per CPU second")
    print(f"depth covers {result['depth_pixel_fraction']:.1%} of crop pixels")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
