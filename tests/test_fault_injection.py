"""Kill `keras-hpe reproduce --preset tiny` in every stage, resume, and compare with an uninterrupted run.

One run is killed (SIGKILL, `keras_hpe.faults`) at each point of `KILLS` in
turn, each time resumed by running the same command again, until a run ends;
an uninterrupted run of the same command is the reference. Every stage's
artefacts must come out the same: byte for byte where the format has no
time stamp (data shards, the Annoy index, restored maps, CSVs, figures,
summary numbers), and with exactly equal weights where it has one (`.keras`
archives record the time they were saved; a SavedModel's graph is compared
through its outputs).
"""

import json
import os
import subprocess
import sys
import zipfile

import annoy
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_hpe.models.regression  # noqa: F401  (registers the custom layers the archives name)
import keras_hpe.models.segmentation  # noqa: F401
from keras_hpe.faults import ENV

# (crash point, the stage it lands in), in the order the stages run.
KILLS = (
    ("dataset.shard/synth.partial:1", "synth"),
    ("stage.done/synth_test:1", "synth_test"),
    ("dataset.shard/real_test.partial:1", "real_test"),
    ("fit.batch/seg:2", "seg_synth"),
    ("fit.epoch/seg:1", "seg_synth"),
    ("fit.batch/seg:2", "seg_synth"),  # resumed from the epoch-1 checkpoint: in epoch 2
    ("stage.done/dictionary:1", "dictionary"),
    ("restore.chunk:1", "restore"),
    ("fit.batch/seg_weak:3", "seg_weak"),
    ("fit.epoch/reg_direct:1", "reg_direct"),
    ("fit.batch/reg_cascade_refine:1", "reg_cascade"),
    ("fit.batch/reg_full:3", "reg_full"),
    ("stage.done/export:1", "export"),
)
# JSON keys that hold wall-clock times, a fresh run token, or the SHA-256 of a `.keras` archive (which
# records when it was saved): left out of the comparison. Stage records keep the names of their inputs.
TIMED_KEYS = {"seconds", "fingerprint", "seconds_this_run", "train_seconds_this_run", "build_seconds",
              "sha256", "seg_sha256"}


def _command(root):
    return [sys.executable, "-m", "keras_hpe.cli.main", "reproduce", "--preset", "tiny", "--no-progress",
            "--out", str(root / "run"), "--reports", str(root / "reports"),
            "--saved-models", str(root / "saved")]


