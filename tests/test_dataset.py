import io
import json
import re

import numpy as np
import pytest

from keras_hpe.data import dataset as dataset_module
from keras_hpe.data.camera import NYU_CAMERA
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
    with DatasetWriter(tmp_path / "partial", domain="synth", size=SIZE, seed=0, fields=TWO_FIELDS):
        pass
    with pytest.raises(UserError, match="partial.*size"):
        with DatasetWriter(tmp_path / "partial", domain="synth", size=SIZE * 2, seed=0, fields=TWO_FIELDS):
            pass
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
    with DatasetWriter(tmp_path / "d", domain="synth", size=SIZE, seed=0, fields=TWO_FIELDS) as writer:
        _check_write_shard(writer)


def _check_write_shard(writer):
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
    labels = np.full((2, SIZE, SIZE), 21, dtype=np.uint8)
    with DatasetWriter(tmp_path / "d", domain="synth", size=SIZE, seed=0, fields=("depth_mm", "labels")) as writer:
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
    first = order(shuffled)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert order(shuffled) == first  # the order is a function of (seed, epoch), not of a hidden pass counter
    assert order(make_tf_dataset(tmp_path / "d", shuffle=True, seed=5)) == first
    assert order(make_tf_dataset(tmp_path / "d", shuffle=True, seed=5, epoch=1)) != first


def test_load_frames_reads_the_requested_frames(tmp_path):
    _generate(tmp_path / "d")
    arrays = load_arrays(tmp_path / "d")
    frames = load_frames(tmp_path / "d", [9, 0, 5, 5], ["center_uvd"])
    np.testing.assert_array_equal(frames["center_uvd"], arrays["center_uvd"][[9, 0, 5, 5]])
    with pytest.raises(UserError, match="0..9"):
        load_frames(tmp_path / "d", [10])


def _manifest_values(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("domain", "poser", "'domain' must be one of synth, sensor, nyu"),
        ("count", "10", "'count' must be an integer >= 1"),
        ("count", True, "'count' must be an integer >= 1"),
        ("count", 11, "hold 10 frames in all, but 'count' is 11"),
        ("size", 0, "'size' must be an integer >= 1"),
        ("cube_mm", float("nan"), "'cube_mm' must be a number > 0"),
        ("cube_mm", "300", "'cube_mm' must be a number > 0"),
        ("seed", 1.5, "'seed' must be an integer"),
        ("camera", {"fx": 588.0}, "'camera' must be an object with the keys fx, fy"),
        ("camera", {**NYU_CAMERA.to_dict(), "fx": -1.0}, "'camera.fx' must be a number > 0"),
        ("camera", {**NYU_CAMERA.to_dict(), "width": 640.5}, "'camera.width' must be an integer >= 1"),
        ("fields", "depth_mm", "'fields' must be a list of field names"),
        ("fields", ["depth_mm", "depth_mm"], "'fields' must be distinct field names including depth_mm"),
        ("fields", ["center_uvd"], "'fields' must be distinct field names including depth_mm"),
        ("version", 1, "'version' must be a string"),
        ("shards", [], "'shards' must be a non-empty list"),
        ("shards", [{"file": "../shard-00000.npz", "count": 10}], "'shards[0].file' must be 'shard-00000.npz'"),
        ("shards", [{"file": "shard-00000.npz"}], "'shards[0]' must be an object with the keys file and count"),
        ("shards", [{"file": "shard-00000.npz", "count": -4}, {"file": "shard-00001.npz", "count": 14}],
         "'shards[0].count' must be an integer >= 1"),
        ("params", [], "'params' must be an object"),
    ],
)
def test_manifest_values_are_checked(tmp_path, key, value, message):
    _generate(tmp_path / "d")
    manifest_path = tmp_path / "d" / "manifest.json"
    manifest_path.write_text(json.dumps({**_manifest_values(tmp_path / "d"), key: value}))
    with pytest.raises(UserError, match=re.escape(message)) as error:
        load_arrays(tmp_path / "d")
    assert str(manifest_path) in str(error.value)


def test_a_manifest_naming_a_missing_shard_is_refused(tmp_path):
    _generate(tmp_path / "d")
    (tmp_path / "d" / "shard-00001.npz").unlink()
    with pytest.raises(UserError, match="shard-00001.npz"):
        read_manifest(tmp_path / "d")


LABELLED = ("depth_mm", "labels", "center_uvd")


def _labelled_shard(rng: np.random.Generator, count: int) -> dict:
    return {**_make_shard(rng, count), "labels": rng.integers(0, 21, (count, SIZE, SIZE)).astype(np.uint8)}


