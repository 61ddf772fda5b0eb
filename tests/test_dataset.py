import json

import numpy as np
import pytest

from keras_hpe.data.dataset import (
    FIELDS,
    FORMAT,
    DatasetWriter,
    Manifest,
    generate_dataset,
    load_arrays,
    load_frames,
    make_tf_dataset,
    read_manifest,
)
from keras_hpe.errors import UserError

SIZE = 8
TWO_FIELDS = ("depth_mm", "center_uvd")


def _make_shard(rng: np.random.Generator, count: int) -> dict:
    return {
        "depth_mm": rng.uniform(0, 900, (count, SIZE, SIZE)).astype(np.float32),
        "center_uvd": rng.uniform(0, 600, (count, 3)).astype(np.float32),
    }


def _generate(out, n=10, seed=3, make_shard=_make_shard, **kwargs):
    return generate_dataset(
        out, n, make_shard=make_shard, domain="synth", size=SIZE, seed=seed, fields=TWO_FIELDS,
        shard_size=4, progress=False, **kwargs,
    )


def test_write_and_read_round_trip(tmp_path):
    manifest = _generate(tmp_path / "d", params={"renderer": "test"})
    assert manifest.count == 10 and [s["count"] for s in manifest.shards] == [4, 4, 2]
    assert manifest.params["renderer"] == "test"
    assert read_manifest(tmp_path / "d") == manifest
    assert Manifest.from_dict(json.loads((tmp_path / "d" / "manifest.json").read_text())) == manifest
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "manifest.json", "shard-00000.npz", "shard-00001.npz", "shard-00002.npz",
    ]
    arrays = load_arrays(tmp_path / "d")
    expected = [_make_shard(np.random.default_rng([3, i]), c) for i, c in enumerate([4, 4, 2])]
    np.testing.assert_array_equal(arrays["depth_mm"], np.concatenate([e["depth_mm"] for e in expected]))
    assert arrays["center_uvd"].shape == (10, 3) and arrays["center_uvd"].dtype == np.float32
    assert list(load_arrays(tmp_path / "d", ["center_uvd"])) == ["center_uvd"]


def test_interrupted_run_resumes_to_the_same_data(tmp_path):
    calls = []

    def failing(rng, count):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(count)
        return _make_shard(rng, count)

    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "d", make_shard=failing)
    assert not (tmp_path / "d" / "manifest.json").exists()
    assert not list((tmp_path / "d").glob("shard-00002*"))

    def counting(rng, count):
        calls.append(count)
        return _make_shard(rng, count)

    _generate(tmp_path / "d", make_shard=counting)
    assert calls == [4, 4, 2]  # only the missing shard was made
    _generate(tmp_path / "fresh")
    for name in TWO_FIELDS:
        np.testing.assert_array_equal(load_arrays(tmp_path / "d")[name], load_arrays(tmp_path / "fresh")[name])
    # A finished data set with the same parameters is returned without work.
    assert _generate(tmp_path / "d", make_shard=counting) == read_manifest(tmp_path / "d")
    assert calls == [4, 4, 2]


def test_other_parameters_on_an_existing_folder_are_refused(tmp_path):
    _generate(tmp_path / "done")
    with pytest.raises(UserError, match="done.*seed"):
        _generate(tmp_path / "done", seed=4)
    DatasetWriter(tmp_path / "partial", domain="synth", size=SIZE, seed=0, fields=TWO_FIELDS)
    with pytest.raises(UserError, match="partial.*size"):
        DatasetWriter(tmp_path / "partial", domain="synth", size=SIZE * 2, seed=0, fields=TWO_FIELDS)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a data set"):
        _generate(tmp_path / "other")


def test_bad_generation_arguments(tmp_path):
    with pytest.raises(UserError, match="> 0"):
        _generate(tmp_path / "d", n=0)
    with pytest.raises(UserError, match="domain"):
        DatasetWriter(tmp_path / "d", domain="poser", size=SIZE, seed=0, fields=TWO_FIELDS)
    with pytest.raises(UserError, match="field"):
        DatasetWriter(tmp_path / "d", domain="synth", size=SIZE, seed=0, fields=["depth_mm", "rgb"])


