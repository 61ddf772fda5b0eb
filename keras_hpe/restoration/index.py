"""The patch dictionary (paper section 3.2): an Annoy Hamming index over synthetic label patches.

A dictionary folder holds
  patches.ann   the Annoy index (metric "hamming", one-hot codes), memory-mapped when loaded,
                so worker processes that each load it share one copy of its pages;
  patches.npy   the unique patches' labels (U, P, P) uint8, row i = Annoy item i,
                sorted by their bytes so that exact matches are found by binary search;
  counts.npy    how often each unique patch occurred (U,) int64;
  neighbours.npy  (U, 8) int32: the patch one pixel away in each direction of `NEIGHBOUR_OFFSETS`
                where the patch occurred in the source maps (-1: not a hand pixel there), which
                `PatchIndex.match_maps` propagates from pixel to pixel;
  meta.json     `DictionaryMeta`: patch size, encoding, counts, trees, source data manifest.
The folder is written atomically: it appears complete or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from tqdm.auto import tqdm

import keras_hpe
from keras_hpe.checks import is_file_name, is_int, require, shown
from keras_hpe.outputs import atomic_path, write_text
from keras_hpe.data.skeleton import NUM_LABELS
from keras_hpe.errors import UserError
from keras_hpe.restoration.patches import (
    ENCODING,
    check_label_maps,
    check_patch_size,
    differing_pixels,
    encode_onehot,
    extract_patches,
    pack_onehot,
    patch_keys,
    unique_patches,
)

# /2: neighbours.npy added.
FORMAT = "keras_hpe.patch_dictionary/2"
META_NAME = "meta.json"
INDEX_NAME = "patches.ann"
PATCHES_NAME = "patches.npy"
COUNTS_NAME = "counts.npy"
NEIGHBOURS_NAME = "neighbours.npy"
# (dy, dx) of the columns of neighbours.npy; column j's opposite offset is column 7 - j.
NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
# Annoy's trees, leaf items inspected per query (search_k), and steps of propagation between
# neighbouring pixels (`PatchIndex.match_maps`). Measured by benchmarks/restore_benchmark.py
# (--seg runs/quick/seg_synth/seg_synth.keras --real runs/quick/real_test/data): 1,000,337
# patches from 3,158 synthetic frames; queries the stage-1 predictions of 50 simulated real
# frames (489 hand pixels each); ratio = mean Hamming distance of the matches over the exact
# nearest neighbours' on 1,000 of their pixels; CPU ms per frame of `restore.restore_batch`
# in one process (median of 3; 2 shared cores, load average ~7 from other jobs). Build = adding
# the items + the trees + neighbours.npy, in seconds, under that load.
#
# | trees | build s | index MB | search_k | Annoy alone: ms | ratio | + 2 steps: ms | ratio | exact NN |
# |-------|---------|----------|----------|-----------------|-------|---------------|-------|----------|
# | 8     | 72      | 317      | 250      | 31.9            | 1.159 | 32.3          | 1.043 | 72%      |
# | 8     | 72      | 317      | 500      | 40.7            | 1.142 | 41.1          | 1.038 | 75%      |
# | 16    | 85      | 489      | 100      | 23.3            | 1.224 | 24.2          | 1.065 | 62%      |
# | 16    | 85      | 489      | 250      | 34.6            | 1.130 | 35.8          | 1.038 | 74%      |
# | 16    | 85      | 489      | 500      | 49.3            | 1.090 | 50.4          | 1.024 | 82%      |
# | 16    | 85      | 489      | 1000     | 70.6            | 1.079 | 74.4          | 1.021 | 84%      |
# | 16    | 85      | 489      | 2000     | 131.6           | 1.059 | 124.6         | 1.017 | 87%      |
# | 32    | 135     | 832      | 500      | 54.9            | 1.081 | 54.7          | 1.022 | 83%      |
# | 32    | 135     | 832      | 1000     | 82.7            | 1.054 | 85.4          | 1.014 | 89%      |
#
# Annoy alone gets under 1.05 only at 32 trees and search_k 2000 (1.046, 129 ms); propagation
# costs ~1 ms per frame and gets there from search_k 250. At a fixed search_k more trees buy
# little (the candidates spread over more trees), so 16 trees: 8 are 0.01 - 0.02 further from
# exact, 32 take 1.6x the build time and 1.7x the disk. search_k 500 leaves room under 1.05
# (on another 60 frames and 1,000 pixels: 1.033, where 250 gave 1.049) at ~50 ms of one core
# per frame, which two worker processes share on two cores. Propagation steps on those 60
# frames, search_k 500: none 1.107, one 1.040, two 1.033, three 1.032. Asking Annoy for every
# other pixel only and propagating to the rest halves the searches but gives 1.063 (search_k
# 500, 4 steps): worse than every pixel at search_k 250.
# The defaults before propagation were 16 trees and search_k 1000: 70.6 ms, 1.079.
DEFAULT_TREES = 16
DEFAULT_SEARCH_K = 500
DEFAULT_PROPAGATION_STEPS = 2
_ADD_BATCH = 4096


@dataclass
class DictionaryMeta:
    """What a dictionary folder holds (its meta.json)."""

    patch: int
    encoding: str
    num_labels: int
    bits: int
    patches_total: int
    patches_unique: int
    frames: int
    n_trees: int
    search_k: int
    seed: int
    # The size of patches.ann: a shorter file is truncated, and Annoy must not load one (it can crash).
    index_bytes: int
    build_seconds: dict
    source_manifest: dict = field(default_factory=dict)
    index_file: str = INDEX_NAME
    patches_file: str = PATCHES_NAME
    counts_file: str = COUNTS_NAME
    neighbours_file: str = NEIGHBOURS_NAME
    format: str = FORMAT
    version: str = keras_hpe.__version__

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = META_NAME) -> "DictionaryMeta":
        """Check every value of a meta.json (UserError naming `source` and the key) and build it."""
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise UserError(f"{source}: unknown format {shown(found)}, expected {FORMAT!r}: rebuild the dictionary")
        names = set(cls.__dataclass_fields__)
        missing = names - set(values)
        if missing:
            raise UserError(f"{source} lacks the key(s) {', '.join(sorted(missing))}: rebuild the dictionary")
        for key in ("patch", "num_labels", "bits", "patches_total", "patches_unique", "frames", "n_trees", "search_k",
                    "index_bytes"):
            require(is_int(values[key]) and values[key] >= 1, source, key, "an integer >= 1", values[key])
        require(is_int(values["seed"]), source, "seed", "an integer", values["seed"])
        patch, num_labels = values["patch"], values["num_labels"]
        require(patch % 2 == 1, source, "patch", "odd (patches have a centre pixel)", patch)
        require(num_labels == NUM_LABELS, source, "num_labels", f"{NUM_LABELS} (not hand and 20 parts)", num_labels)
        bits = patch * patch * num_labels
        require(values["bits"] == bits, source, "bits", f"patch x patch x num_labels = {bits}", values["bits"])
        require(values["patches_unique"] <= values["patches_total"], source, "patches_unique",
                f"at most patches_total ({values['patches_total']})", values["patches_unique"])
        for key in ("encoding", "version"):
            require(isinstance(values[key], str), source, key, "a string", values[key])
        for key in ("build_seconds", "source_manifest"):
            require(isinstance(values[key], dict), source, key, "an object", values[key])
        for key in ("index_file", "patches_file", "counts_file", "neighbours_file"):
            require(is_file_name(values[key]), source, key, "a file name in the dictionary folder", values[key])
        return cls(**{name: values[name] for name in names})


def build_dictionary(
    label_maps: np.ndarray,
    out_dir: str | Path,
    *,
    patch: int = 7,
    n_trees: int = DEFAULT_TREES,
    search_k: int = DEFAULT_SEARCH_K,
    seed: int = 0,
    n_jobs: int = 1,
    chunk_frames: int = 1024,
    source_manifest: dict | None = None,
    progress: bool = True,
) -> DictionaryMeta:
    """Extract, de-duplicate and index the patches of `label_maps` (N, S, S) into `out_dir`.

    `n_jobs` > 1 builds trees in parallel threads, faster but the tree layout then
    depends on thread timing; the default 1 gives the same index for the same seed.
    An existing `out_dir` is replaced only if it is a dictionary folder.
    """
    label_maps = check_label_maps(label_maps)
    patch = check_patch_size(patch)
    if n_trees < 1:
        raise UserError(f"n_trees must be >= 1, got {n_trees}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / META_NAME).exists():
        raise UserError(f"{out_dir} exists and is not a patch dictionary: refusing to replace it")

    start = time.perf_counter()
    unique, counts, total = _unique_patches_chunked(label_maps, patch, chunk_frames, progress)
    if len(unique) == 0:
        raise UserError("the label maps have no hand pixel (label > 0): nothing to put in the dictionary")
    extract_seconds = time.perf_counter() - start

    bits = patch * patch * NUM_LABELS
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / PATCHES_NAME, unique)
        np.save(tmp / COUNTS_NAME, counts)
        start = time.perf_counter()
        np.save(tmp / NEIGHBOURS_NAME, _neighbour_table(label_maps, unique, patch, chunk_frames))
        neighbours_seconds = time.perf_counter() - start
        index = AnnoyIndex(bits, "hamming")
        index.set_seed(seed)
        index.on_disk_build(str(tmp / INDEX_NAME))
        start = time.perf_counter()
        with tqdm(total=len(unique), unit="patch", desc="index patches", disable=not progress) as bar:
            # Annoy converts one Python sequence per item, element by element; a row's
            # bytes are the cheapest such sequence. Batches keep the one-hot arrays small.
            for first in range(0, len(unique), _ADD_BATCH):
                rows = encode_onehot(unique[first:first + _ADD_BATCH])
                for offset, row in enumerate(rows):
                    index.add_item(first + offset, row.tobytes())
                bar.update(len(rows))
        add_seconds = time.perf_counter() - start
        start = time.perf_counter()
        if progress:
            print(f"building {n_trees} Annoy trees over {len(unique):,} patches ...", flush=True)
        index.build(n_trees, n_jobs=n_jobs)
        index.unload()
        index_bytes = (tmp / INDEX_NAME).stat().st_size
        meta = DictionaryMeta(
            patch=patch,
            encoding=ENCODING,
            num_labels=NUM_LABELS,
            bits=bits,
            patches_total=int(total),
            patches_unique=int(len(unique)),
            frames=int(len(label_maps)),
            n_trees=int(n_trees),
            search_k=int(search_k),
            seed=int(seed),
            index_bytes=index_bytes,
            build_seconds={
                "extract": round(extract_seconds, 3),
                "neighbours": round(neighbours_seconds, 3),
                "add_items": round(add_seconds, 3),
                "build_trees": round(time.perf_counter() - start, 3),
            },
            source_manifest=dict(source_manifest or {}),
        )
        write_text(tmp / META_NAME, json.dumps(meta.to_dict(), indent=2) + "\n")
    return meta


def _unique_patches_chunked(
    label_maps: np.ndarray, patch: int, chunk_frames: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """De-duplicate chunk by chunk, then merge: memory stays bounded by one chunk's patches."""
    parts, part_counts, total = [], [], 0
    with tqdm(total=len(label_maps), unit="frame", desc="extract patches", disable=not progress) as bar:
        for first in range(0, len(label_maps), chunk_frames):
            patches, _ = extract_patches(label_maps[first:first + chunk_frames], patch)
            total += len(patches)
            unique, counts = unique_patches(patches)
            parts.append(unique)
            part_counts.append(counts)
            bar.update(min(chunk_frames, len(label_maps) - first))
    unique, counts = unique_patches(np.concatenate(parts), np.concatenate(part_counts))
    return unique, counts, total


