"""Restoration benchmark: time per 64 x 64 frame against a >= 1 M-patch dictionary, and Annoy vs exact.

Dictionary: label maps rendered by the synthetic domain (`render_synth_frames`),
until at least --min-patches unique 7 x 7 patches. Queries: held-out synthetic
frames (another seed) corrupted to stand in for stage-1 predictions until the
segmentation network exists: a fraction --noise of hand pixels set to a random
part, and in half of the frames one part relabelled as its neighbour along the
finger (a typical confusion).

For each (n_trees, search_k): Annoy alone (`exact_lookup=False`) against the
exact nearest neighbour (XOR + popcount over the packed codes) on a sample of
unique query patches: ratio of mean Hamming distances Annoy / exact and the
exact-match rate (Annoy's distance equals the exact one); and the time per
query. Then restoration time per frame (single process; wall clock and this
process's CPU time, which a busy shared machine inflates less) and pixel
accuracy of each method against the clean maps, and the share of frames the
barycenter quality gate rejects ("none" is rejected by construction).

    python benchmarks/restore_benchmark.py [--trees 8,16] [--search-k 1000,2000,5000,10000]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from keras_hpe.data.synth import render_synth_frames
from keras_hpe.restoration.index import DEFAULT_SEARCH_K, PatchIndex, build_dictionary, exact_nearest
from keras_hpe.restoration.patches import extract_patches, patch_keys, unique_patches
from keras_hpe.restoration.quality import gate_restorations
from keras_hpe.restoration.restore import METHODS, restore_batch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="crop size S (default: 64)")
    parser.add_argument("--min-patches", type=int, default=1_000_000, help="unique patches in the dictionary")
    parser.add_argument("--trees", default="8,16", help="comma-separated n_trees settings (default: 8,16); "
                        "the last one is used for the restoration timings")
    parser.add_argument("--search-k", default="1000,2000,5000,10000", help="comma-separated search_k settings")
    parser.add_argument("--query-frames", type=int, default=40, help="held-out frames to restore (default: 40)")
    parser.add_argument("--exact-sample", type=int, default=200, help="query patches checked exactly")
    parser.add_argument("--noise", type=float, default=0.1, help="fraction of hand pixels relabelled at random")
    parser.add_argument("--restore-search-k", type=int, default=DEFAULT_SEARCH_K,
                        help=f"search_k for the timed restoration (default: {DEFAULT_SEARCH_K})")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/keras_hpe_restore_bench"),
                        help="where dictionaries are kept (reused when present)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser.parse_args()


def dictionary_maps(seed: int, size: int, min_patches: int) -> np.ndarray:
    """Render synthetic label maps in batches until they hold `min_patches` unique patches."""
    rng = np.random.default_rng([seed, 0])
    maps, unique, counts = [], np.zeros((0, 7, 7), np.uint8), np.zeros(0, np.int64)
    while len(unique) < min_patches:
        batch = render_synth_frames(rng, 500, size)["labels"]
        maps.append(batch)
        patches, _ = extract_patches(batch)
        unique, counts = unique_patches(np.concatenate([unique, patches]),
                                        np.concatenate([counts, np.ones(len(patches), np.int64)]))
    return np.concatenate(maps)


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


def annoy_quality(index: PatchIndex, queries: np.ndarray, exact: np.ndarray) -> dict:
    """Annoy alone and with the exact-hit lookup, against the exact distances."""
    start, cpu_start = time.perf_counter(), time.process_time()
    _, annoy = index.query(queries, 1, exact_lookup=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    _, pipeline = index.query(queries, 1, exact_lookup=True)
    annoy, pipeline = annoy[:, 0], pipeline[:, 0]
    return {
        "n_trees": index.meta.n_trees,
        "search_k": index.search_k,
        "query_us": round(1e6 * seconds / len(queries), 1),
        "query_cpu_us": round(1e6 * cpu_seconds / len(queries), 1),
        "hamming_ratio": round(float(annoy.sum() / max(exact.sum(), 1)), 4),
        "exact_match_rate": round(float(np.mean(annoy == exact)), 4),
        "hamming_ratio_with_lookup": round(float(pipeline.sum() / max(exact.sum(), 1)), 4),
        "exact_match_rate_with_lookup": round(float(np.mean(pipeline == exact)), 4),
    }


def main() -> None:
    args = parse_args()
    trees = [int(t) for t in args.trees.split(",")]
    search_ks = [int(k) for k in args.search_k.split(",")]
    rng = np.random.default_rng([args.seed, 1])

    start = time.perf_counter()
    maps = dictionary_maps(args.seed, args.size, args.min_patches)
    render_seconds = time.perf_counter() - start
    print(f"{len(maps)} dictionary frames rendered in {render_seconds:.1f} s", flush=True)

    held_out_frames = render_synth_frames(np.random.default_rng([args.seed, 2]), args.query_frames, args.size)
    held_out = held_out_frames["labels"]
    noisy = corrupt(held_out, rng, args.noise)
    query_patches, _ = extract_patches(noisy)
    unique_queries, _ = unique_patches(query_patches)
    sample = unique_queries[rng.choice(len(unique_queries), min(args.exact_sample, len(unique_queries)),
                                       replace=False)]

    # Dictionaries are reused only for the very same maps (the renderer may have changed).
    digest = hashlib.sha1(maps.tobytes()).hexdigest()[:12]
    source = {"generator": "keras_hpe.data.synth.render_synth_frames", "seed": args.seed, "labels_sha1": digest}
    results, builds, exact, dictionary_patches = [], [], None, 0
    for n_trees in trees:
        out = args.work_dir / f"dict-{digest}-t{n_trees}"
        if not (out / "meta.json").exists():
            build_dictionary(maps, out, n_trees=n_trees, seed=args.seed, source_manifest=source, progress=True)
        index = PatchIndex.load(out)
        meta = index.meta
        dictionary_patches = meta.patches_unique
        builds.append({"n_trees": n_trees, "seconds": meta.build_seconds,
                       "ann_mb": round((out / meta.index_file).stat().st_size / 2**20, 1)})
        print(f"dictionary {meta.patches_unique:,} unique of {meta.patches_total:,}; build {meta.build_seconds}",
              flush=True)
        if exact is None:
            start = time.perf_counter()
            _, exact = exact_nearest(index.patches, sample)
            print(f"exact NN of {len(sample)} queries in {time.perf_counter() - start:.1f} s", flush=True)
        for search_k in search_ks:
            index.search_k = search_k
            results.append(annoy_quality(index, sample, exact))
            print(results[-1], flush=True)

    hand = held_out > 0
    integrate_by_search_k = []
    for search_k in search_ks:
        index.search_k = search_k
        start = time.process_time()
        restored = restore_batch(noisy, index, method="integrate")
        integrate_by_search_k.append({
            "search_k": search_k,
            "cpu_ms_per_frame": round(1e3 * (time.process_time() - start) / len(noisy), 2),
            "pixel_accuracy": round(float(np.mean(restored[hand] == held_out[hand])), 4),
        })
        print(integrate_by_search_k[-1], flush=True)

    index.search_k = args.restore_search_k
    timing, cpu_timing, accuracy, rejection = {}, {}, {}, {}
    for method in METHODS:
        frames = noisy if not method.startswith("crf") else noisy[:10]
        start, cpu_start = time.perf_counter(), time.process_time()
        restored = restore_batch(frames, index, method=method)
        timing[method] = round(1e3 * (time.perf_counter() - start) / len(frames), 2)
        cpu_timing[method] = round(1e3 * (time.process_time() - cpu_start) / len(frames), 2)
        truth = held_out[: len(frames)]
        accuracy[method] = round(float(np.mean(restored[hand[: len(frames)]] == truth[hand[: len(frames)]])), 4)
        gate = gate_restorations(frames, restored, *(held_out_frames[name][: len(frames)]
                                                     for name in ("depth_mm", "center_uvd", "joints_xyz")))
        rejection[method] = round(gate.rejection_rate, 4)
        print(f"{method}: {timing[method]} ms/frame ({cpu_timing[method]} ms CPU), pixel accuracy "
              f"{accuracy[method]}, quality-gate rejection rate {rejection[method]}", flush=True)

    exact_hits = np.isin(patch_keys(query_patches), patch_keys(index.patches))
    print(json.dumps({
        "benchmark": "restore",
        "size": args.size,
        "dictionary_frames": int(len(maps)),
        "dictionary_patches": int(dictionary_patches),
        "query_frames": int(len(noisy)),
        "hand_pixels_per_frame": round(float(hand.sum() / len(noisy)), 1),
        "query_exact_hit_rate": round(float(exact_hits.mean()), 4),
        "annoy_vs_exact": results,
        "builds": builds,
        "restore_search_k": args.restore_search_k,
        "restore_n_trees": index.meta.n_trees,
        "restore_ms_per_frame": timing,
        "restore_cpu_ms_per_frame": cpu_timing,
        "pixel_accuracy": accuracy,
        "gate_rejection_rate": rejection,
        "integrate_by_search_k": integrate_by_search_k,
    }))


if __name__ == "__main__":
    main()
