"""Each epoch's training data is a function of (seed, epoch) alone: the ground of an exact resume."""

import numpy as np
import pytest

from keras_hpe.data.dataset import make_tf_dataset
from keras_hpe.errors import UserError
from keras_hpe.presets import AugmentConfig
from keras_hpe.training.inputs import seg_dataset
from keras_hpe.training.reg_data import regression_dataset
from keras_hpe.training.seg_weak import mixed_seg_dataset

AUGMENT = AugmentConfig(20.0, 0.1)


def _frames(data_dir, **kwargs):
    """The frames' centres (N, 3): enough to tell the order."""
    return np.stack([frame["center_uvd"] for frame in make_tf_dataset(data_dir, ["center_uvd"],
                                                                      **kwargs).as_numpy_iterator()])


def _batches(dataset):
    return [np.concatenate([np.asarray(part).reshape(-1) for part in batch]) for batch in dataset.as_numpy_iterator()]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_order_is_that_of_the_epoch_at_every_pass_and_in_every_process(synth_dir):
    dataset = make_tf_dataset(synth_dir, ["center_uvd"], shuffle=True, seed=3, epoch=1)
    first = np.stack([f["center_uvd"] for f in dataset.as_numpy_iterator()])
    again = np.stack([f["center_uvd"] for f in dataset.as_numpy_iterator()])
    np.testing.assert_array_equal(first, again)  # no hidden pass counter
    np.testing.assert_array_equal(first, _frames(synth_dir, shuffle=True, seed=3, epoch=1))
    assert not np.array_equal(first, _frames(synth_dir, shuffle=True, seed=3, epoch=2))
    in_order = _frames(synth_dir)
    assert sorted(map(tuple, first)) == sorted(map(tuple, in_order)) and not np.array_equal(first, in_order)


def test_passes_are_shuffled_each_in_its_own_order(synth_dir):
    two = _frames(synth_dir, shuffle=True, seed=3, epoch=1, passes=2)
    assert len(two) == 2 * 48
    assert sorted(map(tuple, two[:48])) == sorted(map(tuple, two[48:])) and not np.array_equal(two[:48], two[48:])
    with pytest.raises(UserError, match=">= 0"):
        make_tf_dataset(synth_dir, shuffle=True, seed=-1)


@pytest.mark.parametrize("pipeline", ["seg", "mixed", "regression"])
def test_every_stage_pipeline_depends_on_the_epoch_only(synth_dir, sensor_dir, sensor_eval_dir, pipeline):
    def build(epoch):
        if pipeline == "seg":
            return seg_dataset(synth_dir, 16, size=32, shuffle=True, seed=5, epoch=epoch, augment=AUGMENT)
        if pipeline == "mixed":
            return mixed_seg_dataset(synth_dir, sensor_eval_dir, 16, 4, size=32, seed=5, epoch=epoch, augment=AUGMENT)
        return regression_dataset(sensor_dir, 16, size=32, shuffle=True, seed=5, epoch=epoch, augment=AUGMENT)

    epoch_1 = build(1)
    first = _batches(epoch_1)
    assert _same(first, _batches(epoch_1))  # a second pass over the same epoch: the same batches
    assert _same(first, _batches(build(1)))
    assert not _same(first, _batches(build(2)))
