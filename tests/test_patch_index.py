"""The Annoy Hamming dictionary: build, meta.json, queries, load errors."""

import json

import numpy as np
import pytest

from keras_hpe.errors import UserError
from keras_hpe.restoration.index import PatchIndex, build_dictionary, exact_nearest
from keras_hpe.restoration.patches import differing_pixels, extract_patches, unique_patches


def _hand_maps(rng, n=4, size=20):
    """Blocky maps: a palm square with a few finger stripes, randomly placed."""
    maps = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        top, left = rng.integers(2, 6, 2)
        maps[i, top:top + 10, left:left + 10] = 1
        for finger in range(3):
            col = left + 1 + 3 * finger
            maps[i, top - 2:top + 4, col:col + 2] = 5 + 4 * finger + rng.integers(0, 2)
    return maps


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    maps = _hand_maps(np.random.default_rng(0))
    out = tmp_path_factory.mktemp("dict") / "dictionary"
    meta = build_dictionary(maps, out, patch=5, n_trees=4, search_k=200, source_manifest={"seed": 0},
                            progress=False)
    return maps, out, meta


def test_meta_records_counts_and_source(built):
    maps, out, meta = built
    patches, _ = extract_patches(maps, patch=5)
    unique, counts = unique_patches(patches)
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["patches_total"] == len(patches) == meta.patches_total
    assert on_disk["patches_unique"] == len(unique) < len(patches)
    assert on_disk["patch"] == 5 and on_disk["encoding"] == "onehot21" and on_disk["bits"] == 25 * 21
    assert on_disk["source_manifest"] == {"seed": 0} and on_disk["n_trees"] == 4
    index = PatchIndex.load(out, patch=5)
    assert np.array_equal(index.patches, unique) and np.array_equal(index.counts, counts)
    assert index.counts.sum() == len(patches)


def test_annoy_distance_is_twice_the_differing_pixels(built):
    maps, out, _ = built
    index = PatchIndex.load(out, patch=5)
    queries, _ = extract_patches(_hand_maps(np.random.default_rng(5), n=2), patch=5)
    queries[:, 0, 0] = 13  # not in the dictionary: Annoy's answer is not an exact hit
    ids, hamming = index.query(queries, k=3, exact_lookup=False)
    assert ids.shape == hamming.shape == (len(queries), 3)
    assert np.array_equal(hamming, 2 * differing_pixels(index.patches[ids], queries[:, None]))
    assert np.all(np.diff(hamming, axis=1) >= 0)
    # Annoy on this tiny dictionary with a large search_k is exact
    _, exact_hamming = exact_nearest(index.patches, queries)
    assert np.array_equal(hamming[:, 0], exact_hamming)


def test_exact_lookup_finds_dictionary_patches(built):
    _, out, _ = built
    index = PatchIndex.load(out, patch=5)
    picks = np.arange(0, len(index), 3)
    ids, hamming = index.query(index.patches[picks], k=1)
    assert np.array_equal(ids[:, 0], picks) and np.all(hamming == 0)
    ids, hamming = index.query(index.patches[picks], k=4)
    assert np.array_equal(ids[:, 0], picks) and np.all(hamming[:, 0] == 0)
    assert all(len(set(row)) == 4 for row in ids.tolist())  # the exact hit is not repeated


def test_exact_nearest_matches_brute_force_on_labels(built):
    _, out, _ = built
    index = PatchIndex.load(out, patch=5)
    rng = np.random.default_rng(3)
    queries = rng.integers(0, 21, (7, 5, 5)).astype(np.uint8)
    ids, hamming = exact_nearest(index.patches, queries, chunk=16)
    all_pixels = differing_pixels(index.patches[None], queries[:, None])
    assert np.array_equal(hamming, 2 * all_pixels.min(axis=1))
    assert np.array_equal(ids, all_pixels.argmin(axis=1))


def test_load_rejects_other_patch_size_encoding_and_non_dictionaries(built, tmp_path):
    _, out, _ = built
    with pytest.raises(UserError, match="patch size 5"):
        PatchIndex.load(out, patch=7)
    with pytest.raises(UserError, match="encoding"):
        PatchIndex.load(out, patch=5, encoding="bits5")
    with pytest.raises(UserError, match="not a patch dictionary"):
        PatchIndex.load(tmp_path, patch=5)
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="refusing"):
        build_dictionary(np.ones((1, 8, 8), np.uint8), tmp_path, patch=5, progress=False)
    assert (tmp_path / "precious.txt").exists()


def test_same_seed_same_answers(built, tmp_path):
    maps, out, _ = built
    again = tmp_path / "again"
    build_dictionary(maps, again, patch=5, n_trees=4, search_k=200, progress=False)
    queries = np.random.default_rng(4).integers(0, 21, (30, 5, 5)).astype(np.uint8)
    first = PatchIndex.load(out, patch=5).query(queries, k=2, exact_lookup=False)
    second = PatchIndex.load(again, patch=5).query(queries, k=2, exact_lookup=False)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