def _replace_shard_0(folder, case):
    """Make shard 0 of `folder` (4 frames) bad in the way `case` names."""
    path = folder / "shard-00000.npz"
    content = path.read_bytes()
    with np.load(path) as shard:
        arrays = {name: shard[name] for name in shard.files}
    npy = io.BytesIO()
    np.save(npy, arrays["depth_mm"])
    damaged = {"empty": b"", "truncated": content[: len(content) // 2], "garbage": b"not a shard" * 50,
               "npy": npy.getvalue()}
    bad_arrays = {
        "no_labels": {name: a for name, a in arrays.items() if name != "labels"},
        "float64": {**arrays, "depth_mm": arrays["depth_mm"].astype(np.float64)},
        "frame_shape": {**arrays, "depth_mm": arrays["depth_mm"][:, :-1]},
        "frames": {name: a[:3] for name, a in arrays.items()},
        "nan": {**arrays, "depth_mm": np.where(arrays["depth_mm"] > 800, np.nan, arrays["depth_mm"]).astype(np.float32)},
        "inf": {**arrays, "center_uvd": np.full_like(arrays["center_uvd"], np.inf)},
        "negative": {**arrays, "depth_mm": -arrays["depth_mm"]},
        "labels": {**arrays, "labels": np.full_like(arrays["labels"], 21)},
    }
    if case in damaged:
        path.write_bytes(damaged[case])
    else:
        with open(path, "wb") as f:
            np.savez(f, **bad_arrays[case])
    return path


SHARD_CASES = [
    ("empty", "not a .npz archive (0 bytes)"),
    ("truncated", "not a .npz archive"),
    ("garbage", "not a .npz archive"),
    ("npy", "not a .npz archive"),
    ("no_labels", "lacks the field(s) labels"),
    ("float64", "field 'depth_mm' is float64(4, 8, 8), expected float32(4, 8, 8)"),
    ("frame_shape", "field 'depth_mm' is float32(4, 7, 8), expected float32(4, 8, 8)"),
    ("frames", "holds 3 frames, its manifest says 4"),
    ("nan", "field 'depth_mm' has NaN or infinite values"),
    ("inf", "field 'center_uvd' has NaN or infinite values"),
    ("negative", "depth_mm has negative values"),
    ("labels", "labels must be part ids 0..20"),
]


@pytest.mark.parametrize("case, message", SHARD_CASES)
def test_bad_shards_are_user_errors_naming_the_file(tmp_path, case, message):
    folder = tmp_path / "d"
    generate_dataset(folder, 10, make_shard=_labelled_shard, domain="synth", size=SIZE, seed=0, fields=LABELLED,
                     shard_size=4, progress=False)
    path = _replace_shard_0(folder, case)
    readers = [
        lambda: load_arrays(folder),
        lambda: load_frames(folder, [0, 9]),
        lambda: make_tf_dataset(folder),  # when the tf.data set is made, not inside its generator
    ]
    for read in readers:
        with pytest.raises(UserError, match=re.escape(message)) as error:
            read()
        assert str(path) in str(error.value)


def test_shards_are_checked_once_per_file_for_tf_data(tmp_path, monkeypatch):
    _generate(tmp_path / "d")
    make_tf_dataset(tmp_path / "d")
    reads = []
    load_shard = dataset_module._load_shard

    def counting(path, fields):
        reads.append(path.name)
        return load_shard(path, fields)

    monkeypatch.setattr(dataset_module, "_load_shard", counting)
    dataset = make_tf_dataset(tmp_path / "d")  # as a training does every epoch
    assert reads == []
    assert len(list(dataset.as_numpy_iterator())) == 10 and len(reads) == 3
    (tmp_path / "d" / "shard-00001.npz").write_bytes(b"")
    with pytest.raises(UserError, match="shard-00001.npz"):
        make_tf_dataset(tmp_path / "d")


def test_finishing_over_a_damaged_shard_is_a_user_error(tmp_path):
    with DatasetWriter(tmp_path / "d", domain="synth", size=SIZE, seed=0, fields=TWO_FIELDS) as writer:
        writer.write_shard(0, _make_shard(np.random.default_rng(0), 3))
        (tmp_path / "d" / "shard-00000.npz").write_bytes(b"PK\x03\x04 cut short")
        with pytest.raises(UserError, match="shard-00000.npz"):
            writer.finish()


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "\udcff"])
def test_pending_json_must_be_a_json_object(tmp_path, content):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "pending.json").write_bytes(content.encode(errors="surrogateescape"))
    with pytest.raises(UserError, match="pending.json"):
        with DatasetWriter(folder, domain="synth", size=SIZE, seed=0, fields=TWO_FIELDS):
            pass


@pytest.mark.parametrize("case", ["nan", "manifest_count"])
def test_cli_reports_a_bad_data_set_in_one_line(tmp_path, capsys, case):
    from conftest import assert_one_line_error

    from keras_hpe.cli.main import main

    folder = tmp_path / "d"
    generate_dataset(folder, 10, make_shard=_labelled_shard, domain="synth", size=SIZE, seed=0, fields=LABELLED,
                     shard_size=4, progress=False)
    if case == "nan":
        bad = _replace_shard_0(folder, "nan")
    else:
        bad = folder / "manifest.json"
        bad.write_text(json.dumps({**_manifest_values(folder), "count": 12}))
    assert main(["data", "show", str(folder), "--out", str(tmp_path / "show.png")]) == 2
    assert_one_line_error(capsys.readouterr().err, str(bad))
