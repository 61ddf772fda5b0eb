"""Restoration of predicted label maps against the patch dictionary (paper section 3.2).

Methods: "integrate" (eq. 1 nearest patch per hand pixel, then eq. 2 voting),
"center" (the nearest patch's centre label), "none" (the prediction unchanged),
"crf-potts" and "crf-overlap" (section 5.1's CRF over the K nearest patches).
Many frames are restored by worker processes; each loads the memory-mapped
dictionary itself, so they share its pages.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from keras_hpe.errors import UserError
from keras_hpe.restoration.crf import crf_restore
from keras_hpe.restoration.index import PatchIndex
from keras_hpe.restoration.patches import check_label_maps, extract_patches
from keras_hpe.restoration.voting import center_labels, check_window, integrate_votes

METHODS = ("integrate", "center", "none", "crf-potts", "crf-overlap")
DEFAULT_CRF_K = 5

_worker_index: PatchIndex | None = None


def restore_batch(
    pred_labels: np.ndarray,
    index: PatchIndex,
    *,
    method: str = "integrate",
    window: int = 5,
    k: int | None = None,
    pairwise_weight: float | None = None,
    crf_iterations: int = 10,
) -> np.ndarray:
    """Restore (N, S, S) predicted maps in this process; see `restore_frames`."""
    labels = check_label_maps(pred_labels, "predicted label maps")
    _check_method(method)
    if method == "none":
        return labels.copy()
    check_window(window, index.patch)
    k = _default_k(method, k)
    hand = labels > 0
    if not method.startswith("crf"):
        ids, _, coords = index.match_maps(labels)
        nn_patches = np.zeros(labels.shape + (index.patch, index.patch), np.uint8)
        nn_patches[tuple(coords.T)] = index.patches[ids]
        if method == "center":
            return center_labels(nn_patches, hand)
        return integrate_votes(nn_patches, hand, window)
    patches, coords = extract_patches(labels, index.patch)
    ids, hamming = index.query(patches, k)
    frame, row, col = coords.T
    k = ids.shape[1]  # at most the dictionary's size
    candidates = np.zeros(labels.shape + (k, index.patch, index.patch), np.uint8)
    candidates[frame, row, col] = index.patches[ids.ravel()].reshape(ids.shape + (index.patch, index.patch))
    unary = np.zeros(labels.shape + (k,), np.float64)
    unary[frame, row, col] = hamming / 2  # differing pixels
    pairwise = method.removeprefix("crf-")
    return np.stack([
        crf_restore(candidates[i], unary[i], hand[i], pairwise=pairwise, weight=pairwise_weight,
                    iterations=crf_iterations)
        for i in range(len(labels))
    ])


def restore_frames(
    pred_labels: np.ndarray,
    index: PatchIndex | str | Path,
    *,
    method: str = "integrate",
    window: int = 5,
    k: int | None = None,
    workers: int = 1,
    patch: int = 7,
    pairwise_weight: float | None = None,
    crf_iterations: int = 10,
    chunk_frames: int = 16,
    progress: bool = False,
    pool: "RestorationPool | None" = None,
) -> np.ndarray:
    """Restore predicted label maps (N, S, S) uint8 -> restored maps (N, S, S) uint8.

    Args:
        pred_labels: the segmentation network's labels, 0 = not hand.
        index: a loaded `PatchIndex` or its folder (opened with `patch`); Annoy's
            search_k and the propagation steps are the index's
            (`PatchIndex.load(..., search_k=..., propagation_steps=...)`).
        method: one of `METHODS`.
        window: W of eq. 2 ("integrate").
        k: candidates per pixel (default 1, or `DEFAULT_CRF_K` for the CRFs).
        workers: processes; > 1 restores chunks of `chunk_frames` frames in parallel
            (spawned workers, each loading the index itself). The result does not
            depend on it.
        pairwise_weight, crf_iterations: the CRF's weight and loopy BP sweeps.
        progress: show a progress bar over frames.
        pool: a `RestorationPool` of this index to restore in; its workers
            replace `workers`, and it stays open for the caller's next calls.
    Not-hand pixels stay 0, hand pixels stay hand pixels (why: `restoration.voting`).
    """
    labels = check_label_maps(pred_labels, "predicted label maps")
    _check_method(method)
    if not isinstance(index, PatchIndex):
        index = PatchIndex.load(index, patch)
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    options = dict(method=method, window=window, k=k, pairwise_weight=pairwise_weight, crf_iterations=crf_iterations)
    starts = range(0, len(labels), max(1, chunk_frames))
    chunks = [labels[start:start + chunk_frames] for start in starts]
    restored = []
    with tqdm(total=len(labels), unit="frame", desc=f"restore ({method})", disable=not progress) as bar:
        if pool is None and (workers == 1 or len(chunks) <= 1):
            for chunk in chunks:
                restored.append(restore_batch(chunk, index, **options))
                bar.update(len(chunk))
        else:
            with contextlib.ExitStack() as stack:
                if pool is None:
                    pool = stack.enter_context(RestorationPool(index, min(workers, len(chunks))))
                for chunk, result in zip(chunks, pool.imap(chunks, options)):
                    restored.append(result)
                    bar.update(len(chunk))
    if not restored:
        return labels.copy()
    return np.concatenate(restored)


class RestorationPool:
    """Worker processes that restore with one index, opened once for a whole run.

    Starting a spawned worker costs an interpreter and an index load, so a run
    that restores many chunks (`pseudo_labels.restore_dataset`, the Table 2
    methods) keeps one pool open instead of one per call:

        with RestorationPool(index, workers=2) as pool:
            for chunk in chunks:
                restore_frames(chunk, index, pool=pool)
    """

    def __init__(self, index: PatchIndex, workers: int) -> None:
        if workers < 1:
            raise UserError(f"workers must be >= 1, got {workers}")
        # spawn, not fork: the parent may hold TensorFlow's threads, which fork does not survive.
        self._pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(index,))

    def imap(self, chunks: list[np.ndarray], options: dict):
        """Restored chunks, in order."""
        return self._pool.imap(_restore_in_worker, [(chunk, options) for chunk in chunks])

    def __enter__(self) -> "RestorationPool":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.terminate()
        self._pool.join()


def _init_worker(index: PatchIndex) -> None:
    # The index arrives pickled as its folder and is re-opened (memory-mapped) here.
    global _worker_index
    _worker_index = index


def _restore_in_worker(job: tuple[np.ndarray, dict]) -> np.ndarray:
    chunk, options = job
    return restore_batch(chunk, _worker_index, **options)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"unknown restoration method {method!r}; known: {', '.join(METHODS)}")


def _default_k(method: str, k: int | None) -> int:
    if k is None:
        return DEFAULT_CRF_K if method.startswith("crf") else 1
    if k < 1:
        raise UserError(f"k (candidates per pixel) must be >= 1, got {k}")
    return int(k)