def _neighbour_table(label_maps: np.ndarray, unique: np.ndarray, patch: int, chunk_frames: int) -> np.ndarray:
    """(U, 8) int32: for each unique patch, the id of the patch at each offset of `NEIGHBOUR_OFFSETS`
    from its first occurrence that has a hand pixel there; -1 where no occurrence has one."""
    keys = patch_keys(unique)
    table = np.full((len(unique), len(NEIGHBOUR_OFFSETS)), -1, np.int32)
    for first in range(0, len(label_maps), chunk_frames):
        maps = label_maps[first:first + chunk_frames]
        patches, coords = extract_patches(maps, patch)
        ids = np.searchsorted(keys, patch_keys(patches)).astype(np.int32)
        id_maps = np.full((len(maps), maps.shape[1] + 2, maps.shape[2] + 2), -1, np.int32)
        frame, row, col = coords.T
        id_maps[frame, row + 1, col + 1] = ids
        for column, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
            neighbour = id_maps[frame, row + 1 + dy, col + 1 + dx]
            open_ = (neighbour >= 0) & (table[ids, column] < 0)
            rows, firsts = np.unique(ids[open_], return_index=True)
            table[rows, column] = neighbour[open_][firsts]
    return table


class PatchIndex:
    """A loaded patch dictionary: nearest label patches in Hamming distance (paper eq. 1).

    Load with `PatchIndex.load(directory, patch=7)`. `query` first looks every
    query up among the dictionary's patches exactly (binary search, distance 0)
    and asks Annoy for the rest, so an exact match is never missed; `match_maps`
    then improves Annoy's answers by propagation between neighbouring pixels.
    A PatchIndex pickles as its folder: a worker process that receives one
    loads the memory-mapped files itself.
    """

    def __init__(self, directory: Path, meta: DictionaryMeta, search_k: int, propagation_steps: int):
        self.directory = directory
        self.meta = meta
        self.patch = meta.patch
        self.search_k = int(search_k)
        if propagation_steps < 0:
            raise UserError(f"propagation steps must be >= 0, got {propagation_steps}")
        self.propagation_steps = int(propagation_steps)
        unique, patch = meta.patches_unique, meta.patch
        self.patches = _load_array(directory / meta.patches_file, np.dtype(np.uint8), (unique, patch, patch))
        self.counts = _load_array(directory / meta.counts_file, np.dtype(np.int64), (unique,))
        self.neighbours = _load_array(directory / meta.neighbours_file, np.dtype(np.int32),
                                      (unique, len(NEIGHBOUR_OFFSETS)))
        if unique and (self.neighbours.min() < -1 or self.neighbours.max() >= unique):
            raise UserError(f"{directory / meta.neighbours_file}: ids must be -1..{unique - 1}")
        if self.patches.max() >= NUM_LABELS:
            raise UserError(f"{directory / meta.patches_file}: patches must hold part ids 0..{NUM_LABELS - 1}")
        if self.counts.min() < 1 or int(self.counts.sum()) != meta.patches_total:
            raise UserError(
                f"{directory / meta.counts_file}: the counts (each >= 1) must sum to {META_NAME}'s "
                f"patches_total {meta.patches_total}, got {int(self.counts.sum())}"
            )
        index_path = directory / meta.index_file
        if index_path.stat().st_size != meta.index_bytes:
            raise UserError(
                f"{index_path} is {index_path.stat().st_size} bytes, {META_NAME} says {meta.index_bytes}: "
                "truncated or from another build; rebuild the dictionary"
            )
        self._annoy = AnnoyIndex(meta.bits, "hamming")
        # load() memory-maps the file: processes loading the same index share its pages.
        try:
            self._annoy.load(str(index_path))
        except OSError as error:
            raise UserError(f"cannot load the Annoy index {index_path}: {error}") from None
        if self._annoy.get_n_items() != unique:
            raise UserError(f"{index_path} holds {self._annoy.get_n_items()} patches, {META_NAME} says {unique}")
        self._keys = patch_keys(self.patches)

    @classmethod
    def load(
        cls, directory: str | Path, patch: int = 7, *, encoding: str = ENCODING, search_k: int | None = None,
        propagation_steps: int = DEFAULT_PROPAGATION_STEPS,
    ) -> "PatchIndex":
        """Open the dictionary at `directory`; UserError if it was built with another patch size or encoding.

        `search_k` defaults to the one stored with the dictionary (meta.json).
        """
        directory = Path(directory)
        meta_path = directory / META_NAME
        if not meta_path.exists():
            raise UserError(f"{directory} is not a patch dictionary: no {META_NAME}")
        try:
            values = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"{meta_path} is not valid JSON: {error}") from None
        meta = DictionaryMeta.from_dict(values, str(meta_path))
        if meta.patch != patch:
            raise UserError(
                f"dictionary {directory} was built with patch size {meta.patch}, but --patch is {patch}: "
                f"give --patch {meta.patch}, or a dictionary built with --patch {patch}"
            )
        if meta.encoding != encoding:
            raise UserError(f"{meta_path}: dictionary encoding is {meta.encoding!r}, the caller expects {encoding!r}")
        for name in (meta.index_file, meta.patches_file, meta.counts_file, meta.neighbours_file):
            if not (directory / name).exists():
                raise UserError(f"dictionary {directory} lacks its file {name}")
        return cls(directory, meta, meta.search_k if search_k is None else search_k, propagation_steps)

    def __len__(self) -> int:
        return len(self.patches)

    def __reduce__(self):
        return (_reload, (str(self.directory), self.patch, self.search_k, self.propagation_steps))

    def query(
        self, patches: np.ndarray, k: int = 1, *, exact_lookup: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest dictionary patches of each query (M, P, P), nearest first.

        Returns (ids (M, k) int64, Hamming distances (M, k) int64; distance = 2 x differing
        pixels). Identical queries are searched once and the answer copied to each (Annoy
        answers identical queries identically). With `exact_lookup=False` every query goes
        to Annoy (used to measure Annoy alone).

        There is no cache across calls: it would not pay. On the stage-1 network's predictions
        of 1,000 simulated real frames (480 hand pixels per frame, 6% of them exact hits in a
        1 M-patch dictionary), Annoy searches 448.7 distinct patches per frame frame by frame,
        and would search 438.2 with every frame's answers kept for the next (2.3% fewer).
        """
        patches = np.asarray(patches, dtype=np.uint8)
        if patches.ndim != 3 or patches.shape[1:] != (self.patch, self.patch):
            raise UserError(f"query patches must be (M, {self.patch}, {self.patch}), got shape {patches.shape}")
        k = min(int(k), len(self))
        if len(patches) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.int64)
        keys, first, inverse = np.unique(patch_keys(patches), return_index=True, return_inverse=True)
        unique = patches[first]
        hit_ids = np.zeros(len(keys), np.int64)
        hit = np.zeros(len(keys), bool)
        if exact_lookup:
            where = np.minimum(np.searchsorted(self._keys, keys), len(self) - 1)
            hit = self._keys[where] == keys
            hit_ids = where
        search = ~hit if k == 1 else np.ones(len(keys), bool)
        ids = np.repeat(hit_ids[:, None], k, axis=1)
        dists = np.zeros((len(keys), k), np.int64)
        if search.any():
            ids[search], dists[search] = self._annoy_query(unique[search], k)
        if k > 1 and exact_lookup and hit.any():
            ids[hit], dists[hit] = _put_first(hit_ids[hit], ids[hit], dists[hit])
        inverse = inverse.ravel()
        return ids[inverse], dists[inverse]

    def match_maps(self, label_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest dictionary patch of every hand pixel of (N, S, S) label maps (eq. 1).

        Returns (ids (M,) int64, Hamming distances (M,) int64, coords (M, 3) as [frame, row,
        column]) in `extract_patches` order. Each pixel starts from `query`'s answer; then in
        each of `propagation_steps` steps it takes the nearest to its own patch of: its
        current match, and for each hand neighbour q = p + d, the patch found at -d from
        q's match where that match occurred in the synthetic maps (neighbours.npy). The
        patches of neighbouring pixels overlap, so a good match of one is a good guess for
        the other (PatchMatch's propagation); a pixel's match only ever gets nearer.
        """
        labels = check_label_maps(label_maps)
        patches, coords = extract_patches(labels, self.patch)
        ids, hamming = (found[:, 0] for found in self.query(patches, 1))
        frame, row, col = coords.T
        pixels = np.full((len(labels), labels.shape[1] + 2, labels.shape[2] + 2), -1, np.int64)
        pixels[frame, row + 1, col + 1] = np.arange(len(patches))
        neighbour = np.stack([pixels[frame, row + 1 + dy, col + 1 + dx] for dy, dx in NEIGHBOUR_OFFSETS], axis=1)
        from_neighbour = np.arange(len(NEIGHBOUR_OFFSETS))[::-1]  # column of -d for neighbour d
        for _ in range(self.propagation_steps):
            candidates = np.where(neighbour >= 0, self.neighbours[ids[neighbour], from_neighbour], -1)
            distances = 2 * differing_pixels(self.patches[np.maximum(candidates, 0)], patches[:, None])
            distances[candidates < 0] = np.iinfo(np.int64).max
            best = distances.argmin(axis=1)
            nearer = np.flatnonzero(distances[np.arange(len(ids)), best] < hamming)
            if len(nearer) == 0:
                break
            ids[nearer] = candidates[nearer, best[nearer]]
            hamming[nearer] = distances[nearer, best[nearer]]
        return ids, hamming, coords

    def _annoy_query(self, patches: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.empty((len(patches), k), np.int64)
        dists = np.empty((len(patches), k), np.int64)
        for row, code in enumerate(encode_onehot(patches)):
            found, distance = self._annoy.get_nns_by_vector(code.tobytes(), k, self.search_k, True)
            # Annoy may return fewer than k when search_k is small: repeat the last one.
            found = found + found[-1:] * (k - len(found))
            distance = distance + distance[-1:] * (k - len(distance))
            ids[row] = found
            dists[row] = distance
        return ids, dists


def _load_array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map the .npy at `path`, checking its dtype and shape against meta.json's (UserError naming it)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, EOFError, ValueError) as error:
        raise UserError(f"{path} is not a readable .npy array (empty, truncated or damaged): {error}") from None
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
        found = f"{array.dtype}{array.shape}" if isinstance(array, np.ndarray) else "not a .npy array"
        raise UserError(f"{path} is {found}, {META_NAME} expects {dtype}{shape}")
    return array


def _reload(directory: str, patch: int, search_k: int, propagation_steps: int) -> PatchIndex:
    return PatchIndex.load(directory, patch, search_k=search_k, propagation_steps=propagation_steps)


def _put_first(hit_ids: np.ndarray, ids: np.ndarray, dists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make the exact match candidate 0 and keep Annoy's other candidates in order after it."""
    ids = np.concatenate([hit_ids[:, None], ids], axis=1)
    dists = np.concatenate([np.zeros((len(ids), 1), np.int64), dists], axis=1)
    duplicate = np.zeros(ids.shape, bool)
    duplicate[:, 1:] = ids[:, 1:] == hit_ids[:, None]
    order = np.argsort(duplicate, axis=1, kind="stable")[:, : ids.shape[1] - 1]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(dists, order, axis=1)


def exact_nearest(
    dictionary_patches: np.ndarray, query_patches: np.ndarray, *, chunk: int = 131072
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force nearest dictionary patch of each query: (ids (M,), Hamming distances (M,)).

    XOR + popcount over the packed one-hot codes, the reference Annoy is measured against.
    A chunk of the dictionary is packed word-major, so each of its words (17 for P = 7) is
    one long vector operation: 1.6 ms per query and 131,072 patches, against 5.4 ms summing whole
    rows' popcounts. Ties go to the lowest id.
    """
    queries = pack_onehot(query_patches)
    best = np.full(len(queries), np.iinfo(np.int64).max)
    best_ids = np.zeros(len(queries), np.int64)
    for first in range(0, len(dictionary_patches), chunk):
        words = np.ascontiguousarray(pack_onehot(np.asarray(dictionary_patches[first:first + chunk])).T)
        for row, query in enumerate(queries):
            distance = np.zeros(words.shape[1], np.uint16)  # at most P * P * 21 bits
            for word, value in zip(words, query):
                distance += np.bitwise_count(word ^ value)
            nearest = int(np.argmin(distance))
            if distance[nearest] < best[row]:
                best[row], best_ids[row] = distance[nearest], first + nearest
    return best_ids, best
