"""The restore step over a real data set: predict -> restore -> quality gate -> data set on disk."""

import json
import shutil

import keras
import numpy as np
import pytest

from keras_hpe.data import dataset as dataset_module
from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import predict_parts
from keras_hpe.restoration import pseudo_labels
from keras_hpe.restoration.index import PatchIndex
from keras_hpe.restoration.pseudo_labels import (
    QUALITY_NAME,
    SUMMARY_NAME,
    file_sha256,
    read_quality_csv,
    restore_dataset,
)
from keras_hpe.restoration.quality import barycenter_qualities
from keras_hpe.restoration.restore import restore_frames

@pytest.fixture(scope="module")
def restored(seg_model_path, dictionary_dir, sensor_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("restored") / "restored"
    return restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False)


def test_only_accepted_frames_are_written_with_their_restored_maps(restored, seg_model_path, dictionary_dir, sensor_dir):
    source = load_arrays(sensor_dir)
    model = keras.saving.load_model(seg_model_path)
    raw = predict_parts(model, source["depth_mm"], source["center_uvd"][:, 2])[1]
    expected = restore_frames(raw, PatchIndex.load(dictionary_dir))
    args = (source["depth_mm"], source["center_uvd"], source["joints_xyz"])
    raw_quality, restored_quality = barycenter_qualities(raw, *args), barycenter_qualities(expected, *args)
    accepted = restored_quality < raw_quality
    assert 0 < accepted.sum() < len(accepted)  # the gate did reject something: the test checks it

    quality = read_quality_csv(restored.quality_path)
    assert quality["frame"].tolist() == list(range(32))
    np.testing.assert_array_equal(quality["accepted"], accepted)
    np.testing.assert_allclose(quality["raw_quality_mm"], raw_quality, atol=1e-3)
    np.testing.assert_allclose(quality["restored_quality_mm"], restored_quality, atol=1e-3)

    out = load_arrays(restored.out_dir)
    assert len(out["depth_mm"]) == accepted.sum()
    for name in ("depth_mm", "joints_uvd", "joints_xyz", "center_uvd"):
        np.testing.assert_array_equal(out[name], source[name][accepted])
    np.testing.assert_array_equal(out["labels"], expected[accepted])
    # A part only where there is depth; label 0 with depth is not hand (the network said so, restoration kept it).
    assert not np.any((out["labels"] > 0) & (out["depth_mm"] == 0))
    assert np.any((out["labels"] == 0) & (out["depth_mm"] > 0))


def test_manifest_and_summary_record_the_job(restored, seg_model_path, sensor_dir):
    manifest = read_manifest(restored.out_dir)
    assert manifest.domain == "sensor" and manifest.size == 32
    job = manifest.params["restoration"]
    assert job["method"] == "integrate" and job["model"]["sha256"] == file_sha256(seg_model_path)
    assert job["index"]["meta"]["patch"] == 7 and job["source"]["manifest"]["count"] == 32
    summary = json.loads((restored.out_dir / SUMMARY_NAME).read_text())
    assert summary["frames"] == 32 and summary["accepted"] == manifest.count
    assert manifest.params["counts"]["accepted"] == manifest.count
    assert summary["rejection_rate"] == pytest.approx(1 - manifest.count / 32)
    assert not (restored.out_dir.parent / ".restored.restore").exists()  # work folder cleaned up


def test_real_labels_are_never_read(seg_model_path, dictionary_dir, sensor_eval_dir, tmp_path, monkeypatch):
    load_shard = dataset_module._load_shard

    def no_labels(path, fields):
        assert "labels" not in fields, "the restoration read the real frames' labels"
        return load_shard(path, fields)

    monkeypatch.setattr(dataset_module, "_load_shard", no_labels)
    result = restore_dataset(seg_model_path, dictionary_dir, sensor_eval_dir, tmp_path / "out", progress=False)
    assert result.summary["frames"] == 16


class Interrupt(Exception):
    """Stands for a killed process."""


def counted_restore(calls: list, die_at: int | None = None):
    """`restore_frames` that counts its calls in `calls` and raises Interrupt at call number `die_at`."""

    def restore(*args, **kwargs):
        calls.append(1)
        if len(calls) == die_at:
            raise Interrupt()
        return restore_frames(*args, **kwargs)

    return restore


