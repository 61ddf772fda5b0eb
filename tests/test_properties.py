"""Property-based tests (Hypothesis) of everything that reads user files: "a valid result, or exit 2 with one line".

Each property feeds generated content (manifests, pending.json, sensor configs,
shards, `.npy` arrays, the dictionary's files, joint and centre text files) to
the real command line in-process (`keras_hpe.cli.main.main`, which turns
`UserError` into exit status 2 and lets anything else escape as a traceback)
or, where a command would spend its time loading models, to the reader the
command calls. The assertion is always the same: exit 0 with a valid result,
or exit 2 with exactly one visible line on stderr, never another exception.
"""

import json
import shutil
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import visible_lines
from keras_hpe.cli.main import main
from keras_hpe.data.dataset import MANIFEST_NAME, PENDING_NAME, load_arrays, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.restoration.index import COUNTS_NAME, INDEX_NAME, META_NAME, NEIGHBOURS_NAME, PATCHES_NAME, PatchIndex

EXAMPLES = 100
# Derandomized, no example database: CI runs the same examples every time and writes nothing to the tree.
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(
    max_size=12)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(
    st.text(max_size=8), children, max_size=4), max_leaves=12)


def mutated(original: dict) -> st.SearchStrategy[dict]:
    """`original` with some keys dropped, some values replaced by any JSON value, and unknown keys added."""
    keys = sorted(original)

    @st.composite
    def build(draw):
        values = dict(original)
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            del values[key]
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            values[key] = draw(json_values)
        values.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
        return values

    return build()


