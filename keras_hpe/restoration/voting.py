"""Integration of the retrieved patches (paper eq. 2) and the "centre label" baseline.

Every hand pixel q has retrieved a dictionary patch n(q) (eq. 1). Pixel p lies
inside the patches of all neighbours q of its W x W window, at position
c + (p - q) of n(q) (c = P // 2, the patch centre); each such neighbour votes for
the label n(q) puts there, and p takes the label with most votes:

    l(p) = argmax_l  sum_{q in W(p)}  delta(n(q)[c + p - q] = l)

Only hand neighbours vote, votes for 0 (not hand) are ignored, and a pixel
predicted not hand (0: the arm, or no depth) is kept: restoration relabels
the hand's parts, not its outline. Measured on a tiny reproduction
(`keras-hpe reproduce --preset tiny`, the stage-1 model, 16 frames each,
`evaluation.segmentation` over hand pixels), against voting every pixel with
depth and letting 0 win:

| restoration                    | real: per pixel | hand IoU | synthetic: per pixel | hand IoU |
|--------------------------------|-----------------|----------|----------------------|----------|
| none                           | 36.44%          | 63.17%   | 28.01%               | 59.24%   |
| not hand kept (this module)    | 38.33%          | 63.17%   | 30.48%               | 59.24%   |
| every foreground pixel voted   | 37.73%          | 63.68%   | 29.61%               | 57.56%   |

Keeping gains more accuracy on both domains; the IoU moves either way by
less than 2 points. The dictionary holds hand-centred patches only, so an
arm pixel's query always retrieves a hand patch, and the votes would need
the depth, which the label maps alone do not carry.
"""

from __future__ import annotations

import numpy as np

from keras_hpe.data.skeleton import NUM_LABELS
from keras_hpe.errors import UserError


def check_window(window: int, patch: int) -> int:
    """The window must be odd and fit in a patch (W <= P): every neighbour's patch covers p."""
    if int(window) != window or window < 1 or window % 2 == 0:
        raise UserError(f"integration window must be an odd integer >= 1, got {window}")
    if window > patch:
        raise UserError(f"integration window {window} is larger than the patch size {patch}")
    return int(window)


def integrate_votes(nn_patches: np.ndarray, hand_mask: np.ndarray, window: int = 5) -> np.ndarray:
    """Restore labels by voting over a W x W window (paper eq. 2).

    Args:
        nn_patches: (..., S, S, P, P) labels of the patch each pixel retrieved
            (values at non-hand pixels are ignored).
        hand_mask: (..., S, S) bool, the hand pixels.
        window: W, odd, <= P.
    Returns (..., S, S) uint8. Ties go to the pixel's own retrieved centre label,
    then to the lowest part id.

    0.7 ms per 64 x 64 frame (16 frames of stage-1 predictions at a time, median of 20):
    under 2% of a restoration at the defaults, whose time Annoy's searches take (94%,
    cProfile of `restore.restore_batch` against a 1 M-patch dictionary).
    """
    nn_patches = np.asarray(nn_patches)
    hand_mask = np.asarray(hand_mask, dtype=bool)
    patch = nn_patches.shape[-1]
    half, center = check_window(window, patch) // 2, patch // 2
    own = nn_patches[..., center, center]
    pixel = np.arange(hand_mask.size).reshape(hand_mask.shape)
    ballots = []
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            # Neighbour q = p + (dy, dx) holds p at (c - dy, c - dx) of its patch.
            label = _shift(nn_patches[..., center - dy, center - dx], dy, dx)
            voter = _shift(hand_mask, dy, dx) & hand_mask & (label > 0)
            ballots.append(pixel[voter] * NUM_LABELS + label[voter])
    votes = np.bincount(np.concatenate(ballots), minlength=hand_mask.size * NUM_LABELS)
    # Doubling the counts and adding 1 for the own label breaks ties towards it.
    score = 2 * votes.reshape(hand_mask.shape + (NUM_LABELS,)) + np.eye(NUM_LABELS, dtype=np.int64)[own]
    score[..., 0] = -1
    return np.where(hand_mask, score.argmax(axis=-1), 0).astype(np.uint8)


def center_labels(nn_patches: np.ndarray, hand_mask: np.ndarray) -> np.ndarray:
    """The naive restoration: each hand pixel takes the centre label of its retrieved patch."""
    nn_patches = np.asarray(nn_patches)
    center = nn_patches.shape[-1] // 2
    return np.where(np.asarray(hand_mask, bool), nn_patches[..., center, center], 0).astype(np.uint8)


def _shift(values: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[..., y, x] = values[..., y + dy, x + dx], zero (False) where that falls outside."""
    out = np.zeros_like(values)
    height, width = values.shape[-2:]
    out[..., max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)] = values[
        ..., max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)
    ]
    return out