def test_write_shard_checks_fields_shapes_dtypes_and_values(tmp_path):
    writer = DatasetWriter(tmp_path / "d", domain="synth", size=SIZE, seed=0, fields=TWO_FIELDS)
    good = _make_shard(np.random.default_rng(0), 3)
    bad_cases = [
        ({"depth_mm": good["depth_mm"]}, "fields"),
        ({**good, "depth_mm": good["depth_mm"].astype(np.float64)}, "depth_mm"),
        ({**good, "center_uvd": good["center_uvd"][:2]}, "center_uvd"),
        ({**good, "depth_mm": np.where(good["depth_mm"] > 800, np.nan, good["depth_mm"]).astype(np.float32)}, "NaN"),
        ({**good, "depth_mm": -good["depth_mm"]}, "negative"),
    ]
    for arrays, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            writer.write_shard(0, arrays)
    assert not writer.has_shard(0)
    writer.write_shard(0, good)
    assert writer.has_shard(0)
    assert writer.finish().count == 3


def test_labels_must_be_part_ids(tmp_path):
    writer = DatasetWriter(tmp_path / "d", domain="synth", size=SIZE, seed=0, fields=("depth_mm", "labels"))
    labels = np.full((2, SIZE, SIZE), 21, dtype=np.uint8)
    with pytest.raises(ValueError, match="labels"):
        writer.write_shard(0, {"depth_mm": np.ones((2, SIZE, SIZE), np.float32), "labels": labels})


def test_read_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="no manifest.json"):
        read_manifest(tmp_path / "d")
    (tmp_path / "d" / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_manifest(tmp_path / "d")
    _generate(tmp_path / "g")
    values = json.loads((tmp_path / "g" / "manifest.json").read_text())
    (tmp_path / "g" / "manifest.json").write_text(json.dumps({**values, "format": "other/9"}))
    with pytest.raises(UserError, match="unknown format"):
        read_manifest(tmp_path / "g")
    (tmp_path / "g" / "manifest.json").write_text(json.dumps({**values, "fields": ["depth_mm", "rgb"]}))
    with pytest.raises(UserError, match="rgb"):
        read_manifest(tmp_path / "g")
    assert values["format"] == FORMAT and set(values["fields"]) <= set(FIELDS)


def test_missing_field_is_a_user_error(tmp_path):
    _generate(tmp_path / "d")
    with pytest.raises(UserError, match="labels"):
        load_arrays(tmp_path / "d", ["depth_mm", "labels"])
    with pytest.raises(UserError, match="labels"):
        make_tf_dataset(tmp_path / "d", ["labels"])


def test_tf_dataset_streams_frames_and_shuffles_deterministically(tmp_path):
    _generate(tmp_path / "d")
    arrays = load_arrays(tmp_path / "d")
    dataset = make_tf_dataset(tmp_path / "d")
    assert int(dataset.cardinality()) == 10
    frames = list(dataset.as_numpy_iterator())
    assert frames[0]["depth_mm"].shape == (SIZE, SIZE) and frames[0]["center_uvd"].dtype == np.float32
    np.testing.assert_array_equal(np.stack([f["center_uvd"] for f in frames]), arrays["center_uvd"])

    def order(ds):
        return [int(np.argmin(np.abs(arrays["center_uvd"][:, 0] - f["center_uvd"][0]))) for f in ds.as_numpy_iterator()]

    shuffled = make_tf_dataset(tmp_path / "d", shuffle=True, seed=5)
    first, second = order(shuffled), order(shuffled)
    assert sorted(first) == list(range(10))
    assert first != list(range(10)) and first != second  # shuffled, and anew each epoch
    assert order(make_tf_dataset(tmp_path / "d", shuffle=True, seed=5)) == first


def test_load_frames_reads_the_requested_frames(tmp_path):
    _generate(tmp_path / "d")
    arrays = load_arrays(tmp_path / "d")
    frames = load_frames(tmp_path / "d", [9, 0, 5, 5], ["center_uvd"])
    np.testing.assert_array_equal(frames["center_uvd"], arrays["center_uvd"][[9, 0, 5, 5]])
    with pytest.raises(UserError, match="0..9"):
        load_frames(tmp_path / "d", [10])
