"""Restoration throughput on Apache Beam (the local FnApiRunner) with N worker processes, or on the local path.

The work is `pseudo_labels.restored_chunks`, what `keras-hpe restore` runs after its predictions: with
`--runner beam` the driver stages the chunks, the runner's workers open the dictionary (once each), restore
and gate them, and the driver reads the results back; with `--runner local`, `restore_chunk` in this process
or a `RestorationPool`; `--runner both` runs the two in turn, so that the local pool's speed-up shows what
a second process gains on the machine at that time. Timed end to end, start-up included (Beam's workers,
the index), for each worker count, `--repeats` times in turn; the medians and the speed-up of each count
over 1 worker are printed, and whether every run gave the same arrays. Each run also reports the CPU seconds of this process and its worker
processes, and `cores_used` = CPU / wall seconds: on a busy machine, the share of the 2 cores it got.

Predictions: held-out synthetic frames corrupted as in `restore_benchmark.py` (no segmentation network
needed); dictionary: synthetic label maps until --min-patches unique 7 x 7 patches, kept in --work-dir.
The machine is shared: the 1-minute load average before and after each run is printed with it.

    python benchmarks/beam_benchmark.py --runner both --workers 1,2 --repeats 3

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_hpe.data.camera import NYU_CAMERA
from keras_hpe.data.crop import CUBE_MM
from keras_hpe.data.synth import render_synth_frames
from keras_hpe.restoration.index import DEFAULT_SEARCH_K, FORMAT, PatchIndex, build_dictionary
from keras_hpe.restoration.patches import extract_patches, unique_patches
from keras_hpe.restoration.pseudo_labels import restored_chunks
from restore_benchmark import corrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=("beam", "local", "both"), default="beam",
                        help="beam: the local FnApiRunner in multi-processing mode; local: this process or a "
                        "RestorationPool; both: the two, run in turn (default: beam)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per worker count (default: 3)")
    parser.add_argument("--frames", type=int, default=512, help="frames restored per run (default: 512)")
    parser.add_argument("--chunk", type=int, default=16, help="frames per chunk, the unit of work (default: 16)")
    parser.add_argument("--size", type=int, default=64, help="crop size S (default: 64)")
    parser.add_argument("--min-patches", type=int, default=1_000_000,
                        help="unique patches in the dictionary (default: 1000000)")
    parser.add_argument("--trees", type=int, default=16, help="Annoy trees of the dictionary (default: 16)")
    parser.add_argument("--search-k", type=int, default=DEFAULT_SEARCH_K,
                        help=f"Annoy search_k of the restoration (default: {DEFAULT_SEARCH_K})")
    parser.add_argument("--noise", type=float, default=0.1, help="fraction of hand pixels relabelled at random")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/keras_hpe_beam_bench"),
                        help="where the dictionary is kept (reused when present) and runs stage their files")
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


def dictionary(args: argparse.Namespace) -> PatchIndex:
    maps = dictionary_maps(args.seed, args.size, args.min_patches)
    digest = hashlib.sha1(maps.tobytes() + FORMAT.encode()).hexdigest()[:12]  # a new format, a new dictionary
    out = args.work_dir / f"dict-{digest}-t{args.trees}"
    if not (out / "meta.json").exists():
        build_dictionary(maps, out, n_trees=args.trees, seed=args.seed, progress=True,
                         source_manifest={"generator": "keras_hpe.data.synth.render_synth_frames", "seed": args.seed})
    return PatchIndex.load(out, search_k=args.search_k)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's and Beam's worker processes)."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_once(index: PatchIndex, frames: dict, raw: np.ndarray, chunk: int, workers: int, runner_name: str,
             work_dir: Path) -> tuple[float, float, list]:
    """Wall and CPU seconds to restore and gate every chunk, and the results."""
    from keras_hpe.beam import BeamRunner

    chunks = [np.arange(start, min(start + chunk, len(raw))) for start in range(0, len(raw), chunk)]
    fields = {name: frames[name] for name in ("depth_mm", "center_uvd", "joints_xyz", "joints_uvd")}

    def predicted(number: int):
        rows = chunks[number]
        return rows, {name: values[rows] for name, values in fields.items()}, raw[rows]

    runner = BeamRunner.from_options(workers=workers) if runner_name == "beam" else None
    options = dict(method="integrate", window=5, cube_mm=CUBE_MM, camera=NYU_CAMERA)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    with restored_chunks(list(range(len(chunks))), predicted, index, options, workers, runner, work_dir,
                         progress=False) as records:
        results = [record for _, record in records]
    return time.perf_counter() - start, cpu_seconds() - cpu_start, results


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


def main() -> None:
    args = parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    index = dictionary(args)
    print(f"dictionary: {len(index):,} unique patches, {index.meta.n_trees} trees, search_k {index.search_k}",
          flush=True)
    frames = render_synth_frames(np.random.default_rng([args.seed, 2]), args.frames, args.size)
    raw = corrupt(frames["labels"], np.random.default_rng([args.seed, 1]), args.noise)

    runners = ["beam", "local"] if args.runner == "both" else [args.runner]
    runs, reference, identical = [], None, True
    args.work_dir.mkdir(parents=True, exist_ok=True)
    for repeat in range(args.repeats):
        for runner in runners:
            for workers in worker_counts:
                load_before = os.getloadavg()[0]
                with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
                    seconds, cpu, results = run_once(index, frames, raw, args.chunk, workers, runner, Path(work_dir))
                reference = reference if reference is not None else results
                identical = identical and same(results, reference)
                runs.append({"repeat": repeat, "runner": runner, "workers": workers, "seconds": round(seconds, 2),
                             "frames_per_s": round(args.frames / seconds, 2), "cpu_seconds": round(cpu, 2),
                             "cores_used": round(cpu / seconds, 2), "load_before": load_before,
                             "load_after": os.getloadavg()[0]})
                print(runs[-1], flush=True)

    print(json.dumps({
        "benchmark": "beam_restore",
        "frames": args.frames,
        "chunk_frames": args.chunk,
        "dictionary_patches": len(index),
        "search_k": index.search_k,
        "cpus": os.cpu_count(),
        **{runner: summary([run for run in runs if run["runner"] == runner], args.frames) for runner in runners},
        "identical_results": identical,
        "runs": runs,
    }))


def summary(runs: list[dict], frames: int) -> dict:
    """Medians over the repeats of one runner, per worker count, and the speed-up over 1 worker."""
    counts = sorted({run["workers"] for run in runs})
    median = {key: {w: statistics.median(run[key] for run in runs if run["workers"] == w) for w in counts}
              for key in ("seconds", "cpu_seconds", "cores_used")}
    base = median["seconds"].get(1)
    return {
        "median_seconds": {str(w): round(s, 2) for w, s in median["seconds"].items()},
        "median_frames_per_s": {str(w): round(frames / s, 2) for w, s in median["seconds"].items()},
        "median_cpu_seconds": {str(w): round(s, 2) for w, s in median["cpu_seconds"].items()},
        "median_cores_used": {str(w): round(s, 2) for w, s in median["cores_used"].items()},
        "speedup_over_1_worker": {str(w): round(base / s, 2) for w, s in median["seconds"].items()} if base else None,
    }


if __name__ == "__main__":
    main()
