"""Eq. 2: voting over the W x W window of retrieved patches."""

import numpy as np
import pytest

from keras_hpe.errors import UserError
from keras_hpe.restoration.voting import center_labels, integrate_votes


def _reference_votes(nn_patches, hand, window):
    """Eq. 2 written pixel by pixel, as in the paper (tiny inputs only)."""
    size, patch = hand.shape[0], nn_patches.shape[-1]
    half, c = window // 2, patch // 2
    out = np.zeros(hand.shape, np.uint8)
    for py in range(size):
        for px in range(size):
            if not hand[py, px]:
                continue
            votes = np.zeros(21, int)
            for qy in range(py - half, py + half + 1):
                for qx in range(px - half, px + half + 1):
                    if 0 <= qy < size and 0 <= qx < size and hand[qy, qx]:
                        label = nn_patches[qy, qx, c + py - qy, c + px - qx]
                        if label > 0:
                            votes[label] += 1
            own = nn_patches[py, px, c, c]
            score = 2 * votes
            score[own] += 1
            score[0] = -1
            out[py, px] = score.argmax()
    return out


def test_voting_on_a_3x3_toy():
    # Every pixel retrieved a patch of all 2s, except the centre pixel whose patch is all 5s.
    nn = np.full((3, 3, 3, 3), 2, np.uint8)
    nn[1, 1] = 5
    hand = np.ones((3, 3), bool)
    restored = integrate_votes(nn, hand, window=3)
    # The centre gets 8 votes for 2 and its own vote for 5; corners 3 votes for 2, 1 for 5.
    assert np.all(restored == 2)
    # Now 5 of the 9 patches say 5 at the centre pixel: the centre becomes 5.
    for y, x in [(0, 0), (0, 2), (2, 0), (2, 2)]:
        nn[y, x, 2 - y, 2 - x] = 5  # the position of the centre pixel in corner (y, x)'s patch
    restored = integrate_votes(nn, hand, window=3)
    assert restored[1, 1] == 5 and restored[0, 1] == 2


def test_voting_matches_the_pixelwise_definition():
    rng = np.random.default_rng(0)
    for window, patch in [(3, 3), (3, 5), (5, 7), (1, 3)]:
        nn = rng.integers(0, 6, (9, 9, patch, patch)).astype(np.uint8)
        nn[..., patch // 2, patch // 2] = rng.integers(1, 6, (9, 9))  # retrieved centres are hand labels
        hand = rng.random((9, 9)) < 0.7
        assert np.array_equal(integrate_votes(nn, hand, window), _reference_votes(nn, hand, window))


def test_batched_frames_are_independent():
    rng = np.random.default_rng(1)
    nn = rng.integers(1, 6, (3, 8, 8, 5, 5)).astype(np.uint8)
    hand = rng.random((3, 8, 8)) < 0.8
    batched = integrate_votes(nn, hand, 5)
    for i in range(3):
        assert np.array_equal(batched[i], integrate_votes(nn[i], hand[i], 5))


def test_background_stays_background_and_window_one_is_centre():
    rng = np.random.default_rng(2)
    nn = rng.integers(1, 6, (6, 6, 5, 5)).astype(np.uint8)
    hand = rng.random((6, 6)) < 0.5
    restored = integrate_votes(nn, hand, 3)
    assert np.all(restored[~hand] == 0) and np.all(restored[hand] > 0)
    assert np.array_equal(integrate_votes(nn, hand, 1), center_labels(nn, hand))


@pytest.mark.parametrize("window", [4, 9, 0])
def test_bad_windows_raise_user_error(window):
    with pytest.raises(UserError):
        integrate_votes(np.ones((4, 4, 7, 7), np.uint8), np.ones((4, 4), bool), window)


def test_pixels_predicted_not_hand_are_kept():
    # The hand is the left half; every retrieved patch says part 4 everywhere, the arm pixels (right half) too.
    nn = np.full((6, 6, 5, 5), 4, np.uint8)
    hand = np.zeros((6, 6), bool)
    hand[:, :3] = True
    for restore in (integrate_votes(nn, hand, window=3), center_labels(nn, hand)):
        assert np.all(restore[:, :3] == 4) and np.all(restore[:, 3:] == 0)
    # Votes for not hand are ignored: a hand pixel stays a hand part even if every neighbour says 0 there.
    nn[..., 0:4, 0:4] = 0
    nn[..., 2, 2] = 6
    assert np.all(integrate_votes(nn, hand, window=3)[hand] > 0)
