"""Renderer throughput: synthetic frames (sample a hand, ray-cast the crop, clip) per second.

Prints human-readable lines, then a last line of JSON with "frames_per_s" and "size".
Target (DESIGN.md): >= 200 frames/s at 64 x 64 on 2 CPU cores.

    python benchmarks/render_benchmark.py --size 64 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from keras_hpe.data.synth import render_synth_frames


def measure(size: int, seconds: float, batch: int, seed: int = 0) -> dict:
    """Render batches of `batch` frames for about `seconds`; return the rate."""
    rng = np.random.default_rng(seed)
    render_synth_frames(rng, min(batch, 8), size)  # warm-up: imports, first allocations
    frames, hand_pixels = 0, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        out = render_synth_frames(rng, batch, size)
        frames += batch
        hand_pixels += int(np.count_nonzero(out["labels"]))
    elapsed = time.perf_counter() - start
    return {
        "size": size,
        "batch": batch,
        "frames": frames,
        "seconds": round(elapsed, 3),
        "frames_per_s": round(frames / elapsed, 1),
        "hand_pixel_fraction": round(hand_pixels / (frames * size * size), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="crop size S (S x S pixels), default 64")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to render, default 5 s")
    parser.add_argument("--batch", type=int, default=256, help="frames rendered per call, default 256")
    args = parser.parse_args()
    result = measure(args.size, args.seconds, args.batch)
    single = measure(args.size, min(args.seconds, 2.0), 1)
    print(f"cpu count: {os.cpu_count()}")
    print(f"{result['frames']} frames of {args.size}x{args.size} in {result['seconds']} s, batches of {args.batch}")
    print(f"batched:   {result['frames_per_s']} frames/s (hand covers {result['hand_pixel_fraction']:.1%} of pixels)")
    print(f"one by one: {single['frames_per_s']} frames/s")
    print(json.dumps({**result, "frames_per_s_one_by_one": single["frames_per_s"]}))


if __name__ == "__main__":
    main()
