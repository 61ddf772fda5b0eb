"""restore_frames: the methods end to end on toy maps, workers, the `dictionary build` command."""

import argparse
import json

import numpy as np
import pytest

from keras_hpe.data.dataset import read_manifest
from keras_hpe.errors import UserError
from keras_hpe.restoration.index import PatchIndex, build_dictionary, exact_nearest
from keras_hpe.restoration.patches import differing_pixels, extract_patches, unique_patches
from keras_hpe.restoration.restore import METHODS, RestorationPool, restore_frames

SIZE = 24


def _clean_maps(n=6, seed=0):
    """Blocky hands: a palm, three two-part fingers and a thumb, randomly placed; label 13 never occurs."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        top, left = rng.integers(7, 10), rng.integers(3, 7)
        maps[i, top:top + 10, left:left + 10] = 1
        for finger, (near, far) in enumerate([(6, 7), (10, 11), (18, 19)]):
            col = left + 3 * finger + 1
            maps[i, top - 3:top, col:col + 2] = near
            maps[i, top - 6:top - 3, col:col + 2] = far
        maps[i, top + 4:top + 7, left + 10:left + 13] = 3
    return maps


def _flip_isolated_pixels(maps):
    """Relabel one palm pixel and one finger pixel per map, far apart, as 13."""
    noisy = maps.copy()
    for frame in noisy:
        palm = np.argwhere(frame == 1)
        finger = np.argwhere(frame == 11)
        for y, x in (palm[len(palm) // 2], finger[0]):
            frame[y, x] = 13
    return noisy


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("restore") / "dictionary"
    build_dictionary(_clean_maps(), out, patch=5, n_trees=4, search_k=5000, progress=False)
    return PatchIndex.load(out, patch=5)


def test_integration_restores_flipped_pixels(index):
    clean = _clean_maps()
    noisy = _flip_isolated_pixels(clean)
    assert np.sum(noisy != clean) == 2 * len(clean)
    assert np.array_equal(restore_frames(noisy, index, method="none"), noisy)
    for method in ("integrate", "center", "crf-potts", "crf-overlap"):
        assert np.array_equal(restore_frames(noisy, index, method=method, window=3), clean), method


def test_every_method_keeps_the_hand_mask(index):
    rng = np.random.default_rng(1)
    noisy = _clean_maps(seed=3)
    hand = noisy > 0
    flips = hand & (rng.random(noisy.shape) < 0.3)
    noisy[flips] = rng.integers(1, 21, flips.sum())
    for method in METHODS:
        restored = restore_frames(noisy, index, method=method, window=5)
        assert restored.shape == noisy.shape and restored.dtype == np.uint8
        assert np.array_equal(restored > 0, hand), method


def test_workers_give_the_single_process_result(index):
    rng = np.random.default_rng(2)
    noisy = _clean_maps(n=6, seed=5)
    hand = noisy > 0
    flips = hand & (rng.random(noisy.shape) < 0.2)
    noisy[flips] = rng.integers(1, 21, flips.sum())
    with RestorationPool(index, workers=2) as pool:
        for method in ("integrate", "crf-overlap"):
            single = restore_frames(noisy, index, method=method, workers=1)
            parallel = restore_frames(noisy, index.directory, patch=5, method=method, workers=2, chunk_frames=2)
            pooled = restore_frames(noisy, index, method=method, chunk_frames=2, pool=pool)  # one pool, two calls
            assert np.array_equal(single, parallel) and np.array_equal(single, pooled), method
            assert not np.array_equal(single, noisy)


def _noisy_maps(n=6, seed=7, rate=0.2):
    rng = np.random.default_rng(seed)
    noisy = _clean_maps(n=n, seed=seed)
    flips = (noisy > 0) & (rng.random(noisy.shape) < rate)
    noisy[flips] = rng.integers(1, 21, flips.sum())
    return noisy


def test_deduplicated_queries_give_the_restoration_of_one_query_per_pixel(index, monkeypatch):
    """Identical patches are searched once and the answer is copied to each: bit for bit what per-pixel search gives."""
    rng = np.random.default_rng(4)
    blocks = rng.integers(0, 4, (3, SIZE // 4, SIZE // 4))  # random parts in 4 x 4 blocks, some pixels flipped
    random_maps = np.kron(blocks, np.ones((4, 4), np.int64)).astype(np.uint8)
    random_maps[rng.random(random_maps.shape) < 0.05] = rng.integers(1, 21)
    cases = [_clean_maps(), _flip_isolated_pixels(_clean_maps()), _noisy_maps(), random_maps]
    fast = PatchIndex.load(index.directory, patch=5, search_k=20)  # approximate: Annoy's answers matter
    deduplicated = [restore_frames(maps, fast, method=method) for maps in cases for method in ("integrate", "center")]
    one_query = PatchIndex.query

    def query_each_pixel(self, patches, k=1, **options):
        found = [one_query(self, patches[i:i + 1], k, **options) for i in range(len(patches))]
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])

    monkeypatch.setattr(PatchIndex, "query", query_each_pixel)
    per_pixel = [restore_frames(maps, fast, method=method) for maps in cases for method in ("integrate", "center")]
    for maps in cases:
        patches, _ = extract_patches(maps, 5)
        assert len(unique_patches(patches)[0]) < len(patches)  # there is something to de-duplicate
    assert all(np.array_equal(a, b) for a, b in zip(deduplicated, per_pixel))


def test_propagation_only_brings_matches_nearer(index):
    noisy = _noisy_maps(rate=0.3)
    patches, _ = extract_patches(noisy, 5)
    _, exact = exact_nearest(index.patches, patches)
    annoy = PatchIndex.load(index.directory, patch=5, search_k=1, propagation_steps=0).match_maps(noisy)
    propagated = PatchIndex.load(index.directory, patch=5, search_k=1, propagation_steps=2).match_maps(noisy)
    assert np.array_equal(annoy[2], propagated[2])  # the same pixels, in extract_patches order
    ids, hamming = propagated[:2]
    assert np.array_equal(hamming, 2 * differing_pixels(index.patches[ids], patches))
    assert np.all(exact <= hamming) and np.all(hamming <= annoy[1])
    assert hamming.sum() < annoy[1].sum()


def test_a_run_opens_one_pool_for_all_its_chunks(seg_model_path, dictionary_dir, sensor_dir, tmp_path, monkeypatch):
    import keras_hpe.restoration.pseudo_labels as pseudo_labels

    opened = []

    class CountedPool(RestorationPool):
        def __init__(self, *args, **kwargs):
            opened.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pseudo_labels, "RestorationPool", CountedPool)
    pseudo_labels.restore_dataset(seg_model_path, dictionary_dir, sensor_dir, tmp_path / "restored",
                                  chunk_frames=16, workers=2, progress=False)
    assert read_manifest(sensor_dir).count > 16 and len(opened) == 1  # several chunks, one pool


def test_bad_arguments_raise_user_error(index):
    maps = _clean_maps(n=1)
    with pytest.raises(UserError, match="method"):
        restore_frames(maps, index, method="median")
    with pytest.raises(UserError, match="window"):
        restore_frames(maps, index, window=7)  # larger than the 5 x 5 patches
    with pytest.raises(UserError, match="patch size 5"):
        restore_frames(maps, index.directory, patch=7)
    with pytest.raises(UserError, match="part ids"):
        restore_frames(maps + 20, index)


def _run_cli(argv):
    from keras_hpe.cli import restoration

    parser = argparse.ArgumentParser()
    restoration.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_dictionary_build_command(synth_dir, tmp_path):
    out = tmp_path / "dictionary"
    assert _run_cli(["dictionary", "build", "--data", str(synth_dir), "--out", str(out), "--patch", "5",
                     "--trees", "2", "--no-progress"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 16 and meta["patch"] == 5 and meta["n_trees"] == 2  # every 3rd of 48 frames
    assert meta["source_manifest"]["manifest"]["domain"] == "synth"
    assert meta["source_manifest"]["frames_used"] == 16
    assert len(PatchIndex.load(out, patch=5)) == meta["patches_unique"] > 0


def test_dictionary_build_needs_labels(sensor_dir, tmp_path):
    with pytest.raises(UserError, match="labels"):
        _run_cli(["dictionary", "build", "--data", str(sensor_dir), "--out", str(tmp_path / "d")])
