"""Apache Beam runs of the per-item work of `keras-hpe data synth|sensor` and `keras-hpe restore`.

Shard i of a generated data set is a pure function of (seed, i) (`dataset.ShardRenderer`), and a
restoration chunk's verdicts and restored maps are a pure function of its predicted maps
(`pseudo_labels.restore_chunk`). The local path calls these functions in this process or in local worker
processes; `BeamJob.run` calls the very same ones in a Beam pipeline, on any runner: the local
FnApiRunner by default, Dataflow, Flink, Spark or a portable job server with `--beam-option runner=...`.

Why the driver, not the workers, writes the output: a pipeline hands nothing back to the program that
started it, and the workers of a cluster cannot see the driver's folders. So each worker writes its item's
arrays as one .npz into a staging folder (under a temporary name, then renamed, through Beam's FileSystems:
a local path, gs://, s3://, hdfs://), and once the pipeline is done the driver reads them back in order and
hands them to the writer the local path uses (`DatasetWriter.write_shard`, the restoration's chunk files).
So writing stays atomic, resumable and locked as it is locally, and a shard holds the same bytes whichever
path computed its arrays.

The staging folder is a temporary inside the locked folder being written when the runner has no
`temp_location` (local runners; the next writer of that folder removes one that a killed run left), else a
new folder under `temp_location`, which a cluster's workers must be able to reach (e.g. gs://BUCKET/tmp).
It is removed when the job ends. A folder that the workers read (the patch dictionary) is read in place
when the staging folder is local, else uploaded into it; each worker process then copies it once to a local
temporary folder (`local_folder`), where Annoy memory-maps it.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import posixpath
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, Protocol, Sequence

import numpy as np

from keras_hpe.errors import UserError
from keras_hpe.outputs import scratch_folder
from keras_hpe.quiet import filtered_stderr

# What Beam and its local worker processes write to stderr on every run: INFO logs, and notices about
# clients (BigQuery) and worker state this project does not use. Warnings and errors pass.
_BEAM_CHATTER = re.compile(r"INFO:|WARNING:root:apitools not found|.*No semi_persistent_directory found")

with filtered_stderr(_BEAM_CHATTER):
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

# Beam's default, the DirectRunner, first tries the PrismRunner, which downloads a binary.
LOCAL_RUNNER = "FnApiRunner"
_OPTION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COPY_BYTES = 1 << 24


class StagedWork(Protocol):
    """What `BeamJob.run` runs: a picklable object; `setup()` once per worker, then `work(key)` per item."""

    def setup(self) -> None: ...

    def __call__(self, key: int) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class BeamRunner:
    """A Beam runner and its pipeline options, as the `--KEY=VALUE` flags Beam parses; see `from_options`."""

    flags: tuple[str, ...]

    @classmethod
    def from_options(cls, options: Sequence[str] = (), workers: int = 1) -> "BeamRunner":
        """The runner of the command line's `--beam-option` items (KEY=VALUE, or KEY alone for a switch).

        Without a `runner` option: the local FnApiRunner with `workers` processes. With one, `workers` must
        stay 1: the runner's own options size it (Dataflow `max_num_workers`, Flink `parallelism`, ...).
        Unknown keys and values Beam cannot parse raise UserError.
        """
        if workers < 1:
            raise UserError(f"--workers must be >= 1, got {workers}")
        flags, keys = [], []
        for item in options:
            key, equals, value = item.partition("=")
            if not _OPTION_KEY.fullmatch(key):
                raise UserError(f"--beam-option {item!r}: expected KEY=VALUE or KEY, e.g. runner=DataflowRunner")
            keys.append(key)
            flags.append(f"--{key}={value}" if equals else f"--{key}")
        if "runner" not in keys:
            flags = [f"--runner={LOCAL_RUNNER}", "--direct_running_mode=multi_processing",
                     f"--direct_num_workers={workers}", *flags]
        elif workers != 1:
            raise UserError("--workers sizes the local Beam runner; with --beam-option runner=... use that "
                            "runner's own options (e.g. max_num_workers on Dataflow, parallelism on Flink)")
        runner = cls(tuple(flags))
        runner._all_options()
        return runner

    def pipeline_options(self) -> PipelineOptions:
        return PipelineOptions(list(self.flags))

    @property
    def temp_location(self) -> str | None:
        return self._all_options().get("temp_location")

    def _all_options(self) -> dict:
        """Every pipeline option's value; UserError for an unknown option or a value Beam cannot parse."""
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                values = self.pipeline_options().get_all_options(retain_unknown_options=True)
        except SystemExit:  # argparse's way of refusing a value
            reason = (errors.getvalue().strip().splitlines() or ["cannot parse"])[-1]
            raise UserError(f"bad Beam pipeline option in {' '.join(self.flags)}: {reason}") from None
        unknown = sorted(set(values) - set(PipelineOptions([]).get_all_options()))
        if unknown:
            raise UserError(f"unknown Beam pipeline option(s) {', '.join(unknown)}: see the options of "
                            "apache_beam.options.pipeline_options and of your runner")
        return values


