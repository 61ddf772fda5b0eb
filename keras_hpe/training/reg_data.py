"""Stage 3's input: depth crops and joints of a data set as tf.data batches, with their part labels.

`regression_dataset` makes the batches every variant trains and predicts on:
the depth normalised in the cube, the joints relative to the crop centre in
half-cube units (`crop.joints_to_crop`) and, for the variants with part
masks, the one-hot part labels (`models.regression.part_channels`). The
cascade's second step re-crops the stored crop around its first estimate
(`crop.recrop_depth`). The labels of "semi" / "full" come from their
segmentation model, computed once per data set and model (`cached_segmentation`);
the oracle's are the data set's own (`true_labels`), which only a simulated
real domain has.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_hpe.data.camera import uvd_to_xyz
from keras_hpe.data.crop import joints_to_crop, normalize_depth, recrop_depth
from keras_hpe.data.dataset import load_arrays, make_tf_dataset, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.models.regression import part_channels
from keras_hpe.models.segmentation import model_crop_size, predict_parts
from keras_hpe.outputs import atomic_path
from keras_hpe.presets import AugmentConfig
from keras_hpe.training.fit import fingerprint
from keras_hpe.training.inputs import augment_batch, batch_seeds, check_crop_size, distributable, stream_seed
from keras_hpe.training.seg import load_segmentation_model

TRAIN_FIELDS = ["depth_mm", "joints_xyz", "center_uvd"]
SEG_CACHE_DIR = "seg_cache"


def regression_dataset(
    data_dir: str | Path,
    batch_size: int,
    *,
    size: int,
    segmentation: np.ndarray | None = None,
    coarse_xyz: np.ndarray | None = None,
    refine_cube_mm: float | None = None,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    augment: AugmentConfig | None = None,
    jitter_mm: float = 0.0,
    shuffle_buffer: int = 8192,
) -> tf.data.Dataset:
    """Batches (inputs, joints in half-cube units (B, 14, 3)) of depth + joints data for the regression network.

    inputs is the depth (B, S, S, 1) or, with `segmentation` (N, S, S) part
    labels, {"depth": depth, "segmentation": one-hot (B, S, S, 20)}. With `coarse_xyz`
    (N, 3) mm, frames are re-cropped to the cube of `refine_cube_mm` around
    those points (the cascade's second step), jittered by `jitter_mm`.
    Frames are read in the data set's order (so that the per-frame arrays
    line up) and, with `shuffle`, mixed in a `shuffle_buffer` window. The
    order, jitter and augmentation are those of epoch `epoch` of a run seeded
    `seed`: the same at every pass over the returned data set.
    """
    data_dir = Path(data_dir)
    check_crop_size(data_dir, size)
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    manifest = read_manifest(data_dir)
    camera, cube_mm = manifest.camera_model, float(manifest.cube_mm)
    frames = make_tf_dataset(data_dir, TRAIN_FIELDS)
    extras = {}
    if segmentation is not None:
        extras["segmentation"] = _check_per_frame(segmentation, (manifest.count, size, size), "segmentation")
    if coarse_xyz is not None:
        if refine_cube_mm is None:
            raise UserError("coarse_xyz needs refine_cube_mm (the cascade's second cube)")
        extras["coarse_xyz"] = _check_per_frame(coarse_xyz, (manifest.count, 3), "coarse_xyz").astype(np.float32)
    if extras:
        streams = {name: _array_dataset(array) for name, array in extras.items()}
        frames = tf.data.Dataset.zip(frames, tf.data.Dataset.zip(streams)).map(lambda a, b: {**a, **b})
    if shuffle:
        # tf.data also mixes TensorFlow's global seed into this seed: every trainer sets it first.
        frames = frames.shuffle(
            min(shuffle_buffer, manifest.count), seed=stream_seed(seed, epoch, "shuffle"),
            reshuffle_each_iteration=False,
        )
    frames = batch_seeds(frames.batch(batch_size), seed, epoch, "augment")
    augment = augment if augment is not None and augment.enabled else None

    def prepare(batch, pair):
        seed_jitter, seed_augment = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
        depth_mm, center_uvd, cube = batch["depth_mm"], batch["center_uvd"], cube_mm
        if "coarse_xyz" in batch:
            coarse = batch["coarse_xyz"]
            if jitter_mm > 0:
                coarse += jitter_mm * tf.random.stateless_normal(tf.shape(coarse), seed_jitter)
            depth_mm, center_uvd = recrop_depth(depth_mm, center_uvd, coarse, cube_mm, refine_cube_mm, camera)
            cube = refine_cube_mm
        center_xyz = tf.numpy_function(
            lambda c: uvd_to_xyz(c, camera).astype(np.float32), [center_uvd], tf.float32, stateful=False
        )
        center_xyz.set_shape([None, 3])
        views = {"depth_mm": depth_mm, "joints": joints_to_crop(batch["joints_xyz"], center_xyz, cube)}
        if "segmentation" in batch:
            views["segmentation"] = batch["segmentation"]
        if augment is not None:
            images = [name for name in ("depth_mm", "segmentation") if name in views]
            views = augment_batch(views, seed_augment, augment, image_fields=images, joint_fields=["joints"])
        inputs = {"depth": normalize_depth(views["depth_mm"], center_uvd[:, 2], cube)[..., None]}
        if "segmentation" in views:
            inputs["segmentation"] = part_channels(views["segmentation"])
        # A depth-only model takes a bare tensor, not a dict.
        return (inputs if len(inputs) > 1 else inputs["depth"]), views["joints"]

    return distributable(frames.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def segment_data_set(
    seg_model: keras.Model, data_dir: str | Path, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Part labels (N, S, S) uint8 of every frame of `data_dir` by `seg_model` (`predict_parts`), in order."""
    check_crop_size(data_dir, model_crop_size(seg_model))
    manifest = read_manifest(data_dir)
    labels = np.empty((manifest.count, manifest.size, manifest.size), dtype=np.uint8)
    # A few batches at a time: the probabilities are 20 floats per pixel.
    chunks = make_tf_dataset(data_dir, ["depth_mm", "center_uvd"]).batch(4 * batch_size)
    start = 0
    with tqdm(total=manifest.count, desc="segment", unit="frame", disable=not progress) as bar:
        for chunk in chunks.as_numpy_iterator():
            count = len(chunk["depth_mm"])
            labels[start : start + count] = predict_parts(
                seg_model, chunk["depth_mm"], chunk["center_uvd"][:, 2], batch_size
            )[1]
            start += count
            bar.update(count)
    return labels