def test_killed_run_resumes_and_gives_the_same_data(restored, seg_model_path, dictionary_dir, sensor_dir, tmp_path,
                                                    monkeypatch):
    calls = []

    out = tmp_path / "out"
    monkeypatch.setattr(pseudo_labels, "restore_frames", counted_restore(calls, die_at=2))
    with pytest.raises(Interrupt):
        restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False)
    assert not out.exists()  # nothing half-written is visible

    calls.clear()
    monkeypatch.setattr(pseudo_labels, "restore_frames", counted_restore(calls))
    result = restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False)
    assert len(calls) == 2  # chunks 1 and 2 of 3; chunk 0 was saved before the kill
    np.testing.assert_array_equal(load_arrays(out)["labels"], load_arrays(restored.out_dir)["labels"])
    assert (out / QUALITY_NAME).read_text() == restored.quality_path.read_text()

    calls.clear()
    again = restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, chunk_frames=12, progress=False)
    assert calls == [] and again.summary == result.summary  # a finished job is not redone


def test_a_run_folder_moved_mid_job_resumes_it(restored, seg_model_path, dictionary_dir, sensor_dir, tmp_path,
                                               monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(dictionary_dir, run / "index")
    shutil.copytree(sensor_dir, run / "real")
    shutil.copy(seg_model_path, run / "seg.keras")
    calls = []

    def restore(folder):
        return restore_dataset(folder / "seg.keras", folder / "index", folder / "real", folder / "step" / "restored",
                               chunk_frames=12, progress=False, run_dir=folder)

    monkeypatch.setattr(pseudo_labels, "restore_frames", counted_restore(calls, die_at=2))
    with pytest.raises(Interrupt):
        restore(run)
    moved = run.rename(tmp_path / "moved")
    calls.clear()
    monkeypatch.setattr(pseudo_labels, "restore_frames", counted_restore(calls))
    result = restore(moved)
    assert len(calls) == 2  # the chunk saved before the move was kept
    job = read_manifest(result.out_dir).params["restoration"]
    assert (job["model"]["path"], job["index"]["path"], job["source"]["path"]) == ("seg.keras", "index", "real")
    np.testing.assert_array_equal(load_arrays(result.out_dir)["labels"], load_arrays(restored.out_dir)["labels"])


def test_interrupted_job_with_other_parameters_is_refused(seg_model_path, dictionary_dir, sensor_dir, tmp_path,
                                                          monkeypatch):
    out = tmp_path / "out"

    def die(*args, **kwargs):
        raise Interrupt()

    monkeypatch.setattr(pseudo_labels, "restore_frames", die)
    with pytest.raises(Interrupt):
        restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, progress=False)
    monkeypatch.undo()
    with pytest.raises(UserError, match="other parameters.*method"):
        restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, method="center", progress=False)


def test_an_existing_folder_is_not_replaced(seg_model_path, dictionary_dir, sensor_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists"):
        restore_dataset(seg_model_path, dictionary_dir, sensor_dir, out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_no_restoration_accepts_nothing(seg_model_path, dictionary_dir, sensor_dir, tmp_path):
    with pytest.raises(UserError, match="improved"):
        restore_dataset(seg_model_path, dictionary_dir, sensor_dir, tmp_path / "out", method="none", progress=False)


@pytest.mark.parametrize("job", ["integrate", {"window": 3}, {"method": 5}])
def test_a_restored_manifest_needs_its_restoration_job(tmp_path, job):
    from keras_hpe.data.dataset import generate_dataset
    from keras_hpe.restoration.pseudo_labels import read_restored_manifest

    def make_shard(rng, count):
        return {"depth_mm": np.ones((count, 4, 4), np.float32), "labels": np.ones((count, 4, 4), np.uint8)}

    generate_dataset(tmp_path / "d", 2, make_shard=make_shard, domain="sensor", size=4, seed=0,
                     fields=("depth_mm", "labels"), params={"restoration": job}, progress=False)
    with pytest.raises(UserError, match="is not a restored data set"):
        read_restored_manifest(tmp_path / "d")


@pytest.mark.parametrize("content, message", [
    ("frame,raw_quality_mm\n0,1.5\n", "expected the columns frame, raw_quality_mm, restored_quality_mm, accepted"),
    ("", "expected the columns"),
    ("frame,raw_quality_mm,restored_quality_mm,accepted\n0,1.5,x,1\n", "cannot read"),
])
def test_a_bad_quality_table_is_a_user_error(tmp_path, content, message):
    path = tmp_path / QUALITY_NAME
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_quality_csv(path)
