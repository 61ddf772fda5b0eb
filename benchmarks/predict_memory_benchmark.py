"""Memory of `keras-hpe predict` on thousands of frames: peak RSS at 1,000 and at 10,000 frames.

Writes full-size NYU depth PNGs (`data.nyu.write_nyu_like`: 640 x 480, a hand
of spheres before a wall) to --work, renders --distinct of them (36 ms each)
and copies those over the rest of the names (the content does not change
what predict holds in memory). Then runs `keras-hpe predict --list FILE`
on the first N frames, for each N of --frames, each in its own process, and
reads the process's peak resident memory from the kernel (`os.wait4`). The
models are --reg/--seg, or untrained ones of the default configs at --size
(memory of the stream does not depend on the weights). Prints a line per
run, then a last line of JSON. Target (issue 13): the peak at 10,000 frames
within 10 % of the peak at 1,000. Wall times are printed too; they are noisy
on a shared machine.

    python benchmarks/predict_memory_benchmark.py                  # 1,000 and 10,000 frames
    python benchmarks/predict_memory_benchmark.py --frames 1000 5000 --repeats 3
    python benchmarks/predict_memory_benchmark.py --reg runs/quick/reg_full/reg_full.keras
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_hpe.data.nyu import depth_png_name, write_nyu_like
from keras_hpe.predict import DEFAULT_BATCH, DEFAULT_OVERLAYS

TARGET_RATIO = 1.10


def write_frames(folder: Path, count: int, distinct: int) -> list[Path]:
    """`count` NYU PNGs in `folder` (kept from an earlier call), `distinct` of them rendered, the rest copies."""
    paths = [folder / depth_png_name(index) for index in range(count)]
    rendered = paths[: min(distinct, count)]
    if not all(path.is_file() for path in rendered):
        write_nyu_like(folder.parent, folder.name, len(rendered), seed=0)
    for index, path in enumerate(paths[len(rendered):], len(rendered)):
        if not path.is_file():
            shutil.copyfile(rendered[index % len(rendered)], path)
    return paths


def untrained_models(folder: Path, size: int) -> tuple[Path, Path]:
    """Untrained segmentation and regression (separate heads) models of the default configs, saved in `folder`."""
    import keras

    from keras_hpe.models.regression import RegressionConfig, build_regression
    from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model

    keras.utils.set_random_seed(0)
    seg, reg = folder / "seg.keras", folder / "reg.keras"
    build_segmentation_model(SegmentationConfig(size=size)).save(seg)
    build_regression(RegressionConfig(input_size=size), variant="separate").save(reg)
    return reg, seg


def run_predict(frames: list[Path], out: Path, models: list[str], batch: int, overlays: int) -> dict:
    """One `keras-hpe predict` process on `frames`: its peak RSS (MB) and wall seconds."""
    listing = out.parent / f"{out.name}.txt"
    listing.write_text("".join(f"{path}\n" for path in frames))
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "keras_hpe.cli.main", "predict", "--list", str(listing), *models,
               "--out", str(out), "--batch", str(batch), "--overlays", str(overlays), "--no-progress"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    errors = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed on {len(frames)} frames: {errors.strip()}")
    lines = sum(1 for _ in open(out / "joints.txt"))
    if lines != len(frames):
        raise SystemExit(f"predict wrote {lines} lines of joints for {len(frames)} frames")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": seconds}  # ru_maxrss: KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 10000],
                        help="frame counts to run, the first is the reference of the ratio (default: 1000 10000)")
    parser.add_argument("--reg", type=Path, default=None, help="regression model (default: untrained, --size)")
    parser.add_argument("--seg", type=Path, default=None, help="segmentation model (default: as predict finds it)")
    parser.add_argument("--size", type=int, default=64, help="crop size of the untrained models (default: 64)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"predict --batch (default: {DEFAULT_BATCH})")
    parser.add_argument("--overlays", type=int, default=DEFAULT_OVERLAYS,
                        help=f"predict --overlays (default: {DEFAULT_OVERLAYS})")
    parser.add_argument("--repeats", type=int, default=1, help="runs per frame count; medians reported (default: 1)")
    parser.add_argument("--distinct", type=int, default=500, help="frames rendered, the rest copies (default: 500)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the frames (kept, reused by the next run) and outputs (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="predict_memory_") as temporary:
        work = args.work or Path(temporary)
        (work / "frames").mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        frames = write_frames(work / "frames", max(args.frames), args.distinct)
        print(f"{len(frames)} frames in {work / 'frames'} ({time.perf_counter() - started:.0f} s)")
        if args.reg is None:
            reg, seg = untrained_models(work, args.size)
            models = ["--reg", str(reg), "--seg", str(seg)]
        else:
            models = ["--reg", str(args.reg), *(["--seg", str(args.seg)] if args.seg else [])]
        rows = []
        print(f"cpu count: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; batch {args.batch}, "
              f"{args.overlays} overlays")
        print("frames  peak RSS MB (median)  seconds (median)  frames/s  runs")
        for count in args.frames:
            runs = [run_predict(frames[:count], work / f"out{count}", models, args.batch, args.overlays)
                    for _ in range(args.repeats)]
            peak = float(np.median([run["peak_rss_mb"] for run in runs]))
            seconds = float(np.median([run["seconds"] for run in runs]))
            rows.append({"frames": count, "peak_rss_mb": round(peak, 1), "seconds": round(seconds, 1),
                         "frames_per_s": round(count / seconds, 1),
                         "peak_rss_mb_runs": [round(run["peak_rss_mb"], 1) for run in runs]})
            print(f"{count:>6}  {peak:>20.1f}  {seconds:>16.1f}  {count / seconds:>8.1f}  "
                  f"{rows[-1]['peak_rss_mb_runs']}")
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    meets = ratio <= TARGET_RATIO
    print(f"peak at {rows[-1]['frames']} / peak at {rows[0]['frames']} frames: {ratio:.3f} "
          f"(target <= {TARGET_RATIO:.2f}: {'meets' if meets else 'misses'}), "
          f"{rows[-1]['peak_rss_mb'] - rows[0]['peak_rss_mb']:+.1f} MB")
    print(json.dumps({"runs": rows, "ratio": round(ratio, 4), "target_ratio": TARGET_RATIO, "meets": meets,
                      "size": None if args.reg else args.size, "batch": args.batch, "overlays": args.overlays,
                      "repeats": args.repeats, "load_average": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