def cached_segmentation(
    seg_path: str | Path, data_dir: str | Path, cache_dir: str | Path, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """`segment_data_set`, computed once: cached in `cache_dir` under the hashes of the data and the model.

    Returns a read-only memory map of the cached (N, S, S) uint8 labels.
    """
    seg_path, data_dir = Path(seg_path), Path(data_dir)
    read_manifest(data_dir)
    key = f"{fingerprint(data_dir)[:12]}-{fingerprint(seg_path)[:12]}"
    path = Path(cache_dir) / f"labels-{key}.npy"
    if not path.exists():
        labels = segment_data_set(load_segmentation_model(seg_path), data_dir, batch_size, progress)
        with atomic_path(path) as tmp:
            np.save(tmp, labels)
    return np.load(path, mmap_mode="r")


def check_regression_data(data_dir: str | Path, size: int) -> None:
    """UserError unless `data_dir` is a data set of `size` x `size` crops with the fields the regression reads."""
    check_crop_size(data_dir, size)
    manifest = read_manifest(data_dir)
    missing = [name for name in TRAIN_FIELDS if name not in manifest.fields]
    if missing:
        raise UserError(f"data set {data_dir} ({manifest.domain}) has no field(s) {', '.join(missing)}; "
                        "the regression needs depth, joints and crop centres")


def check_oracle_data(data_dir: str | Path) -> None:
    """UserError unless `data_dir` has the part labels the oracle reads (the simulator's, or a labelled split)."""
    manifest = read_manifest(data_dir)
    if "labels" not in manifest.fields:
        raise UserError(
            f"data set {data_dir} ({manifest.domain}) has no part labels: the oracle (e) regresses from the true "
            "segmentation, which only the simulated real domain can give (render it with --eval-labels)"
        )


def true_labels(data_dir: str | Path) -> np.ndarray:
    """The ground-truth part labels (N, S, S) of a data set: the oracle's segmentation, never the method's."""
    return load_arrays(data_dir, ["labels"])["labels"]


def _array_dataset(array: np.ndarray, chunk: int = 1024) -> tf.data.Dataset:
    """Per-frame slices of a (memory-mapped) array, read in chunks rather than embedded in the graph."""

    def chunks():
        for start in range(0, len(array), chunk):
            yield np.asarray(array[start : start + chunk])

    spec = tf.TensorSpec((None,) + array.shape[1:], tf.as_dtype(array.dtype))
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=spec).unbatch()
    return dataset.apply(tf.data.experimental.assert_cardinality(len(array)))


def _check_per_frame(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if tuple(array.shape) != shape:
        raise UserError(f"{name} must have shape {shape} (one entry per frame), got {tuple(array.shape)}")
    return array