def outcome(capsys, argv) -> tuple[int, str]:
    """Run the CLI; returns (exit status, stdout). Exit 2 must show one line on stderr; any exception fails."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    lines = visible_lines(err)
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("keras-hpe: error: "), err
    else:
        assert code == 0, (code, err)
    return code, out


def reader_outcome(read, *args):
    """Call a reader; returns its result, or None for a UserError. Anything else fails the test."""
    try:
        return read(*args)
    except UserError as error:
        assert "\n" not in str(error).strip(), error
        return None


@pytest.fixture(scope="module")
def good_manifest(synth_dir):
    return json.loads((synth_dir / MANIFEST_NAME).read_text())


@PROPERTY
@given(data=st.data())
def test_generated_manifests_read_or_fail_in_one_line(synth_dir, good_manifest, tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("manifest")
    for shard in synth_dir.glob("shard-*.npz"):
        shutil.copy(shard, folder / shard.name)
    manifest = data.draw(mutated(good_manifest))
    if data.draw(st.booleans()):  # also break the shard list, the part that must agree with the files
        manifest["shards"] = data.draw(st.lists(st.fixed_dictionaries(
            {"file": st.sampled_from(["shard-00000.npz", "shard-00001.npz", "shard-00009.npz", "../x", ""]),
             "count": st.integers(-2, 40) | json_scalars}), max_size=3))
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    arrays = reader_outcome(load_arrays, folder)
    if arrays is not None:
        assert len(arrays["depth_mm"]) == read_manifest(folder).count
    code, _ = outcome(capsys, ["data", "show", folder, "--n", "2", "--out", folder / "show.png"])
    assert (folder / "show.png").is_file() == (code == 0)


@PROPERTY
@given(pending=json_values | mutated({"format": "keras_hpe.dataset/1", "domain": "synth", "size": 32,
                                     "cube_mm": 300.0, "seed": 0, "fields": ["depth_mm"], "params": {}}))
def test_generated_pending_files_resume_or_fail_in_one_line(tmp_path_factory, capsys, pending):
    folder = tmp_path_factory.mktemp("pending")
    (folder / PENDING_NAME).write_text(json.dumps(pending))
    code, _ = outcome(capsys, ["data", "synth", "--n", "3", "--size", "32", "--out", folder])
    if code == 0:
        assert read_manifest(folder).count == 3


SENSOR_FIELDS = ("baseline_mm", "disparity_step_px", "disparity_noise_px", "lateral_sigma_px", "edge_band_px",
                 "edge_dropout", "hole_fraction", "near_limit_mm", "far_limit_mm", "grazing_start_deg")


@PROPERTY
@given(config=json_values | st.dictionaries(st.sampled_from(SENSOR_FIELDS) | st.text(max_size=6),
                                            json_scalars, max_size=4))
def test_generated_sensor_configs_render_or_fail_in_one_line(tmp_path_factory, capsys, config):
    folder = tmp_path_factory.mktemp("sensor")
    (folder / "config.json").write_text(json.dumps(config))
    code, _ = outcome(capsys, ["data", "sensor", "--n", "2", "--size", "32", "--sensor-config",
                               folder / "config.json", "--out", folder / "data"])
    if code == 0:
        assert read_manifest(folder / "data").count == 2


shard_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=33),
    elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": False},
)


@PROPERTY
@given(data=st.data())
def test_generated_shards_read_or_fail_in_one_line(synth_dir, tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("shard")
    shutil.copytree(synth_dir, folder, dirs_exist_ok=True)
    with np.load(folder / "shard-00000.npz") as shard:
        arrays = dict(shard)
    for name in data.draw(st.lists(st.sampled_from(sorted(arrays)), min_size=1, max_size=2, unique=True)):
        arrays[name] = data.draw(shard_arrays)
    choice = data.draw(st.sampled_from(["arrays", "truncated", "empty"]))
    path = folder / "shard-00000.npz"
    if choice == "arrays":
        np.savez(path, **arrays)
    else:
        path.write_bytes(path.read_bytes()[: data.draw(st.integers(0, 5000))] if choice == "truncated" else b"")
    loaded = reader_outcome(load_arrays, folder)
    if loaded is not None:
        assert np.isfinite(loaded["depth_mm"]).all() and (loaded["depth_mm"] >= 0).all()
    outcome(capsys, ["data", "show", folder, "--n", "2", "--out", folder / "show.png"])


@PROPERTY
@given(data=st.data())
def test_generated_dictionary_files_load_or_fail_in_one_line(dictionary_dir, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("dictionary") / "dict"
    shutil.copytree(dictionary_dir, folder)
    target = data.draw(st.sampled_from([META_NAME, PATCHES_NAME, COUNTS_NAME, NEIGHBOURS_NAME, INDEX_NAME]))
    path = folder / target
    if target == META_NAME:
        path.write_text(json.dumps(data.draw(mutated(json.loads(path.read_text())) | json_values)))
    elif target == INDEX_NAME or data.draw(st.booleans()):
        size = path.stat().st_size
        path.write_bytes(path.read_bytes()[: data.draw(st.integers(0, max(size - 1, 0)))])
    else:
        np.save(path, data.draw(hnp.arrays(dtype=st.sampled_from([np.uint8, np.int64, np.float32]),
                                           shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=9))))
    index = reader_outcome(PatchIndex.load, folder, 7)
    if index is not None:
        ids, hamming = index.query(index.patches[:2], 1)
        assert ids.shape == (2, 1) and (hamming == 0).all()


joint_lines = st.lists(st.one_of(
    st.lists(st.floats(-1e6, 1e6) | st.sampled_from([np.nan, np.inf, -np.inf]), min_size=42, max_size=42).map(
        lambda row: " ".join(repr(value) for value in row)),
    st.lists(st.floats(1, 2000), min_size=40, max_size=44).map(lambda row: " ".join(f"{v:.2f}" for v in row)),
    st.text(string.printable, max_size=60),
), max_size=4)


@PROPERTY
@given(gt=joint_lines, pred=joint_lines)
def test_generated_joint_files_score_or_fail_in_one_line(tmp_path_factory, capsys, gt, pred):
    folder = tmp_path_factory.mktemp("joints")
    (folder / "gt.txt").write_text("\n".join(gt))
    (folder / "pred.txt").write_text("\n".join(pred))
    code, out = outcome(capsys, ["evaluate-joints", "--gt", folder / "gt.txt", "--pred", folder / "pred.txt"])
    if code == 0:
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["frames"] >= 1 and np.isfinite(summary["mean_3d_mm"])


depth_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.uint16, np.int32, np.bool_, np.complex64]),
    shape=st.sampled_from([(480, 640), (480, 640, 1), (640, 480), (2, 2), ()]),
)


@pytest.fixture(scope="module")
def estimator_info():
    from keras_hpe.data.camera import NYU_CAMERA
    from keras_hpe.pipeline import EstimatorInfo

    return EstimatorInfo(size=32, cube_mm=300.0, camera=NYU_CAMERA, uses_segmentation=False,
                         segmentation_model=None, regression_model="reg")


@PROPERTY
@given(data=st.data())
def test_generated_depth_images_and_centres_are_checked(estimator_info, tmp_path_factory, data):
    from keras_hpe.predict import read_centers, read_frame

    folder = tmp_path_factory.mktemp("depth")
    kind = data.draw(st.sampled_from(["hand", "array", "bytes"]))
    path = folder / "frame.npy"
    if kind == "hand":  # a plausible frame: a blob of depth at a generated distance, some pixels wild
        depth = np.zeros((480, 640), np.float32)
        distance = data.draw(st.floats(0, 1e31) | st.sampled_from([np.nan, np.inf]) | st.floats(300, 1200))
        depth[200:260, 280:360] = distance
        depth[data.draw(st.integers(0, 479)), data.draw(st.integers(0, 639))] = data.draw(
            st.floats(width=32, allow_nan=True, allow_infinity=True))
        np.save(path, depth)
    elif kind == "array":
        np.save(path, data.draw(depth_arrays))
    else:
        path.write_bytes(data.draw(st.binary(max_size=200)))
    centres = None
    if data.draw(st.booleans()):
        (folder / "centres.json").write_text(json.dumps(
            {data.draw(st.sampled_from(["frame.npy", "other.npy"])): data.draw(json_values)}))
        centres = reader_outcome(read_centers, folder / "centres.json")
        assume(centres is not None)
    result = reader_outcome(read_frame, path, centres, estimator_info)
    if result is not None:
        _, _, centre, _ = result
        assert np.isfinite(centre).all() and 100 <= centre[2] <= 10_000
