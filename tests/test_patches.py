"""Label patches: extraction, one-hot encoding (Hamming = 2 x differing pixels), de-duplication."""

import numpy as np
import pytest

from keras_hpe.data.skeleton import NUM_LABELS
from keras_hpe.errors import UserError
from keras_hpe.restoration.patches import (
    check_label_maps,
    differing_pixels,
    encode_onehot,
    extract_patches,
    pack_onehot,
    unique_patches,
)


def _random_maps(rng, n=3, size=12):
    maps = rng.integers(0, NUM_LABELS, (n, size, size)).astype(np.uint8)
    maps[rng.random(maps.shape) < 0.4] = 0
    return maps


def test_extract_patches_centres_and_border_padding():
    rng = np.random.default_rng(0)
    maps = _random_maps(rng)
    patches, coords = extract_patches(maps, patch=5)
    assert len(patches) == np.count_nonzero(maps) == len(coords)
    assert np.array_equal(patches[:, 2, 2], maps[coords[:, 0], coords[:, 1], coords[:, 2]])
    padded = np.pad(maps, ((0, 0), (2, 2), (2, 2)))
    for (frame, row, col), patch in zip(coords[:20], patches[:20]):
        assert np.array_equal(patch, padded[frame, row:row + 5, col:col + 5])
    corner = np.zeros((1, 6, 6), np.uint8)
    corner[0, 0, 0] = 7
    (only,), _ = extract_patches(corner, patch=3)
    assert only[1, 1] == 7 and only.sum() == 7  # outside the map is background


def test_onehot_hamming_is_twice_the_differing_pixels():
    rng = np.random.default_rng(1)
    a, _ = extract_patches(_random_maps(rng), patch=7)
    b, _ = extract_patches(_random_maps(rng), patch=7)
    m = min(len(a), len(b))
    a, b = a[:m], b[:m]
    codes_a, codes_b = encode_onehot(a), encode_onehot(b)
    assert codes_a.shape == (m, 7 * 7 * NUM_LABELS)
    assert np.all(codes_a.sum(axis=1) == 49)  # exactly one bit per pixel
    bit_distance = np.count_nonzero(codes_a != codes_b, axis=1)
    assert np.array_equal(bit_distance, 2 * differing_pixels(a, b))
    popcount = np.bitwise_count(pack_onehot(a) ^ pack_onehot(b)).sum(axis=1)
    assert np.array_equal(popcount, bit_distance)


def test_unique_patches_counts_and_merge():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 3, (6, 3, 3)).astype(np.uint8)
    picks = rng.integers(0, 6, 50)
    unique, counts = unique_patches(base[picks])
    assert counts.sum() == 50
    assert len(unique) == len({p.tobytes() for p in base[picks]})
    for patch, count in zip(unique, counts):
        assert count == np.sum(np.all(base[picks] == patch, axis=(1, 2)))
    # merging two partial results with their counts gives the counts of the whole
    u1, c1 = unique_patches(base[picks[:20]])
    u2, c2 = unique_patches(base[picks[20:]])
    merged, merged_counts = unique_patches(np.concatenate([u1, u2]), np.concatenate([c1, c2]))
    assert np.array_equal(merged, unique) and np.array_equal(merged_counts, counts)


@pytest.mark.parametrize(
    "maps",
    [np.full((2, 4, 4), 21, np.uint8), np.zeros((2, 4, 5), np.uint8), np.zeros((2, 4, 4), np.float32)],
)
def test_bad_label_maps_raise_user_error(maps):
    with pytest.raises(UserError):
        check_label_maps(maps)


def test_even_patch_size_is_rejected():
    with pytest.raises(UserError, match="odd"):
        extract_patches(np.ones((1, 4, 4), np.uint8), patch=4)
