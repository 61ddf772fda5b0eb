"""tf.data input pipelines: data sets on disk -> batches a stage's model trains on.

`augment_batch` is the one geometric augmentation of the project: an in-plane
rotation and a scale about the crop centre, applied consistently to image
fields (depth, labels, segmentations: nearest neighbour, so labels stay labels
and depth is never blended with empty pixels) and to joints given relative
to the centre in half-cube units (the regression target, `crop.joints_to_crop`).

Every random draw of a training pipeline (shuffle, augmentation, mixing) is
seeded from (run seed, epoch) by `stream_seed` and none depends on how often a
data set was iterated: a training builds each epoch's data set anew, so a
resumed run trains on exactly the batches an uninterrupted one does.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

from keras_hpe.data.dataset import make_tf_dataset, read_manifest
from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import segmentation_input
from keras_hpe.presets import AugmentConfig


def stream_seed(seed: int, epoch: int, stream: str) -> int:
    """A seed in [0, 2**63) for one kind of draw (`stream`: "shuffle", "augment", ...) in one epoch of a run."""
    state = np.random.SeedSequence([seed, epoch, zlib.crc32(stream.encode())]).generate_state(1, np.uint64)
    return int(state[0] >> 1)


def batch_seeds(dataset: tf.data.Dataset, seed: int, epoch: int, stream: str) -> tf.data.Dataset:
    """Pair each element of `dataset` with a stateless (2,) int64 seed: (the epoch's `stream_seed`, its index)."""
    key = tf.constant(stream_seed(seed, epoch, stream), tf.int64)
    return dataset.enumerate().map(lambda index, element: (element, tf.stack([key, index])))


def distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with its auto-shard policy set to DATA: what a `tf.distribute` strategy may do with it.

    Our data sets stream shards from a Python generator, which tf.data cannot
    split by file (FILE fails, AUTO tries it and falls back to DATA with a
    warning). DATA shards by element: on one machine nothing is sharded and
    the replicas split each global batch; the workers of a multi-worker
    strategy would each keep every n-th batch of the same sequence.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def random_transforms(batch: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-frame (angle_rad (B,), scale (B,)) drawn from a stateless seed (shape (2,), int)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    max_angle = math.radians(config.max_rotation_deg)
    angle_rad = tf.random.stateless_uniform([batch], seeds[0], -max_angle, max_angle)
    scale = tf.random.stateless_uniform([batch], seeds[1], 1.0 - config.scale_jitter, 1.0 + config.scale_jitter)
    return angle_rad, scale


def transform_images(images: tf.Tensor, angle_rad: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Rotate by `angle_rad` and scale by `scale` about the crop centre, nearest neighbour, 0 outside.

    `images` is (B, S, S) or (B, S, S, C), any numeric dtype (kept). In crop
    pixel coordinates (column, row) relative to the centre, a point p moves to
    scale * R(angle) p with R = [[cos, -sin], [sin, cos]]; with rows pointing
    down that turns the picture clockwise for a positive angle.
    """
    images = tf.convert_to_tensor(images)
    dtype, rank = images.dtype, images.shape.rank
    x = tf.cast(images[..., None] if rank == 3 else images, tf.float32)
    size = tf.cast(tf.shape(x)[1], tf.float32)
    center = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle_rad) / scale, tf.sin(angle_rad) / scale
    # Keras maps each output pixel to the input pixel it samples: the inverse motion.
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = center - a0 * center - a1 * center
    b2 = center - b0 * center - b1 * center
    zeros = tf.zeros_like(cos)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = keras.ops.image.affine_transform(x, transform, interpolation="nearest", fill_mode="constant", fill_value=0)
    out = out[..., 0] if rank == 3 else out
    return tf.cast(tf.round(out), dtype) if dtype.is_integer else tf.cast(out, dtype)


def transform_joints(joints: tf.Tensor, angle_rad: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Move centre-relative joints (B, J, 3) (x right, y up, half-cube units) like `transform_images`.

    Crop columns follow x and rows follow -y, so the image motion is a
    rotation by -angle in (x, y); z is unchanged. Exact for points at the
    centre's depth (weak perspective), approximate elsewhere.
    """
    joints = tf.convert_to_tensor(joints, tf.float32)
    cos = (tf.cos(angle_rad) * scale)[:, None]
    sin = (tf.sin(angle_rad) * scale)[:, None]
    x, y, z = joints[..., 0], joints[..., 1], joints[..., 2]
    return tf.stack([cos * x + sin * y, -sin * x + cos * y, z], axis=-1)


def augment_batch(
    frames: dict[str, tf.Tensor],
    seed: tf.Tensor,
    config: AugmentConfig,
    image_fields: Iterable[str] = ("depth_mm", "labels"),
    joint_fields: Iterable[str] = (),
) -> dict[str, tf.Tensor]:
    """Apply one random rotation + scale per frame to the given fields of a batch; others pass through.

    `image_fields` are (B, S, S[, C]) maps; `joint_fields` are (B, J, 3)
    centre-relative joints in half-cube units. `seed` is a (2,) int tensor.
    """
    image_fields, joint_fields = list(image_fields), list(joint_fields)
    batch = tf.shape(frames[(image_fields + joint_fields)[0]])[0]
    angle_rad, scale = random_transforms(batch, seed, config)
    out = dict(frames)
    for name in image_fields:
        out[name] = transform_images(frames[name], angle_rad, scale)
    for name in joint_fields:
        out[name] = transform_joints(frames[name], angle_rad, scale)
    return out


def check_crop_size(data_dir: str | Path, size: int) -> None:
    """Raise UserError unless the data set at `data_dir` holds crops of `size` x `size`."""
    manifest = read_manifest(data_dir)
    if manifest.size != size:
        raise UserError(
            f"data set {data_dir} holds {manifest.size}x{manifest.size} crops but the model "
            f"takes {size}x{size}; use data of the model's size"
        )


def check_labelled(data_dir: str | Path, size: int) -> None:
    """Raise UserError unless the data set at `data_dir` holds part labels and crops of `size` x `size`."""
    manifest = read_manifest(data_dir)
    if "labels" not in manifest.fields:
        raise UserError(f"data set {data_dir} ({manifest.domain}) has no part labels; a labelled set is needed")
    check_crop_size(data_dir, size)


def seg_examples(frames: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A batch of frames -> (LCN'd depth (B,S,S,1), class ids 0..20 (B,S,S), pixel weights (B,S,S)).

    The class id is the part id (0 = not hand, the forearm). The weights
    are spread evenly over the pixels with depth, arm included, and sum to 1
    over the batch; pixels without depth weigh 0: they are not hand whatever
    the network says (`labels_from_probs`). The loss sums the weighted
    pixels (`seg.compile_segmentation`): the batch's mean over its pixels
    with depth, also when replicas each get a part of the batch.
    """
    x = segmentation_input(frames["depth_mm"], frames["center_uvd"][:, 2])
    foreground = tf.cast(frames["depth_mm"] > 0, tf.float32)
    return x, tf.cast(frames["labels"], tf.int32), tf.math.divide_no_nan(foreground, tf.reduce_sum(foreground))


def seg_frames(
    data_dir: str | Path,
    *,
    size: int,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    shuffle_buffer: int = 1024,
    passes: int = 1,
) -> tf.data.Dataset:
    """The frames {depth_mm, labels, center_uvd} of a labelled data set, `passes` times over, for `seg_batches`.

    Raises UserError for a missing or unfinished data set, one without
    labels, or crops of another size than `size`. With `shuffle`, the order
    is that of epoch `epoch` of a run seeded `seed`.
    """
    check_crop_size(data_dir, size)
    fields = ["depth_mm", "labels", "center_uvd"]
    frames = make_tf_dataset(data_dir, fields, shuffle=shuffle, seed=seed, epoch=epoch, passes=passes)
    if shuffle and shuffle_buffer > 1:
        # Shards come in random order, frames shuffled inside each; this mixes across shard borders.
        # (tf.data also mixes TensorFlow's global seed into this seed: every trainer sets it first.)
        frames = frames.shuffle(shuffle_buffer, seed=stream_seed(seed, epoch, "shuffle"), reshuffle_each_iteration=False)
    return frames


def seg_batches(
    frames: tf.data.Dataset,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    augment: AugmentConfig | None = None,
) -> tf.data.Dataset:
    """Batches (x, class ids, pixel weights) of `seg_frames` frames, augmented as in epoch `epoch` of a run seeded
    `seed`."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    batches = frames.batch(batch_size)
    if augment is not None and augment.enabled:
        batches = batch_seeds(batches, seed, epoch, "augment").map(
            lambda batch, pair: augment_batch(batch, pair, augment), num_parallel_calls=tf.data.AUTOTUNE
        )
    return distributable(batches.map(seg_examples, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def seg_dataset(
    data_dir: str | Path,
    batch_size: int,
    *,
    size: int,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    augment: AugmentConfig | None = None,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Batches (x, class ids, pixel weights) of a labelled data set for the segmentation network (`seg_examples`).

    `seg_frames`, then `seg_batches`: the order (with `shuffle`) and the
    augmentation are those of epoch `epoch` of a run seeded `seed`, the same
    at every pass over the returned data set.
    """
    frames = seg_frames(data_dir, size=size, shuffle=shuffle, seed=seed, epoch=epoch, shuffle_buffer=shuffle_buffer)
    return seg_batches(frames, batch_size, seed=seed, epoch=epoch, augment=augment)