def _run(root, crash_at=None):
    env = {key: value for key, value in os.environ.items() if key != ENV}
    if crash_at:
        env[ENV] = crash_at
    return subprocess.run(_command(root), env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted reference and the run killed at every point of `KILLS` (with what each kill did)."""
    reference = tmp_path_factory.mktemp("uninterrupted")
    done = _run(reference)
    assert done.returncode == 0, done.stderr
    killed = tmp_path_factory.mktemp("killed")
    outcomes = []
    for point, stage in KILLS:
        result = _run(killed, point)
        outcomes.append((point, stage, result.returncode))
        assert result.returncode == -9, f"{point} did not kill the run in {stage}: {result.stderr[-2000:]}"
    final = _run(killed)
    assert final.returncode == 0, final.stderr
    return reference, killed, outcomes


def _strip_times(value):
    if isinstance(value, dict):
        if "inputs" in value and isinstance(value["inputs"], dict):  # a stage record: inputs' fingerprints
            value = {**value, "inputs": sorted(value["inputs"])}
        return {key: _strip_times(item) for key, item in value.items() if key not in TIMED_KEYS}
    if isinstance(value, list):
        return [_strip_times(item) for item in value]
    return value


def _config(archive) -> dict:
    """A `.keras` archive's model config without Keras' `shared_object_id`s (memory addresses)."""
    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key != "shared_object_id"}
        return [strip(item) for item in value] if isinstance(value, list) else value

    with zipfile.ZipFile(archive) as files:
        return strip(json.loads(files.read("config.json")))


def _same_keras_weights(a, b) -> bool:
    if _config(a) != _config(b):
        return False
    weights_a = keras.saving.load_model(a, compile=False).get_weights()
    weights_b = keras.saving.load_model(b, compile=False).get_weights()
    return len(weights_a) == len(weights_b) and all(np.array_equal(x, y) for x, y in zip(weights_a, weights_b))


def _same_saved_model(a, b) -> bool:
    rng = np.random.default_rng(0)
    depth = rng.uniform(500, 700, (2, 32, 32)).astype(np.float32)
    center = np.array([[320, 240, 600], [300, 250, 620]], np.float32)
    outputs = [tf.saved_model.load(str(path)).signatures["serving_default"](
        depth_mm=tf.constant(depth), center_uvd=tf.constant(center)) for path in (a, b)]
    return outputs[0].keys() == outputs[1].keys() and all(
        np.array_equal(outputs[0][name].numpy(), outputs[1][name].numpy()) for name in outputs[0])


def _same(a, b, roots) -> bool:
    if a.suffix == ".json":
        # Until artefacts record paths relative to the run folder, each run's own root stands in them.
        texts = [path.read_text().replace(str(root), "<root>") for path, root in zip((a, b), roots)]
        return _strip_times(json.loads(texts[0])) == _strip_times(json.loads(texts[1]))
    if a.suffix == ".keras":
        return _same_keras_weights(a, b)
    if a.suffix == ".ann":
        return _same_annoy_index(a, b)
    return a.read_bytes() == b.read_bytes()


def _same_annoy_index(a, b) -> bool:
    """Annoy writes each split node from an uninitialised stack buffer (`alloca` in `annoylib.h`), so two
    builds of the same trees differ in unused bytes: compare the trees through what they answer."""
    meta = json.loads((a.parent / "meta.json").read_text())
    indexes = []
    for path in (a, b):
        index = annoy.AnnoyIndex(meta["bits"], "hamming")
        index.load(str(path))
        indexes.append(index)
    items = indexes[0].get_n_items()
    return items == indexes[1].get_n_items() and all(
        indexes[0].get_nns_by_item(item, 10, search_k=meta["search_k"], include_distances=True)
        == indexes[1].get_nns_by_item(item, 10, search_k=meta["search_k"], include_distances=True)
        for item in range(items))


def _differences(a_root, b_root, roots) -> list[str]:
    """Files that differ between two artefact folders (or exist in one only), as relative paths."""
    skip = {"logs", "saved_model.pb", "variables", "fingerprint.pb"}  # TensorBoard events; SavedModel: below
    files = {path.relative_to(a_root) for path in a_root.rglob("*") if path.is_file()}
    files |= {path.relative_to(b_root) for path in b_root.rglob("*") if path.is_file()}
    # Cached predictions are named by the model archive's SHA-256 (see TIMED_KEYS): compare their contents.
    cached = {name for name in files if "seg_cache" in name.parts}
    files -= cached
    contents = [sorted((root / name).read_bytes() for name in cached if (root / name).is_file())
                for root in (a_root, b_root)]
    different = ["seg_cache"] if contents[0] != contents[1] else []
    return different + sorted(str(name) for name in files if not skip & set(name.parts) and not (
        (a_root / name).is_file() and (b_root / name).is_file() and _same(a_root / name, b_root / name, roots)))


def test_every_kill_point_was_reached_in_its_stage(runs):
    _, _, outcomes = runs
    stages = {stage for _, stage, _ in outcomes}
    assert {"synth", "real_test", "seg_synth", "restore", "seg_weak", "reg_direct", "reg_cascade", "reg_full",
            "export"} <= stages
    assert all(code == -9 for _, _, code in outcomes)


def test_a_resumed_run_equals_an_uninterrupted_one(runs):
    reference, killed, outcomes = runs
    stages = sorted(path.name for path in (reference / "run").iterdir() if path.is_dir())
    roots = (reference, killed)
    matrix = {stage: _differences(reference / "run" / stage, killed / "run" / stage, roots) for stage in stages}
    print("\nfault injection: stage | kill points | resumed artefacts")
    for stage in stages:
        points = [point for point, where, _ in outcomes if where == stage] or ["-"]
        verdict = "identical" if not matrix[stage] else f"DIFFER: {matrix[stage]}"
        print(f"  {stage:<12} | {', '.join(points):<60} | {verdict}")
    assert all(not differences for differences in matrix.values()), matrix
    assert _differences(reference / "reports", killed / "reports", roots) == ["README.md"]  # it lists the seconds
    versions = [sorted(p.name for p in (root / "saved").iterdir() if p.is_dir()) for root in (reference, killed)]
    assert versions == [["1"], ["1"]]  # the export killed after writing is not exported twice
    assert _same_saved_model(reference / "saved" / "1", killed / "saved" / "1")
