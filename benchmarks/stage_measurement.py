"""One stage of `keras-hpe reproduce`, run in a process of its own and measured (scaling_benchmark.py).

`measure` runs the stage through `reproduce.run_stage`, the code a reproduction runs, and records

- seconds: as the stage's stage.json records them (a reproduction's "seconds" are the same measure), and the
  CPU seconds of the process and its workers;
- peak memory: the larger of the highest sum of proportional set sizes (PSS) over the process and its
  restoration workers, sampled every 0.2 s, and the kernel's peak RSS of one process (`os.wait4`);
- disk: the bytes of the stage's folder (the export's and the report's outside OUT);
- the load: the 1-minute load average before and after it, and the cores other processes kept busy while
  it ran (the machine's busy time from /proc/stat less the stage's own CPU time, over its wall time).

`wait_for_quiet` waits until other processes leave the cores alone, for at most a given time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe.reproduce import STAGE_FILE, ReproducePlan  # noqa: E402

SAMPLE_SECONDS = 0.2
QUIET_SECONDS = 5  # the window over which other processes' use of the cores is judged
TICKS = os.sysconf("SC_CLK_TCK")


def child(spec: dict) -> None:
    """Run one stage of a plan (in the process being measured) and print its record as JSON."""
    from keras_hpe.reproduce import StageRecord, build_stages, run_stage

    plan = ReproducePlan(**{**spec["plan"], "table2_methods": tuple(spec["plan"]["table2_methods"])})
    out = Path(spec["out"])
    stages = {stage.name: stage for stage in build_stages(plan, reports_dir=out / "_reports",
                                                          saved_models_dir=out / "_saved", seed=0)}
    stage = stages[spec["stage"]]
    records, fingerprints = {}, {}
    for name in stage.inputs:
        done = json.loads((out / name / STAGE_FILE).read_text())
        records[name] = StageRecord(name, False, done["seconds"], out / name, done["result"])
        fingerprints[name] = done["fingerprint"]
    record, _ = run_stage(stage, out, fingerprints, records, progress=False)
    print(json.dumps({"seconds": record.seconds, "ran": record.ran, "result": record.result}))


def process_tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return pids


def pss_bytes(pid: int) -> int:
    """The proportional set size of a process: shared pages (a memory-mapped index) count once over its sharers."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS  # user..steal, less idle and iowait


def others_cores(seconds: float = QUIET_SECONDS) -> float:
    """Cores other processes keep busy now (this one sleeps meanwhile)."""
    started, busy = time.perf_counter(), busy_cpu_seconds()
    time.sleep(seconds)
    return (busy_cpu_seconds() - busy) / (time.perf_counter() - started)


def wait_for_quiet(max_others: float | None, max_wait: float) -> None:
    """Wait until other processes use fewer than `max_others` cores, or `max_wait` seconds have passed."""
    if max_others is None:
        return
    started = time.monotonic()
    while (busy := others_cores()) >= max_others and time.monotonic() - started < max_wait:
        print(f"  other processes use {busy:.2f} cores (load average {os.getloadavg()[0]:.2f}): waiting", flush=True)


def measure(plan: ReproducePlan, stage: str, out: Path) -> dict:
    """Run `stage` of `plan` in OUT in a child process (its inputs' folders are there); its seconds, peak memory,
    disk, load and stage result."""
    spec = json.dumps({"plan": asdict(plan), "stage": stage, "out": str(out)})
    load_before = os.getloadavg()
    busy_before = busy_cpu_seconds()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, loads, done = [0], [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(pss_bytes(pid) for pid in process_tree(process.pid)))
            loads.append(os.getloadavg()[0])
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((process.stdout, stdout), (process.stderr, stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    # The child's CPU time includes its restoration workers', which it waited for.
    cpu = usage.ru_utime + usage.ru_stime
    others = (busy_cpu_seconds() - busy_before - cpu) / wall
    done.set()
    for thread in (sampler, *readers):
        thread.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{plan.name}/{stage} failed:\n{stderr[0].decode()[-3000:]}")
    record = json.loads(stdout[0].decode().strip().splitlines()[-1])
    rss = usage.ru_maxrss * 1024  # KiB on Linux
    return {
        "stage": stage, "seconds": record["seconds"], "ran": record["ran"],
        "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_pss_bytes": peak[0], "peak_rss_bytes": rss,
        "memory_bytes": max(peak[0], rss), "disk_bytes": stage_disk_bytes(out, stage, record["result"]),
        "load_before": [round(value, 2) for value in load_before],
        "load_during": round(float(np.mean(loads)), 2) if loads else None,
        "load_after": [round(value, 2) for value in os.getloadavg()], "others_cores": round(max(others, 0.0), 3),
        "result": record["result"],
    }


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in Path(path).rglob("*") if item.is_file() and not item.is_symlink())


def stage_disk_bytes(out: Path, stage: str, result: dict) -> int:
    if stage == "export":
        return folder_bytes(Path(result["export_path"]))
    if stage == "report":
        return folder_bytes(out / "_reports")
    return folder_bytes(out / stage)


if __name__ == "__main__":
    child(json.loads(sys.argv[1]))
