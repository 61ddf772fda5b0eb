"""Pseudo ground truth for the real domain (paper sections 3.1-3.2): predict -> restore -> gate -> data set.

`restore_dataset` segments the real training frames with the stage-1 network,
restores each prediction against the patch dictionary, scores the raw and the
restored map with the barycenter quality against the annotated joints, and
writes the ACCEPTED frames as a data set (domain "sensor") whose `labels` are
the restored maps: the input of stage 2.

The real training data's `labels` field is never read, even when present:
training in the real domain knows depth and joints only.

The run works chunk by chunk in a sibling work folder `.OUT.restore/` (one
atomically written file per chunk, plus the job's identity), so a killed run
resumes where it stopped; the output folder appears at the end, complete, in
one rename. A chunk's file holds what `restore_chunk` returns, whether this
process and its worker processes computed it or the workers of a Beam runner
(`restored_chunks`, `keras_hpe.beam`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

import keras_hpe
from keras_hpe.outputs import LOCK_NAME, atomic_path, folder_lock, recorded_path, write_text
from keras_hpe.data.camera import Camera
from keras_hpe.data.dataset import FIELD_DTYPES, MANIFEST_NAME, DatasetWriter, load_frames, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.faults import crash_point
from keras_hpe.restoration.index import PatchIndex
from keras_hpe.restoration.quality import gate_restorations
from keras_hpe.restoration.restore import METHODS, RestorationPool, restore_frames

if TYPE_CHECKING:
    from keras_hpe.beam import BeamRunner

QUALITY_NAME = "quality.csv"
SUMMARY_NAME = "restore_summary.json"
JOB_NAME = "job.json"
# The real frames' fields the restoration may read: never `labels`.
INPUT_FIELDS = ("depth_mm", "center_uvd", "joints_xyz")
OUTPUT_FIELDS = ("depth_mm", "labels", "joints_uvd", "joints_xyz", "center_uvd")
CHUNK_FRAMES = 256  # frames restored, saved and resumed together; the restored set has a shard per chunk
_QUALITY_COLUMNS = ("frame", "raw_quality_mm", "restored_quality_mm", "accepted")


@dataclass
class RestoreResult:
    """What `restore_dataset` wrote: the accepted frames' data set, quality.csv and the summary."""

    out_dir: Path
    quality_path: Path
    summary_path: Path
    summary: dict

    @property
    def rejection_rate(self) -> float:
        return float(self.summary["rejection_rate"])


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (identifies the model a data set was made with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def restore_dataset(
    model_path: str | Path,
    index: PatchIndex | str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str = "integrate",
    patch: int = 7,
    window: int = 5,
    workers: int = 1,
    chunk_frames: int = CHUNK_FRAMES,
    batch_size: int = 64,
    progress: bool = True,
    run_dir: str | Path | None = None,
    runner: BeamRunner | None = None,
) -> RestoreResult:
    """Restore the segmentation of every real frame of `data_dir`; write the accepted ones to `out_dir`.

    Args:
        model_path: the stage-1 segmentation model (.keras); its crop size must be the data's.
        index: a loaded `PatchIndex` or its folder (opened with `patch`).
        data_dir: real training frames with depth_mm, center_uvd and joints_xyz (labels are ignored).
        out_dir: the data set to write: depth_mm, joints_*, center_uvd and the restored maps as `labels`.
        method: a restoration method of `restore.METHODS` ("none" accepts nothing: it never improves).
        window: W of eq. 2.
        workers: restoration processes of the local path.
        chunk_frames: frames predicted, restored and saved per step (the unit of resuming).
        batch_size: frames per inference batch.
        progress: show a progress bar.
        run_dir: a reproduction's run folder: the job records the paths inside it relative to it,
            so a moved folder still holds the same job (and resumes it).
        runner: restore on Apache Beam instead (`keras_hpe.beam`; this process predicts, the runner's
            workers restore and gate); the result is the same, bit for bit, and so is the job: a run
            interrupted on one path resumes on the other.
    An existing finished `out_dir` made by the same job is returned as it is; any other existing
    `out_dir` is refused.
    """
    from keras_hpe.models.segmentation import model_crop_size, predict_parts
    from keras_hpe.training.seg import load_segmentation_model

    if method not in METHODS:
        raise UserError(f"unknown restoration method {method!r}; known: {', '.join(METHODS)}")
    if chunk_frames < 1 or batch_size < 1 or workers < 1:
        raise UserError(
            f"chunk_frames, batch_size and workers must be >= 1, got {chunk_frames}, {batch_size}, {workers}"
        )
    data_dir, out_dir, model_path = Path(data_dir), Path(out_dir), Path(model_path)
    manifest = read_manifest(data_dir)
    missing = [name for name in INPUT_FIELDS if name not in manifest.fields]
    if missing:
        raise UserError(f"data set {data_dir} lacks the field(s) {', '.join(missing)} the restoration needs")
    if not isinstance(index, PatchIndex):
        index = PatchIndex.load(index, patch)
    model = load_segmentation_model(model_path)
    size = model_crop_size(model)
    if manifest.size != size:
        raise UserError(
            f"data set {data_dir} holds {manifest.size}x{manifest.size} crops but the model {model_path} "
            f"takes {size}x{size}"
        )
    job = {
        "method": method,
        "window": int(window),
        "chunk_frames": int(chunk_frames),
        "model": {"path": recorded_path(model_path.resolve(), run_dir), "sha256": file_sha256(model_path)},
        "index": {"path": recorded_path(Path(index.directory).resolve(), run_dir), "search_k": index.search_k,
                  "propagation_steps": index.propagation_steps,
                  "meta": {k: v for k, v in index.meta.to_dict().items() if k != "build_seconds"}},
        "source": {"path": recorded_path(data_dir.resolve(), run_dir),
                   "manifest": {k: v for k, v in manifest.to_dict().items() if k != "shards"}},
        "version": keras_hpe.__version__,
    }
    job = json.loads(json.dumps(job))  # tuples -> lists, as read back from JSON
    finished = _finished_result(out_dir, job)
    if finished is not None:
        return finished
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir} exists and is not the result of this restoration; choose another output folder")
    # One restoration per output folder at a time: a second process gets a UserError.
    with folder_lock(_work_dir(out_dir), "restoration work folder"):
        work_dir = _claim_work_dir(out_dir, job)

        chunks = [np.arange(start, min(start + chunk_frames, manifest.count))
                  for start in range(0, manifest.count, chunk_frames)]
        missing = [chunk for chunk in range(len(chunks)) if not (work_dir / _chunk_name(chunk)).exists()]
        fields = [*INPUT_FIELDS, *_optional(manifest, "joints_uvd")]
        options = dict(method=method, window=window, cube_mm=manifest.cube_mm, camera=manifest.camera_model)

        def predicted(chunk: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
            arrays = load_frames(data_dir, chunks[chunk], fields)
            raw = predict_parts(model, arrays["depth_mm"], arrays["center_uvd"][:, 2], batch_size)[1]
            return chunks[chunk], arrays, raw

        done = manifest.count - sum(len(chunks[chunk]) for chunk in missing)
        started = time.perf_counter()
        with tqdm(total=manifest.count, initial=done, unit="frame", desc=f"restore real frames ({method})",
                  disable=not progress) as bar, \
                restored_chunks(missing, predicted, index, options, workers, runner, work_dir, progress) as records:
            for chunk, record in records:
                _save_chunk(work_dir / _chunk_name(chunk), record)
                crash_point("restore.chunk", out_dir)
                bar.update(len(record["frame"]))
        seconds = time.perf_counter() - started
        return _assemble(out_dir, work_dir, job, manifest, len(chunks), seconds)


def _optional(manifest, name: str) -> list[str]:
    return [name] if name in manifest.fields else []


def _chunk_name(chunk: int) -> str:
    return f"chunk-{chunk:05d}.npz"


def _work_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.restore"


def _claim_work_dir(out_dir: Path, job: dict) -> Path:
    """The work folder of this job: resumed if it holds the same job, refused if another."""
    work_dir = _work_dir(out_dir)
    job_path = work_dir / JOB_NAME
    if job_path.exists():
        try:
            previous = json.loads(job_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"{job_path} is not valid JSON ({error}); delete {work_dir} to start over") from None
        if not isinstance(previous, dict) or previous != job:
            previous = previous if isinstance(previous, dict) else {}
            changed = sorted(key for key in job if previous.get(key) != job[key])
            raise UserError(
                f"{work_dir} holds an interrupted restoration with other parameters (different: "
                f"{', '.join(changed)}); delete it to start over"
            )
        return work_dir
    if any(path.name != LOCK_NAME for path in work_dir.iterdir()):
        raise UserError(f"{work_dir} exists and is not a restoration work folder; delete it")
    write_text(job_path, json.dumps(job, indent=2))
    return work_dir


def restore_chunk(
    frames: np.ndarray,
    arrays: dict[str, np.ndarray],
    raw: np.ndarray,
    index: PatchIndex,
    *,
    method: str,
    window: int,
    cube_mm: float,
    camera: Camera,
    pool: RestorationPool | None = None,
) -> dict[str, np.ndarray]:
    """Restore and gate one chunk of predicted maps: the arrays of its chunk file.

    `frames` are the chunk's frame numbers, `arrays` their fields (`INPUT_FIELDS`, and joints_uvd if the
    data have it), `raw` their predicted maps. Returns every frame's verdict (frame, raw_quality_mm,
    restored_quality_mm, accepted) and the accepted frames' fields with their restored maps as `labels`.
    A pure function of its inputs: the local path and the Beam workers (`ChunkRestorer`) both call it.
    """
    restored = restore_frames(raw, index, method=method, window=window, pool=pool)
    gate = gate_restorations(raw, restored, arrays["depth_mm"], arrays["center_uvd"], arrays["joints_xyz"],
                             cube_mm=cube_mm, camera=camera)
    keep = gate.accepted
    accepted = {name: arrays[name][keep].astype(FIELD_DTYPES[name]) for name in arrays}
    accepted["labels"] = restored[keep].astype(np.uint8)
    return {"frame": frames, "raw_quality_mm": gate.raw_quality_mm, "restored_quality_mm": gate.restored_quality_mm,
            "accepted": keep, **accepted}


class ChunkRestorer:
    """`restore_chunk` of a chunk staged for a Beam run (`keras_hpe.beam.StagedWork`).

    `setup` opens the index once per worker, memory-mapped from a local copy of its folder
    (`beam.local_folder`); a call reads the staged chunk `_input_name(chunk)`: its frame numbers,
    predicted maps (`raw`) and fields.
    """

    def __init__(self, staging: str, index_folder: str, patch: int, search_k: int, options: dict) -> None:
        self.staging = staging
        self.index_folder = index_folder
        self.patch = patch
        self.search_k = search_k
        self.options = options
        self.index: PatchIndex | None = None

    def setup(self) -> None:
        from keras_hpe.beam import local_folder

        self.index = PatchIndex.load(local_folder(self.index_folder), self.patch, search_k=self.search_k)

    def __call__(self, chunk: int) -> dict[str, np.ndarray]:
        from keras_hpe.beam import read_staged, staged_path

        arrays = read_staged(staged_path(self.staging, _input_name(chunk)))
        frames, raw = arrays.pop("frame"), arrays.pop("raw")
        return restore_chunk(frames, arrays, raw, self.index, **self.options)


@contextlib.contextmanager
def restored_chunks(
    missing: list[int],
    predicted: Callable[[int], tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]],
    index: PatchIndex,
    options: dict,
    workers: int,
    runner: BeamRunner | None,
    work_dir: Path,
    progress: bool,
) -> Iterator[Iterator[tuple[int, dict[str, np.ndarray]]]]:
    """The work of `restore_dataset`: (chunk, its `restore_chunk` arrays) for the `missing` chunks, in order.

    Args:
        missing: the chunk numbers to restore.
        predicted: chunk -> (frame numbers, fields, predicted maps); it runs in this process.
        index, options: the dictionary and `restore_chunk`'s keyword arguments.
        workers, runner: `workers` processes of a local `RestorationPool` (1: this process alone), or,
            if `runner` is given, its Beam workers: this process then first predicts and stages every
            missing chunk (the workers need no TensorFlow), in a temporary inside `work_dir`.
        progress: show a progress bar over the chunks predicted for Beam.
    """
    if runner is None:
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(RestorationPool(index, workers)) if workers > 1 and missing else None
            yield ((chunk, restore_chunk(*predicted(chunk), index, pool=pool, **options)) for chunk in missing)
        return
    from keras_hpe.beam import BeamJob

    with BeamJob(runner, work_dir / "beam-staging") as job:
        for chunk in tqdm(missing, unit="chunk", desc="predict and stage", disable=not progress or not missing):
            frames, arrays, raw = predicted(chunk)
            job.stage(_input_name(chunk), {"frame": frames, "raw": raw, **arrays})
        restorer = ChunkRestorer(job.staging, job.folder(Path(index.directory)), index.patch, index.search_k, options)
        yield job.run(restorer, missing)


