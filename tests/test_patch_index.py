"""The Annoy Hamming dictionary: build, meta.json, queries, load errors."""

import json
import re
import shutil

import numpy as np
import pytest

from keras_hpe.errors import UserError
from keras_hpe.restoration.index import NEIGHBOUR_OFFSETS, PatchIndex, build_dictionary, exact_nearest
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


def test_neighbours_are_the_patches_one_pixel_away_in_the_source_maps(built):
    maps, out, _ = built
    index = PatchIndex.load(out, patch=5)
    patches, coords = extract_patches(maps, patch=5)
    ids = index.query(patches)[0][:, 0]
    id_at = {tuple(c): i for c, i in zip(coords.tolist(), ids.tolist())}
    seen = {}  # (patch id, offset) -> ids of the patches found there, over every occurrence
    for (frame, row, col), own in zip(coords.tolist(), ids.tolist()):
        for column, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
            found = id_at.get((frame, row + dy, col + dx))
            if found is not None:
                seen.setdefault((own, column), set()).add(found)
    table = np.asarray(index.neighbours)
    assert table.shape == (len(index), 8) and (table >= 0).any() and (table < 0).any()
    for own in range(len(index)):
        for column in range(8):
            if table[own, column] < 0:
                assert (own, column) not in seen
            else:
                assert table[own, column] in seen[(own, column)]


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


def _copy(out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def test_patch_size_mismatch_names_the_option_and_both_sizes(built):
    _, out, _ = built
    with pytest.raises(UserError, match=r"patch size 5, but --patch is 7: give --patch 5"):
        PatchIndex.load(out, patch=7)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bits": 24 * 21}, "'bits' must be patch x patch x num_labels = 525"),
        ({"patch": "5"}, "'patch' must be an integer >= 1"),
        ({"patch": 4, "bits": 16 * 21}, "'patch' must be odd"),
        ({"num_labels": 20, "bits": 25 * 20}, "'num_labels' must be 21"),
        ({"patches_unique": 10**9}, "'patches_unique' must be at most patches_total"),
        ({"n_trees": 0}, "'n_trees' must be an integer >= 1"),
        ({"encoding": None}, "'encoding' must be a string"),
        ({"index_file": "../patches.ann"}, "'index_file' must be a file name in the dictionary folder"),
        ({"build_seconds": 3}, "'build_seconds' must be an object"),
        ({"index_bytes": None}, "'index_bytes' must be an integer >= 1"),
        ({"format": "keras_hpe.patch_dictionary/1"}, "unknown format 'keras_hpe.patch_dictionary/1', expected "
         "'keras_hpe.patch_dictionary/2': rebuild the dictionary"),  # made before neighbours.npy
    ],
)
def test_meta_values_are_checked(built, tmp_path, change, message):
    _, out, _ = built
    copy = _copy(out, tmp_path)
    values = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**values, **change}))
    with pytest.raises(UserError, match=re.escape(message)) as error:
        PatchIndex.load(copy, patch=values["patch"] if "patch" not in change else 5)
    assert str(copy / "meta.json") in str(error.value)


@pytest.mark.parametrize("content, message", [("[1]", "unknown format 'list'"), ("\udcff", "not valid JSON")])
def test_meta_json_must_be_an_object(built, tmp_path, content, message):
    copy = _copy(built[1], tmp_path)
    (copy / "meta.json").write_bytes(content.encode(errors="surrogateescape"))
    with pytest.raises(UserError, match=message):
        PatchIndex.load(copy, patch=5)


def test_meta_without_the_index_size_is_refused(built, tmp_path):
    copy = _copy(built[1], tmp_path)
    values = json.loads((copy / "meta.json").read_text())
    del values["index_bytes"]
    (copy / "meta.json").write_text(json.dumps(values))
    with pytest.raises(UserError, match="lacks the key.s. index_bytes: rebuild the dictionary"):
        PatchIndex.load(copy, patch=5)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-64])


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("patches.npy", lambda path: path.write_bytes(b""), "not a readable .npy array"),
        ("patches.npy", _truncate, "not a readable .npy array"),
        ("counts.npy", lambda path: np.save(path, np.ones(3, np.int32)), "is int32(3,), meta.json expects int64"),
        ("counts.npy", lambda path: np.save(path, np.zeros_like(np.load(path))), "counts (each >= 1) must sum"),
        ("patches.npy", lambda path: np.save(path, np.load(path) + 21), "part ids 0..20"),
        ("patches.ann", _truncate, "truncated or from another build"),
        ("neighbours.npy", lambda path: np.save(path, np.load(path)[:, :4]), "meta.json expects int32"),
        ("neighbours.npy", lambda path: np.save(path, np.load(path) + len(np.load(path))), "ids must be -1.."),
        ("patches.ann", lambda path: path.write_bytes(b""), "truncated or from another build"),
    ],
)
def test_damaged_dictionary_files_are_named(built, tmp_path, name, damage, message):
    copy = _copy(built[1], tmp_path)
    damage(copy / name)
    with pytest.raises(UserError, match=re.escape(message)) as error:
        PatchIndex.load(copy, patch=5)
    assert str(copy / name) in str(error.value)


def test_annoy_item_count_must_match_the_meta(built, tmp_path):
    maps, out, _ = built
    other = tmp_path / "other"
    build_dictionary(maps[:1], other, patch=5, n_trees=4, progress=False)
    copy = _copy(out, tmp_path)
    shutil.copyfile(other / "patches.ann", copy / "patches.ann")
    values = json.loads((copy / "meta.json").read_text())
    values["index_bytes"] = (other / "patches.ann").stat().st_size
    (copy / "meta.json").write_text(json.dumps(values))
    with pytest.raises(UserError, match=f"holds {len(np.load(other / 'counts.npy'))} patches, meta.json says"):
        PatchIndex.load(copy, patch=5)
