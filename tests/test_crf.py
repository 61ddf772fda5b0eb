"""The CRF variants: pairwise terms and min-sum loopy belief propagation."""

import itertools

import numpy as np
import pytest

from keras_hpe.errors import UserError
from keras_hpe.restoration.crf import crf_restore, loopy_bp_min_sum, pairwise_costs


def test_bp_is_exact_on_a_chain():
    # On a tree min-sum BP finds the global minimum: compare with enumeration on a 1 x 5 chain.
    rng = np.random.default_rng(0)
    k, length = 3, 5
    for trial in range(5):
        unary = rng.random((1, length, k)) * 3
        horizontal = rng.random((1, length - 1, k, k)) * 2
        vertical = np.zeros((0, length, k, k))
        choice = loopy_bp_min_sum(unary, horizontal, vertical, np.ones((1, length), bool), iterations=30)

        def energy(x):
            return sum(unary[0, i, x[i]] for i in range(length)) + sum(
                horizontal[0, i, x[i], x[i + 1]] for i in range(length - 1)
            )

        best = min(itertools.product(range(k), repeat=length), key=energy)
        assert energy(choice[0]) == pytest.approx(energy(best))


def _constant_patches(labels_per_candidate, size=3, patch=3):
    """(size, size, K, P, P) candidates: candidate i is a constant patch of its label."""
    labels = np.asarray(labels_per_candidate, np.uint8)
    return np.broadcast_to(labels[:, None, None], (size, size, len(labels), patch, patch)).copy()


def test_potts_smooths_an_isolated_disagreement():
    # Candidate 0 is label 3, candidate 1 is label 9; every pixel slightly prefers 0 except the centre.
    candidates = _constant_patches([3, 9])
    unary = np.zeros((3, 3, 2))
    unary[..., 1] = 1.0
    unary[1, 1] = [1.0, 0.0]
    hand = np.ones((3, 3), bool)
    unregularised = crf_restore(candidates, unary, hand, pairwise="potts", weight=0.0)
    assert unregularised[1, 1] == 9 and np.sum(unregularised == 3) == 8
    smoothed = crf_restore(candidates, unary, hand, pairwise="potts", weight=1.0)
    assert np.all(smoothed == 3)
    smoothed = crf_restore(candidates, unary, hand, pairwise="overlap", weight=0.5)
    assert np.all(smoothed == 3)


def test_background_pixels_stay_zero_and_carry_no_messages():
    candidates = _constant_patches([3, 9])
    unary = np.zeros((3, 3, 2))
    unary[..., 1] = 1.0
    unary[1, 1] = [1.0, 0.0]
    hand = np.ones((3, 3), bool)
    hand[0, 1] = hand[1, 0] = hand[1, 2] = hand[2, 1] = False  # the centre is isolated
    restored = crf_restore(candidates, unary, hand, pairwise="potts", weight=5.0)
    assert restored[1, 1] == 9 and np.all(restored[~hand] == 0)


def test_overlap_cost_counts_differing_pixels_on_the_overlap():
    rng = np.random.default_rng(1)
    candidates = rng.integers(0, 4, (2, 2, 2, 5, 5)).astype(np.uint8)
    horizontal, vertical = pairwise_costs(candidates, "overlap")
    assert horizontal.shape == (2, 1, 2, 2) and vertical.shape == (1, 2, 2, 2)
    for i, j in itertools.product(range(2), repeat=2):
        # Pixel (a, b) of the left patch is pixel (a, b - 1) of its right neighbour's.
        left, right = candidates[0, 0, i], candidates[0, 1, j]
        assert horizontal[0, 0, i, j] == np.count_nonzero(left[:, 1:] != right[:, :-1])
        upper, lower = candidates[0, 1, i], candidates[1, 1, j]
        assert vertical[0, 1, i, j] == np.count_nonzero(upper[1:, :] != lower[:-1, :])
    potts_h, _ = pairwise_costs(candidates, "potts")
    centres = candidates[..., 2, 2]
    assert potts_h[1, 0, 1, 0] == float(centres[1, 0, 1] != centres[1, 1, 0])


def test_unknown_pairwise_term():
    with pytest.raises(UserError, match="pairwise"):
        pairwise_costs(np.zeros((2, 2, 1, 3, 3), np.uint8), "ising")
