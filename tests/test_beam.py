"""Data sets and restorations made on Apache Beam (the local FnApiRunner, 2 worker processes) vs the local path."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from apache_beam.io.filesystem import MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.runners.portability import prism_runner

from conftest import TINY_SIZE, assert_one_line_error
from interruptions import Interrupt
from keras_hpe.beam import BeamJob, BeamRunner, local_folder, read_staged, staged_path
from keras_hpe.cli.main import main
from keras_hpe.data.sensor import generate_sensor
from keras_hpe.restoration import pseudo_labels
from keras_hpe.restoration.index import PatchIndex
from keras_hpe.restoration.pseudo_labels import SUMMARY_NAME, restore_dataset
from keras_hpe.restoration.restore import restore_frames

TWO_WORKERS = BeamRunner.from_options(["direct_num_workers=2"])


def files(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` by its relative path: hidden leftovers (staging, locks) would show too."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_default_runner_is_the_local_fn_api_runner_with_the_workers_asked_for():
    assert BeamRunner.from_options(workers=3).flags == (
        "--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3")
    assert TWO_WORKERS.flags[-1] == "--direct_num_workers=2"  # a --beam-option comes last: it wins
    runner = BeamRunner.from_options(["runner=DataflowRunner", "temp_location=gs://b/tmp", "save_main_session"])
    assert runner.flags == ("--runner=DataflowRunner", "--temp_location=gs://b/tmp", "--save_main_session")
    assert runner.temp_location == "gs://b/tmp" and TWO_WORKERS.temp_location is None


class WorkerPid:
    """Work that tells which process ran it."""

    def setup(self) -> None:
        self.pid = os.getpid()

    def __call__(self, key: int) -> dict[str, np.ndarray]:
        return {"pid": np.array([self.pid])}


def test_items_run_in_two_worker_processes_and_never_on_prism(tmp_path, monkeypatch):
    def no_prism(*args, **kwargs):
        raise AssertionError("the PrismRunner was tried (it downloads a binary)")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    # The workers import this module to unpickle WorkerPid.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    with BeamJob(TWO_WORKERS, tmp_path / "staging") as job:
        pids = {int(arrays["pid"][0]) for _, arrays in job.run(WorkerPid(), range(8))}
    assert len(pids) == 2 and os.getpid() not in pids
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone


def test_synth_and_sensor_shards_on_beam_are_the_local_ones_byte_for_byte(tmp_path, capsys):
    synth = ["data", "synth", "--n", "12", "--size", str(TINY_SIZE), "--seed", "3", "--out"]
    assert main([*synth, str(tmp_path / "synth_local")]) == 0
    assert main([*synth, str(tmp_path / "synth_beam"), "--runner", "beam", "--workers", "2"]) == 0
    assert "synth: 12 frames" in capsys.readouterr().out
    local, beam = files(tmp_path / "synth_local"), files(tmp_path / "synth_beam")
    assert sorted(local) == ["manifest.json", "shard-00000.npz"] and local == beam
    # Several shards, and the local multi-process path.
    generate_sensor(tmp_path / "sensor_pool", 12, seed=4, size=TINY_SIZE, shard_size=4, progress=False, workers=2)
    generate_sensor(tmp_path / "sensor_beam", 12, seed=4, size=TINY_SIZE, shard_size=4, progress=False,
                    runner=TWO_WORKERS)
    pool, beam = files(tmp_path / "sensor_pool"), files(tmp_path / "sensor_beam")
    assert sorted(pool)[1:] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"] and pool == beam


def restored_files(out: Path) -> dict[str, bytes]:
    """The files of a restored data set; the summary without this run's seconds."""
    result = files(out)
    summary = json.loads(result.pop(SUMMARY_NAME))
    assert summary.pop("seconds_this_run") >= 0
    return {**result, SUMMARY_NAME: json.dumps(summary).encode()}


@pytest.fixture(scope="module")
def local_restoration(seg_model_path, dictionary_dir, sensor_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "restored"
    restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False)
    return restored_files(out)


