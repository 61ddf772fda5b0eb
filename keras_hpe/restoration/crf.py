"""The paper's CRF alternatives to eq. 2 (section 5.1), solved by loopy belief propagation.

Each hand pixel p chooses one of its K nearest dictionary patches x_p (K = the
"degree of approximation"). The energy over the 4-connected grid of hand pixels is

    E(x) = sum_p U_p(x_p) + weight * sum_{p~q} V(x_p, x_q)

with U_p(i) = Hamming distance between p's observed patch and candidate i, in
differing pixels, and the pairwise term V either
  "potts":   1 if the two chosen patches have different centre labels, else 0;
  "overlap": the number of differing pixels of the two chosen patches on the
             area where they overlap (each placed at its own pixel).
The paper used message passing (OpenGM); here min-sum loopy BP, synchronous,
vectorised over the grid, damped. The restored label of p is the centre label
of its chosen patch; pixels predicted not hand (0) stay 0, as in `voting`.
"""

from __future__ import annotations

import numpy as np

from keras_hpe.errors import UserError

PAIRWISE_TERMS = ("potts", "overlap")
# Ours (the paper tuned its weight on a hold-out set): unary costs count differing
# pixels of a 7 x 7 patch, a Potts disagreement costs as much as 2 of them, an
# overlap pixel half of one.
DEFAULT_PAIRWISE_WEIGHT = {"potts": 2.0, "overlap": 0.5}
_DAMPING = 0.5


def pairwise_costs(candidates: np.ndarray, pairwise: str) -> tuple[np.ndarray, np.ndarray]:
    """V for every horizontal and vertical edge of the grid.

    `candidates` is (S, S, K, P, P). Returns (horizontal (S, S-1, K, K),
    vertical (S-1, S, K, K)) float64, indexed [.., choice at p, choice at the
    right / lower neighbour].
    """
    if pairwise not in PAIRWISE_TERMS:
        raise UserError(f"unknown CRF pairwise term {pairwise!r}; known: {', '.join(PAIRWISE_TERMS)}")
    if pairwise == "potts":
        center = candidates.shape[-1] // 2
        labels = candidates[..., center, center]
        horizontal = labels[:, :-1, :, None] != labels[:, 1:, None, :]
        vertical = labels[:-1, :, :, None] != labels[1:, :, None, :]
        return horizontal.astype(np.float64), vertical.astype(np.float64)
    # The right neighbour's patch is shifted one column: p's columns 1.. meet its columns ..-1.
    left = candidates[:, :-1, :, None, :, 1:]
    right = candidates[:, 1:, None, :, :, :-1]
    horizontal = np.count_nonzero(left != right, axis=(-2, -1))
    upper = candidates[:-1, :, :, None, 1:, :]
    lower = candidates[1:, :, None, :, :-1, :]
    vertical = np.count_nonzero(upper != lower, axis=(-2, -1))
    return horizontal.astype(np.float64), vertical.astype(np.float64)


def loopy_bp_min_sum(
    unary: np.ndarray,
    horizontal: np.ndarray,
    vertical: np.ndarray,
    hand_mask: np.ndarray,
    iterations: int = 10,
) -> np.ndarray:
    """Approximately minimise sum U + sum V on the 4-connected grid of `hand_mask`.

    unary (S, S, K); horizontal (S, S-1, K, K), vertical (S-1, S, K, K) as from
    `pairwise_costs` (already weighted); returns the chosen candidate (S, S) int64.
    Edges touching a not-hand pixel carry no message.
    """
    unary = np.asarray(unary, dtype=np.float64)
    hand_mask = np.asarray(hand_mask, dtype=bool)
    h_edge = (hand_mask[:, :-1] & hand_mask[:, 1:])[..., None]
    v_edge = (hand_mask[:-1, :] & hand_mask[1:, :])[..., None]
    # Incoming messages at each pixel, by the side they come from.
    from_left, from_right, from_up, from_down = (np.zeros_like(unary) for _ in range(4))
    for _ in range(iterations):
        total = unary + from_left + from_right + from_up + from_down
        to_right = _message((total - from_right)[:, :-1], horizontal, h_edge)
        to_left = _message((total - from_left)[:, 1:], horizontal.swapaxes(-1, -2), h_edge)
        to_down = _message((total - from_down)[:-1], vertical, v_edge)
        to_up = _message((total - from_up)[1:], vertical.swapaxes(-1, -2), v_edge)
        from_left[:, 1:] = _DAMPING * from_left[:, 1:] + (1 - _DAMPING) * to_right
        from_right[:, :-1] = _DAMPING * from_right[:, :-1] + (1 - _DAMPING) * to_left
        from_up[1:] = _DAMPING * from_up[1:] + (1 - _DAMPING) * to_down
        from_down[:-1] = _DAMPING * from_down[:-1] + (1 - _DAMPING) * to_up
    total = unary + from_left + from_right + from_up + from_down
    return total.argmin(axis=-1)


def _message(outgoing: np.ndarray, pair: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """min over the sender's choice i of outgoing[i] + pair[i, j], normalised to min 0."""
    message = (outgoing[..., :, None] + pair).min(axis=-2)
    message -= message.min(axis=-1, keepdims=True)
    return np.where(edge, message, 0.0)


def crf_restore(
    candidates: np.ndarray,
    unary: np.ndarray,
    hand_mask: np.ndarray,
    *,
    pairwise: str = "potts",
    weight: float | None = None,
    iterations: int = 10,
) -> np.ndarray:
    """Restore one frame with the CRF: (S, S) uint8 centre labels of the chosen candidates.

    Args:
        candidates: (S, S, K, P, P) labels of each pixel's K nearest dictionary patches.
        unary: (S, S, K) their distance to the observed patch, in differing pixels.
        hand_mask: (S, S) bool.
        pairwise: "potts" or "overlap".
        weight: the pairwise weight (default `DEFAULT_PAIRWISE_WEIGHT[pairwise]`).
        iterations: loopy BP sweeps.
    """
    horizontal, vertical = pairwise_costs(candidates, pairwise)
    weight = DEFAULT_PAIRWISE_WEIGHT[pairwise] if weight is None else float(weight)
    choice = loopy_bp_min_sum(unary, weight * horizontal, weight * vertical, hand_mask, iterations)
    center = candidates.shape[-1] // 2
    chosen = np.take_along_axis(candidates[..., center, center], choice[..., None], axis=-1)[..., 0]
    return np.where(hand_mask, chosen, 0).astype(np.uint8)
