"""Label patches (paper section 3.2): extraction, one-hot encoding, de-duplication.

A patch is the P x P window of part labels centred on a hand pixel (label > 0);
pixels outside the map are not hand (0), like the arm and pixels without
depth. For the Hamming nearest-neighbour search each pixel is encoded one-hot
over the 21 symbols (not hand + 20 parts), so two codes differ in exactly 2 bits per differing pixel: Hamming
distance = 2 x the number of differing pixels.
"""

from __future__ import annotations

import numpy as np

from keras_hpe.data.skeleton import NUM_LABELS
from keras_hpe.errors import UserError

ENCODING = "onehot21"


def check_label_maps(label_maps: np.ndarray, name: str = "label maps") -> np.ndarray:
    """Return `label_maps` as (N, S, S) uint8, or raise UserError naming what is wrong."""
    label_maps = np.asarray(label_maps)
    if label_maps.ndim == 2:
        label_maps = label_maps[None]
    if label_maps.ndim != 3 or label_maps.shape[1] != label_maps.shape[2]:
        raise UserError(f"{name} must be (N, S, S) or (S, S), got shape {label_maps.shape}")
    if not np.issubdtype(label_maps.dtype, np.integer):
        raise UserError(f"{name} must hold integer part ids, got dtype {label_maps.dtype}")
    if label_maps.size and (label_maps.min() < 0 or label_maps.max() >= NUM_LABELS):
        raise UserError(
            f"{name} hold part ids {label_maps.min()}..{label_maps.max()}, expected 0..{NUM_LABELS - 1}"
        )
    return label_maps.astype(np.uint8, copy=False)


def check_patch_size(patch: int) -> int:
    """Patch sizes are odd (a centre pixel) and >= 1."""
    if int(patch) != patch or patch < 1 or patch % 2 == 0:
        raise UserError(f"patch size must be an odd integer >= 1, got {patch}")
    return int(patch)


def patch_windows(label_maps: np.ndarray, patch: int) -> np.ndarray:
    """All P x P windows of (N, S, S) maps, one per pixel: a (N, S, S, P, P) read-only view.

    The maps are zero-padded by P // 2 so that windows near the border see not hand (0).
    """
    half = check_patch_size(patch) // 2
    padded = np.pad(label_maps, ((0, 0), (half, half), (half, half)))
    return np.lib.stride_tricks.sliding_window_view(padded, (patch, patch), axis=(1, 2))


def extract_patches(label_maps: np.ndarray, patch: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The patches centred on every hand pixel of `label_maps` (N, S, S).

    Returns (patches (M, P, P) uint8, coords (M, 3) int64 as [frame, row, column]),
    in row-major pixel order.
    """
    label_maps = check_label_maps(label_maps)
    coords = np.argwhere(label_maps > 0)
    windows = patch_windows(label_maps, patch)
    return windows[coords[:, 0], coords[:, 1], coords[:, 2]], coords


def encode_onehot(patches: np.ndarray) -> np.ndarray:
    """(M, P, P) labels -> (M, P*P*21) uint8 bits; pixel-major, symbol-minor."""
    patches = np.asarray(patches, dtype=np.uint8)
    return np.eye(NUM_LABELS, dtype=np.uint8)[patches.reshape(len(patches), -1)].reshape(len(patches), -1)


def pack_onehot(patches: np.ndarray) -> np.ndarray:
    """(M, P, P) labels -> (M, words) uint64: the one-hot bits packed for popcount distances."""
    bits = np.packbits(encode_onehot(patches), axis=1)
    pad = (-bits.shape[1]) % 8
    bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.ascontiguousarray(bits).view(np.uint64)


def patch_keys(patches: np.ndarray) -> np.ndarray:
    """One opaque (void) key per patch, so NumPy can sort, unique and search whole patches."""
    flat = np.ascontiguousarray(np.asarray(patches, dtype=np.uint8).reshape(len(patches), -1))
    return flat.view(np.dtype((np.void, flat.shape[1]))).ravel()


def unique_patches(patches: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate (M, P, P) patches: (unique (U, P, P) sorted by key, counts (U,) int64).

    `counts` gives a multiplicity per input patch (default 1), so partial results merge.
    """
    patches = np.asarray(patches, dtype=np.uint8)
    shape = patches.shape[1:]
    keys, inverse = np.unique(patch_keys(patches), return_inverse=True)
    weights = np.ones(len(patches), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    merged = np.bincount(inverse.ravel(), weights=weights, minlength=len(keys)).astype(np.int64)
    unique = keys.view(np.uint8).reshape((len(keys),) + shape)
    return unique, merged


def differing_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of pixels at which patches (..., P, P) differ (= Hamming distance / 2)."""
    return np.count_nonzero(np.asarray(a) != np.asarray(b), axis=(-2, -1))