def test_a_restoration_on_beam_is_the_local_one_byte_for_byte(local_restoration, seg_model_path, dictionary_dir,
                                                               sensor_dir, tmp_path, capsys):
    out = tmp_path / "restored"
    assert main(["restore", "--model", str(seg_model_path), "--index", str(dictionary_dir), "--data", str(sensor_dir),
                 "--out", str(out), "--chunk", "12", "--quiet", "--runner", "beam", "--workers", "2"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["frames"] == 32
    assert {"manifest.json", "quality.csv", "shard-00000.npz"} <= set(local_restoration)
    assert restored_files(out) == local_restoration
    assert sorted(path.name for path in tmp_path.iterdir()) == ["restored"]  # no work or staging folder left


def test_a_local_restoration_killed_after_a_chunk_resumes_on_beam(local_restoration, seg_model_path, dictionary_dir,
                                                                  sensor_dir, tmp_path, monkeypatch):
    calls = []

    def dies_at_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupt()
        return restore_frames(*args, **kwargs)

    out = tmp_path / "restored"
    monkeypatch.setattr(pseudo_labels, "restore_frames", dies_at_the_second_chunk)
    with pytest.raises(Interrupt):
        restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False)
    work = tmp_path / ".restored.restore"
    assert sorted(path.name for path in work.iterdir()) == ["chunk-00000.npz", "job.json"]
    restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False,
                    runner=TWO_WORKERS)
    assert len(calls) == 2  # the Beam workers restored chunks 1 and 2 (in their own processes)
    assert restored_files(out) == local_restoration


class MirrorFileSystem(LocalFileSystem):
    """Stands for a remote file system (gs://, s3://) in this process: mirror://PATH is the local PATH."""

    @classmethod
    def scheme(cls) -> str:
        return "mirror"

    def create(self, path, *args, **kwargs):
        return super().create(local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(local(path), *args, **kwargs)

    def rename(self, sources, destinations):
        super().rename([local(p) for p in sources], [local(p) for p in destinations])

    def mkdirs(self, path):
        super().mkdirs(local(path))

    def delete(self, paths):
        for path in paths:
            shutil.rmtree(local(path))  # BeamJob deletes its staging folder only

    def match(self, patterns, limits=None):
        results = super().match([local(p) for p in patterns], limits)
        for result in results:
            for metadata in result.metadata_list:
                metadata.path = "mirror://" + metadata.path
        return [MatchResult(pattern, result.metadata_list) for pattern, result in zip(patterns, results)]


def local(path: str) -> str:
    return path.removeprefix("mirror://")


def test_with_a_remote_temp_location_the_index_is_uploaded_and_copied_once_per_worker(dictionary_dir, tmp_path):
    runner = BeamRunner.from_options([f"temp_location=mirror://{tmp_path}/bucket"])
    with BeamJob(runner, tmp_path / "unused") as job:
        assert job.staging.startswith(f"mirror://{tmp_path}/bucket/keras_hpe-")
        job.stage("input-00000", {"raw": np.arange(6, dtype=np.uint8).reshape(2, 3)})
        np.testing.assert_array_equal(read_staged(staged_path(job.staging, "input-00000"))["raw"],
                                      np.arange(6).reshape(2, 3))
        remote = job.folder(dictionary_dir)
        assert remote.startswith("mirror://")
        copy = local_folder(remote)  # on a worker
        assert local_folder(remote) == copy and not copy.startswith(str(tmp_path))
        assert files(Path(copy)) == files(dictionary_dir)
        index = PatchIndex.load(copy)
        assert len(index) == len(PatchIndex.load(dictionary_dir))
    assert list((tmp_path / "bucket").iterdir()) == []  # the job's staging folder is removed
    assert not (tmp_path / "unused").exists()
    assert local_folder(str(dictionary_dir)) == str(dictionary_dir)  # a local folder is read in place


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--runner", "beam", "--beam-option", "no_such_option=1"], "unknown Beam pipeline option(s) no_such_option"),
        (["--runner", "beam", "--beam-option", "direct_num_workers=many"], "bad Beam pipeline option"),
        (["--runner", "beam", "--beam-option", "=1"], "expected KEY=VALUE or KEY"),
        (["--runner", "beam", "--beam-option", "runner=DataflowRunner", "--workers", "2"], "--workers sizes the local"),
        (["--beam-option", "runner=FnApiRunner"], "--beam-option needs --runner beam"),
        (["--runner", "beam", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_bad_runner_options_are_one_line_errors_before_any_work(options, needle, tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--n", "4", "--size", "32", "--out", str(out), *options]) == 2
    assert_one_line_error(capsys.readouterr().err, needle)
    assert not out.exists()
