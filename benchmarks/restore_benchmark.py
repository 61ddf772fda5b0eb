"""Restoration benchmark: time per 64 x 64 frame and closeness to the exact nearest neighbours, >= 1 M patches.

Dictionaries: the label patches of synthetic frames from `keras-hpe data synth` (--synth DIR,
or rendered into --work-dir), each of --sizes built from the fewest leading frames that hold
that many unique patches. Queries: the stage-1 network's predictions on a labelled real
split (--seg MODEL --real DIR), or else held-out synthetic label maps with noise (a fraction
--noise of hand pixels relabelled at random and, in half of the frames, one part relabelled
as its neighbour along the finger); the output says which.

Figures, medians of --repeats timings:
- ratio: the mean Hamming distance of the restoration's matches (`PatchIndex.match_maps`:
  exact lookup, Annoy, propagation) over the exact nearest neighbour's
  (`index.exact_nearest`), on --exact-sample hand pixels of the first --exact-frames frames;
- ms per frame: `restore_batch` (eq. 1, then eq. 2) over --query-frames frames in this
  process, wall clock and CPU; at the defaults also restored by --workers processes;
- the curve at the largest size: every n_trees of --trees x search_k of --search-k x
  propagation steps of --steps, with each dictionary's build time and size;
- growth: both figures at the defaults for each of --sizes.

    python benchmarks/restore_benchmark.py --seg runs/quick/seg_synth/seg_synth.keras \\
        --real runs/quick/real_test/data

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe.data.dataset import MANIFEST_NAME, load_arrays, read_manifest  # noqa: E402
from keras_hpe.data.synth import generate_synth, render_synth_frames  # noqa: E402
from keras_hpe.restoration.index import (  # noqa: E402
    DEFAULT_PROPAGATION_STEPS,
    DEFAULT_SEARCH_K,
    DEFAULT_TREES,
    FORMAT,
    PatchIndex,
    build_dictionary,
    exact_nearest,
)
from keras_hpe.restoration.patches import extract_patches, patch_keys  # noqa: E402
from keras_hpe.restoration.restore import RestorationPool, restore_batch, restore_frames  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", type=Path, help="synthetic data set for the dictionaries (default: render "
                        "--synth-frames frames into --work-dir)")
    parser.add_argument("--synth-frames", type=int, default=4000, help="frames to render (default: 4000)")
    parser.add_argument("--sizes", default="250000,500000,1000000",
                        help="unique patches of each dictionary, comma-separated (default: 250000,500000,1000000)")
    parser.add_argument("--trees", default="8,16,32", help="n_trees of the curve (default: 8,16,32)")
    parser.add_argument("--search-k", default="100,250,500,1000,2000", help="search_k of the curve")
    parser.add_argument("--steps", default=f"0,{DEFAULT_PROPAGATION_STEPS}",
                        help=f"propagation steps of the curve (default: 0,{DEFAULT_PROPAGATION_STEPS})")
    parser.add_argument("--seg", type=Path, help="stage-1 segmentation model whose predictions are the queries")
    parser.add_argument("--real", type=Path, help="labelled real split the model segments (with --seg)")
    parser.add_argument("--query-frames", type=int, default=50, help="frames restored and timed (default: 50)")
    parser.add_argument("--exact-frames", type=int, default=30, help="frames the exact sample is drawn from")
    parser.add_argument("--exact-sample", type=int, default=1000, help="hand pixels matched exactly (default: 1000)")
    parser.add_argument("--noise", type=float, default=0.1, help="without --seg: hand pixels relabelled at random")
    parser.add_argument("--workers", type=int, default=2, help="processes of the parallel timing (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure; the median is shown")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/keras_hpe_restore_bench"),
                        help="where the rendered frames and dictionaries are kept (reused when present)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args()
    if (args.seg is None) != (args.real is None):
        parser.error("--seg and --real go together")
    return args


def synth_labels(args: argparse.Namespace) -> np.ndarray:
    """The dictionary frames' label maps: --synth, or frames rendered as `keras-hpe data synth` does."""
    path = args.synth or args.work_dir / f"synth-s{args.seed}-n{args.synth_frames}"
    if not (path / MANIFEST_NAME).exists():
        generate_synth(path, args.synth_frames, seed=args.seed, size=64, progress=True)
    return load_arrays(path, ["labels"])["labels"]