def _input_name(chunk: int) -> str:
    return f"input-{chunk:05d}"


def _save_chunk(path: Path, record: dict[str, np.ndarray]) -> None:
    """One chunk's `restore_chunk` arrays, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **record)


def _assemble(out_dir: Path, work_dir: Path, job: dict, manifest, chunks: int, seconds: float) -> RestoreResult:
    """Write the accepted frames' data set, quality.csv and the summary in one atomic step."""
    verdicts = {column: [] for column in _QUALITY_COLUMNS}
    for chunk in range(chunks):
        with np.load(work_dir / _chunk_name(chunk)) as part:
            for column in _QUALITY_COLUMNS:
                verdicts[column].append(part[column])
    verdicts = {column: np.concatenate(values) for column, values in verdicts.items()}
    accepted = verdicts["accepted"]
    if not accepted.any():
        raise UserError(
            f"no restored map of {work_dir} improved on its raw prediction (method {job['method']!r}): "
            "nothing to fine-tune on"
        )
    summary = {
        "frames": int(accepted.size),
        "accepted": int(accepted.sum()),
        "rejected": int((~accepted).sum()),
        "rejection_rate": float(1.0 - accepted.mean()),
        "paper_rejection_rate": "5-10%",
        # Over the maps that show a part (a map without any has quality infinity).
        **{f"mean_{kind}_quality_mm": _finite_mean(verdicts[f"{kind}_quality_mm"]) for kind in ("raw", "restored")},
        "seconds_this_run": round(seconds, 1),
        "job": job,
    }
    counts = {key: summary[key] for key in ("frames", "accepted", "rejected", "rejection_rate")}
    fields = [name for name in OUTPUT_FIELDS if name == "labels" or name in manifest.fields]
    # An empty out_dir (checked by restore_dataset) may be replaced; anything else was refused there.
    with atomic_path(out_dir, replace_folder=lambda path: not any(path.iterdir())) as tmp:
        with DatasetWriter(tmp, domain=manifest.domain, size=manifest.size, seed=manifest.seed, fields=fields,
                           cube_mm=manifest.cube_mm, camera=manifest.camera_model,
                           params={"restoration": job, "counts": counts}) as writer:
            shard = 0
            for chunk in range(chunks):
                with np.load(work_dir / _chunk_name(chunk)) as part:
                    if part["accepted"].any():
                        writer.write_shard(shard, {name: part[name] for name in fields})
                        shard += 1
            _write_quality_csv(tmp / QUALITY_NAME, verdicts)
            write_text(tmp / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
            writer.finish()
    shutil.rmtree(work_dir)
    return RestoreResult(out_dir, out_dir / QUALITY_NAME, out_dir / SUMMARY_NAME, summary)


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _write_quality_csv(path: Path, verdicts: dict[str, np.ndarray]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(_QUALITY_COLUMNS)
    writer.writerows(zip(verdicts["frame"].tolist(), np.round(verdicts["raw_quality_mm"], 3).tolist(),
                         np.round(verdicts["restored_quality_mm"], 3).tolist(),
                         verdicts["accepted"].astype(int).tolist()))
    write_text(path, text.getvalue())


def read_quality_csv(path: str | Path) -> dict[str, np.ndarray]:
    """`quality.csv` of a restoration back as arrays: frame, raw_quality_mm, restored_quality_mm, accepted (bool)."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the restoration's quality table {path}: {error}") from None
    header = tuple(rows[0]) if rows else ()
    if header != _QUALITY_COLUMNS:
        raise UserError(f"{path}: expected the columns {', '.join(_QUALITY_COLUMNS)}, got {', '.join(header)}")
    try:
        values = np.array(rows[1:], dtype=np.float64).reshape(-1, len(_QUALITY_COLUMNS))
    except ValueError as error:
        raise UserError(f"cannot read the restoration's quality table {path}: {error}") from None
    columns = dict(zip(_QUALITY_COLUMNS, values.T))
    return {**columns, "frame": columns["frame"].astype(np.int64), "accepted": columns["accepted"] > 0}


def _finished_result(out_dir: Path, job: dict) -> RestoreResult | None:
    """The result already in `out_dir` if the same job made it, else None."""
    if not (out_dir / MANIFEST_NAME).exists() or not (out_dir / SUMMARY_NAME).exists():
        return None
    if read_manifest(out_dir).params.get("restoration") != job:
        return None
    summary = json.loads((out_dir / SUMMARY_NAME).read_text())
    return RestoreResult(out_dir, out_dir / QUALITY_NAME, out_dir / SUMMARY_NAME, summary)


def read_restored_manifest(path: str | Path):
    """The manifest of a data set written by `restore_dataset`; UserError for any other folder."""
    manifest = read_manifest(path)
    job = manifest.params.get("restoration")
    if not isinstance(job, dict) or not isinstance(job.get("method"), str) or "labels" not in manifest.fields:
        raise UserError(f"{path} is not a restored data set (made by `keras-hpe restore`): no restoration params")
    return manifest
