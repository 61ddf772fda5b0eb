"""The bytes a stage of `keras-hpe reproduce` writes and holds by design, computed from the sizes the code fixes.

The shards' bytes per frame (`np.savez` of the fields), the dictionary's arrays per patch, the models'
weights, the label maps a stage loads whole. `keras_hpe.costs` adds the fitted remainders; the
constants these need (Annoy's bytes per patch and tree, bytes per weight) are fitted too.
"""

from __future__ import annotations

import io
import math
from functools import cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from keras_hpe.data.dataset import FIELD_DTYPES, FIELDS, field_shape, shard_counts

if TYPE_CHECKING:
    from keras_hpe.costs import FittedCosts, RunSizes

NPY_HEADER_BYTES = 128  # `np.save`'s header of a small array
# Each data set stage and the `RunSizes` field that counts its frames.
STAGE_FRAMES = {"synth": "synth_frames", "synth_test": "synth_test_frames", "real": "real_frames",
                "real_test": "real_test_frames"}
INDEX_READERS = ("restore", "evaluate")  # the stages that memory-map the Annoy index


def exact_memory_bytes(stage: str, sizes: RunSizes, fitted: FittedCosts) -> float:
    """Memory a stage holds by design: label maps it loads whole, and the Annoy index, memory-mapped and read
    throughout (its pages are page cache, which the kernel can evict, at the cost of reading them again)."""
    index = annoy_index_bytes(sizes.patches_unique, sizes.trees, fitted)
    if stage == "dictionary":
        return sizes.synth_frames * sizes.size ** 2 + index  # every synthetic label map, then the index it builds
    if stage in INDEX_READERS:
        return index
    if stage in ("reg_semi", "reg_full", "reg_oracle"):
        return sizes.real_frames * sizes.size ** 2  # the part labels of every real frame
    return 0.0


def dataset_bytes(shard_frames: Sequence[int], size: int, fields: Sequence[str]) -> int:
    """Bytes of a data set's shards holding `shard_frames` frames each (uncompressed `np.savez`, as written)."""
    per_frame, overhead = _npz_layout(size, tuple(fields))
    return int(sum(per_frame * count + overhead for count in shard_frames if count))


@cache
def _npz_layout(size: int, fields: tuple[str, ...]) -> tuple[int, int]:
    """(bytes per frame, bytes per shard) of a shard: `np.savez` stores arrays uncompressed, with fixed headers."""
    one, two = (_npz_bytes(count, size, fields) for count in (1, 2))
    return two - one, 2 * one - two


def _npz_bytes(count: int, size: int, fields: tuple[str, ...]) -> int:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.zeros((count, *field_shape(name, size)), FIELD_DTYPES[name]) for name in fields})
    return buffer.getbuffer().nbytes


def annoy_index_bytes(unique: float, trees: int, fitted: FittedCosts) -> float:
    return unique * (fitted.constants["index_item_bytes"] + trees * fitted.constants["index_tree_bytes"])


def model_bytes(weights: int, kind: str, fitted: FittedCosts) -> float:
    return weights * fitted.constants["bytes_per_weight"][kind]


def exact_disk_bytes(stage: str, sizes: RunSizes, fitted: FittedCosts) -> tuple[float, float]:
    """(bytes the stage leaves, bytes of its temporaries) computed from the sizes; `DISK_TERMS` add the rest."""
    from keras_hpe.restoration.pseudo_labels import CHUNK_FRAMES, OUTPUT_FIELDS

    if stage in STAGE_FRAMES:
        fields = FIELDS if stage.startswith("synth") else sizes.real_fields
        return dataset_bytes(shard_counts(getattr(sizes, STAGE_FRAMES[stage]), sizes.shard_size), sizes.size,
                             fields), 0.0
    checkpoint = {"seg_synth": "segmentation", "seg_weak": "segmentation", "reg_direct": "direct",
                  "reg_cascade": "direct", "reg_semi": "regression", "reg_full": "regression",
                  "reg_oracle": "regression"}
    if stage in checkpoint:
        kind = checkpoint[stage]
        kept = model_bytes(sizes.weights[kind], "segmentation" if kind == "segmentation" else "regression", fitted)
        models = 2 if stage == "reg_cascade" else 1
        cache_bytes = NPY_HEADER_BYTES + sizes.real_frames * sizes.size ** 2 if stage in ("reg_semi", "reg_full") \
            else 0
        # A checkpoint (float32 weights) lives while the stage trains.
        return models * kept + cache_bytes, 4.0 * sizes.weights[kind]
    if stage == "dictionary":
        unique = sizes.patches_unique
        arrays = 3 * NPY_HEADER_BYTES + unique * (sizes.patch ** 2 + 8 + 4 * 8)  # patches, counts, neighbours
        return arrays + annoy_index_bytes(unique, sizes.trees, fitted), 0.0
    if stage == "restore":
        fields = [name for name in OUTPUT_FIELDS if name == "labels" or name in sizes.real_fields]
        per_frame, overhead = _npz_layout(sizes.size, tuple(fields))
        restored = sizes.accepted_frames * per_frame + math.ceil(sizes.real_frames / CHUNK_FRAMES) * overhead
        return restored, restored  # the chunks, until they are assembled into the restored set
    if stage == "export":
        weights = sizes.weights["segmentation"] + sizes.weights["regression"]
        return weights * fitted.constants["saved_model_bytes_per_weight"], 0.0
    return 0.0, 0.0