def frames_for_sizes(labels: np.ndarray, sizes: list[int]) -> list[int]:
    """The fewest leading frames whose patches hold each of `sizes` unique patches."""
    patches, coords = extract_patches(labels)
    _, first = np.unique(patch_keys(patches), return_index=True)
    first_frames = np.sort(coords[first, 0])  # the frame where each unique patch first occurs
    if max(sizes) > len(first_frames):
        raise SystemExit(f"{len(labels)} frames hold {len(first_frames):,} unique patches, fewer than "
                         f"{max(sizes):,}: give more --synth-frames")
    return [int(first_frames[size - 1]) + 1 for size in sizes]


def dictionary(labels: np.ndarray, n_trees: int, args: argparse.Namespace) -> PatchIndex:
    """The dictionary of `labels` with `n_trees` trees, built once into --work-dir."""
    digest = hashlib.sha1(labels.tobytes() + FORMAT.encode()).hexdigest()[:12]
    out = args.work_dir / f"dict-{digest}-t{n_trees}"
    if not (out / "meta.json").exists():
        build_dictionary(labels, out, n_trees=n_trees, seed=args.seed, progress=False)
    return PatchIndex.load(out)


def corrupt(clean: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Prediction-like maps: random relabelled pixels plus one part confused with its finger neighbour."""
    noisy = clean.copy()
    hand = clean > 0
    flip = hand & (rng.random(clean.shape) < noise)
    noisy[flip] = rng.integers(1, 21, flip.sum())
    for frame in np.flatnonzero(rng.random(len(clean)) < 0.5):
        part = int(rng.integers(2, 21))
        neighbour = part + 1 if part not in (4, 8, 12, 16, 20) else part - 1
        noisy[frame][clean[frame] == part] = neighbour
    return noisy


def query_maps(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(queries, true labels, what the queries are)."""
    n = args.query_frames
    if args.seg is not None:
        from keras_hpe.models.segmentation import predict_parts
        from keras_hpe.training.seg import load_segmentation_model

        arrays = load_arrays(args.real, ["depth_mm", "center_uvd", "labels"])
        _, predicted = predict_parts(load_segmentation_model(args.seg), arrays["depth_mm"][:n],
                                     arrays["center_uvd"][:n, 2])
        return predicted, arrays["labels"][:n], (f"stage-1 predictions ({args.seg}) on "
                                                 f"{read_manifest(args.real).domain} frames ({args.real})")
    truth = render_synth_frames(np.random.default_rng([args.seed, 2]), n, 64)["labels"]
    return (corrupt(truth, np.random.default_rng([args.seed, 1]), args.noise), truth,
            f"held-out synthetic label maps with noise {args.noise} (no --seg given)")


def median_ms(run, frames: int, repeats: int) -> tuple[float, float, np.ndarray]:
    """Median wall and CPU (this process) milliseconds per frame of `run()` over `repeats` runs, and its result."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = run()
        wall.append(1e3 * (time.perf_counter() - start) / frames)
        cpu.append(1e3 * (time.process_time() - cpu_start) / frames)
    return round(statistics.median(wall), 2), round(statistics.median(cpu), 2), result


def measure(index: PatchIndex, maps: np.ndarray, truth: np.ndarray, exact: dict, args: argparse.Namespace) -> dict:
    """Time per frame and the ratio to the exact nearest neighbours at the index's settings."""
    wall, cpu, restored = median_ms(lambda: restore_batch(maps, index), len(maps), args.repeats)
    _, hamming, _ = index.match_maps(maps[:args.exact_frames])
    found = hamming[exact["pixels"]]
    hand = truth > 0
    return {
        "n_trees": index.meta.n_trees, "search_k": index.search_k, "propagation_steps": index.propagation_steps,
        "ms_per_frame": wall, "cpu_ms_per_frame": cpu,
        "ratio": round(float(found.sum() / exact["hamming"].sum()), 4),
        "exact_rate": round(float(np.mean(found == exact["hamming"])), 4),
        "pixel_accuracy": round(float(np.mean(restored[hand] == truth[hand])), 4),
    }


def exact_sample(index: PatchIndex, maps: np.ndarray, args: argparse.Namespace) -> dict:
    """The exact nearest neighbours' distances of --exact-sample hand pixels of the first --exact-frames maps."""
    patches, _ = extract_patches(maps[:args.exact_frames])
    pixels = np.sort(np.random.default_rng([args.seed, 3]).choice(
        len(patches), min(args.exact_sample, len(patches)), replace=False))
    start = time.perf_counter()
    _, hamming = exact_nearest(index.patches, patches[pixels])
    print(f"exact nearest neighbours of {len(pixels)} pixels among {len(index):,} patches in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return {"pixels": pixels, "hamming": hamming}


def build_record(index: PatchIndex) -> dict:
    meta = index.meta
    return {"n_trees": meta.n_trees, "patches": meta.patches_unique, "frames": meta.frames,
            "build_seconds": meta.build_seconds, "index_mb": round(meta.index_bytes / 2**20, 1)}


def parallel_ms(index: PatchIndex, maps: np.ndarray, args: argparse.Namespace) -> float:
    """Median wall milliseconds per frame restored by --workers processes (pool started beforehand)."""
    with RestorationPool(index, args.workers) as pool:
        restore_frames(maps[:2 * args.workers], index, pool=pool, chunk_frames=1)  # workers load the index
        return median_ms(lambda: restore_frames(maps, index, pool=pool, chunk_frames=4), len(maps), args.repeats)[0]


def main() -> None:
    args = parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    trees = [int(t) for t in args.trees.split(",")]
    search_ks = [int(k) for k in args.search_k.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    labels = synth_labels(args)
    maps, truth, queries = query_maps(args)
    hand = maps > 0
    print(f"queries: {queries}; {len(maps)} frames, {hand.sum() / len(maps):.0f} hand pixels per frame, "
          f"{len(np.unique(patch_keys(extract_patches(maps)[0]))) / hand.sum():.1%} of their patches distinct",
          flush=True)
    defaults = {"n_trees": DEFAULT_TREES, "search_k": DEFAULT_SEARCH_K, "propagation_steps": DEFAULT_PROPAGATION_STEPS}

    growth, builds, largest = [], [], None
    for size, frames in zip(sizes, frames_for_sizes(labels, sizes)):
        index = dictionary(labels[:frames], DEFAULT_TREES, args)
        exact = exact_sample(index, maps, args)
        growth.append({**build_record(index), **measure(index, maps, truth, exact, args)})
        print(growth[-1], flush=True)
        largest = (frames, exact)
    frames, exact = largest
    growth[-1][f"ms_per_frame_{args.workers}_workers"] = parallel_ms(index, maps, args)
    print(f"{args.workers} workers: {growth[-1][f'ms_per_frame_{args.workers}_workers']} ms per frame", flush=True)

    curve = []
    for n_trees in trees:
        index = dictionary(labels[:frames], n_trees, args)
        builds.append(build_record(index))
        print(builds[-1], flush=True)
        for search_k in search_ks:
            for step_count in steps:
                index.search_k, index.propagation_steps = search_k, step_count
                curve.append(measure(index, maps, truth, exact, args))
                print(curve[-1], flush=True)

    print(f"\nCurve at {index.meta.patches_unique:,} patches, queries: {queries}")
    print("| n_trees | search_k | propagation steps | ms per frame (CPU) | Annoy / exact | exact NN found |")
    print("|---|---|---|---|---|---|")
    for row in curve:
        print(f"| {row['n_trees']} | {row['search_k']} | {row['propagation_steps']} | {row['ms_per_frame']} "
              f"({row['cpu_ms_per_frame']}) | {row['ratio']:.3f} | {row['exact_rate']:.1%} |")
    print("\n| n_trees | build s (add items + trees) | index MB |\n|---|---|---|")
    for row in builds:
        seconds = row["build_seconds"]
        print(f"| {row['n_trees']} | {seconds['add_items'] + seconds['build_trees']:.0f} | {row['index_mb']} |")
    print(f"\nGrowth at the defaults {defaults}")
    print("| patches | frames | ms per frame (CPU) | Annoy / exact | build s | index MB |\n|---|---|---|---|---|---|")
    for row in growth:
        print(f"| {row['patches']:,} | {row['frames']} | {row['ms_per_frame']} ({row['cpu_ms_per_frame']}) | "
              f"{row['ratio']:.3f} | {sum(row['build_seconds'].values()):.0f} | {row['index_mb']} |")
    print(json.dumps({
        "benchmark": "restore",
        "queries": queries,
        "query_frames": int(len(maps)),
        "hand_pixels_per_frame": round(float(hand.sum() / len(maps)), 1),
        "raw_pixel_accuracy": round(float(np.mean(maps[truth > 0] == truth[truth > 0])), 4),
        "exact_sample": int(len(exact["pixels"])),
        "defaults": defaults,
        "growth": growth,
        "curve": curve,
        "builds": builds,
    }))


if __name__ == "__main__":
    main()
