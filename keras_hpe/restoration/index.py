"""The patch dictionary (paper section 3.2): an Annoy Hamming index over synthetic label patches.

A dictionary folder holds
  patches.ann   the Annoy index (metric "hamming", one-hot codes), memory-mapped when loaded,
                so worker processes that each load it share one copy of its pages;
  patches.npy   the unique patches' labels (U, P, P) uint8, row i = Annoy item i,
                sorted by their bytes so that exact matches are found by binary search;
  counts.npy    how often each unique patch occurred (U,) int64;
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
    encode_onehot,
    extract_patches,
    pack_onehot,
    patch_keys,
    unique_patches,
)

FORMAT = "keras_hpe.patch_dictionary/1"
META_NAME = "meta.json"
INDEX_NAME = "patches.ann"
PATCHES_NAME = "patches.npy"
COUNTS_NAME = "counts.npy"
DEFAULT_TREES = 16
# Leaf items Annoy inspects per query. Measured by benchmarks/restore_benchmark.py on a
# 1.1 M-patch dictionary, 16 trees: search_k 1000 -> Annoy's distance 8% above the exact
# nearest neighbour's, ~0.1 s per 64 x 64 frame; 5000 -> 3.7% above, ~3x slower, and the
# same eq. 2 restoration accuracy (94.4% either way), so the faster setting is the default.
DEFAULT_SEARCH_K = 1000
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
    format: str = FORMAT
    version: str = keras_hpe.__version__

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = META_NAME) -> "DictionaryMeta":
        """Check every value of a meta.json (UserError naming `source` and the key) and build it."""
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise UserError(f"{source}: unknown format {shown(found)}, expected {FORMAT!r}")
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
        for key in ("index_file", "patches_file", "counts_file"):
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


class PatchIndex:
    """A loaded patch dictionary: nearest label patches in Hamming distance (paper eq. 1).

    Load with `PatchIndex.load(directory, patch=7)`. `query` first looks every
    query up among the dictionary's patches exactly (binary search, distance 0)
    and asks Annoy for the rest, so an exact match is never missed. A PatchIndex
    pickles as its folder: a worker process that receives one loads the
    memory-mapped files itself.
    """

    def __init__(self, directory: Path, meta: DictionaryMeta, search_k: int):
        self.directory = directory
        self.meta = meta
        self.patch = meta.patch
        self.search_k = int(search_k)
        unique, patch = meta.patches_unique, meta.patch
        self.patches = _load_array(directory / meta.patches_file, np.dtype(np.uint8), (unique, patch, patch))
        self.counts = _load_array(directory / meta.counts_file, np.dtype(np.int64), (unique,))
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
        cls, directory: str | Path, patch: int = 7, *, encoding: str = ENCODING, search_k: int | None = None
    ) -> "PatchIndex":
        """Open the dictionary at `directory`; UserError if it was built with another patch size or encoding."""
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
        for name in (meta.index_file, meta.patches_file, meta.counts_file):
            if not (directory / name).exists():
                raise UserError(f"dictionary {directory} lacks its file {name}")
        return cls(directory, meta, meta.search_k if search_k is None else search_k)

    def __len__(self) -> int:
        return len(self.patches)

    def __reduce__(self):
        return (_reload, (str(self.directory), self.patch, self.search_k))

    def query(
        self, patches: np.ndarray, k: int = 1, *, exact_lookup: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest dictionary patches of each query (M, P, P), nearest first.

        Returns (ids (M, k) int64, Hamming distances (M, k) int64; distance = 2 x differing
        pixels). Identical queries are searched once. With `exact_lookup=False`
        every query goes to Annoy (used to measure Annoy alone).
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


def _reload(directory: str, patch: int, search_k: int) -> PatchIndex:
    return PatchIndex.load(directory, patch, search_k=search_k)


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
    Ties go to the lowest id.
    """
    queries = pack_onehot(query_patches)
    best = np.full(len(queries), np.iinfo(np.int64).max)
    best_ids = np.zeros(len(queries), np.int64)
    for first in range(0, len(dictionary_patches), chunk):
        block = pack_onehot(np.asarray(dictionary_patches[first:first + chunk]))
        for row, query in enumerate(queries):
            distance = np.bitwise_count(block ^ query).sum(axis=1, dtype=np.int64)
            nearest = int(np.argmin(distance))
            if distance[nearest] < best[row]:
                best[row], best_ids[row] = distance[nearest], first + nearest
    return best_ids, best