class BeamJob:
    """One Beam run and its staging folder, as a context manager: stage inputs, run, read the results.

    Args:
        runner: the runner and its options.
        local_staging: the staging folder's path when the runner has no `temp_location`: inside the
            locked folder the caller writes, so that its next `folder_lock` removes a killed run's.
    """

    def __init__(self, runner: BeamRunner, local_staging: Path) -> None:
        self.runner = runner
        self._local_staging = Path(local_staging)
        self._exit = contextlib.ExitStack()
        self.staging = ""

    def __enter__(self) -> "BeamJob":
        root = self.runner.temp_location
        if root is None:
            self.staging = str(self._exit.enter_context(scratch_folder(self._local_staging)))
        else:
            self.staging = FileSystems.join(root, f"keras_hpe-{uuid.uuid4().hex}")
            FileSystems.mkdirs(self.staging)
            self._exit.callback(FileSystems.delete, [self.staging.rstrip("/") + "/"])
        return self

    def __exit__(self, *exc_info) -> None:
        self._exit.close()

    def stage(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Put `arrays` in the staging folder under `name`, for the workers (`read_staged(staged_path(...))`)."""
        write_staged(staged_path(self.staging, name), arrays)

    def folder(self, local: Path) -> str:
        """Where the workers find the driver's folder `local`: itself if staging is local, else an uploaded copy."""
        if _is_local(self.staging):
            return str(Path(local).resolve())
        target = FileSystems.join(self.staging, Path(local).name)
        for file in sorted(Path(local).iterdir()):
            if file.is_file():
                with open(file, "rb") as source, _create(FileSystems.join(target, file.name)) as copy:
                    shutil.copyfileobj(source, copy, _COPY_BYTES)
        return target

    def run(self, work: StagedWork, keys: Sequence[int]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Run `work(key)` for every key in one pipeline; then yield (key, its arrays) in the order of `keys`."""
        keys = [int(key) for key in keys]
        if keys:
            with filtered_stderr(_BEAM_CHATTER), beam.Pipeline(options=self.runner.pipeline_options()) as pipeline:
                # Reshuffle: without it the runner fuses the work with Create and runs it all on one worker.
                _ = (pipeline | "items" >> beam.Create(keys) | "spread" >> beam.Reshuffle()
                     | "work" >> beam.ParDo(_StageResult(work, self.staging)))
        for key in keys:
            yield key, read_staged(staged_path(self.staging, _result_name(key)))


class _StageResult(beam.DoFn):
    """Runs `work` on each key and stages its arrays; `work.setup()` runs once per worker, in `setup`."""

    def __init__(self, work: StagedWork, staging: str) -> None:
        super().__init__()
        self._work = work
        self._staging = staging

    def setup(self) -> None:
        self._work.setup()

    def process(self, key: int) -> Iterator[int]:
        write_staged(staged_path(self._staging, _result_name(key)), self._work(key))
        yield key


def staged_path(staging: str, name: str) -> str:
    return FileSystems.join(staging, f"{name}.npz")


def write_staged(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` as an .npz at `path` (a path of any Beam file system): a temporary name, then a rename."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with _create(tmp) as f:
        f.write(buffer.getvalue())
    FileSystems.rename([tmp], [path])


def read_staged(path: str) -> dict[str, np.ndarray]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    with np.load(io.BytesIO(data)) as archive:
        return {name: archive[name] for name in archive.files}


_LOCAL_COPIES: dict[str, str] = {}
_LOCAL_COPIES_LOCK = threading.Lock()


def local_folder(path: str) -> str:
    """`path` if it is a folder on this machine, else a copy of its files in a local temporary folder.

    The copy is made once per process (its DoFn instances share it) and removed when the process exits.
    """
    if _is_local(path) and os.path.isdir(path):
        return path
    with _LOCAL_COPIES_LOCK:
        if path not in _LOCAL_COPIES:
            target = tempfile.mkdtemp(prefix="keras_hpe_copy_")
            atexit.register(shutil.rmtree, target, True)
            for match in FileSystems.match([FileSystems.join(path, "*")])[0].metadata_list:
                name = posixpath.basename(match.path.rstrip("/"))
                with (FileSystems.open(match.path, compression_type=CompressionTypes.UNCOMPRESSED) as source,
                      open(os.path.join(target, name), "wb") as copy):
                    shutil.copyfileobj(source, copy, _COPY_BYTES)
            _LOCAL_COPIES[path] = target
        return _LOCAL_COPIES[path]


def _result_name(key: int) -> str:
    return f"result-{key:05d}"


def _create(path: str) -> BinaryIO:
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None
