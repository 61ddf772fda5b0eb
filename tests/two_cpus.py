"""Stage 1 and stage 3 trained a few steps on one device and mirrored over two logical CPUs; prints JSON.

Run by tests/test_multi_device.py in a process of its own, because the two
logical CPUs must be configured before TensorFlow initialises its devices:

    python tests/two_cpus.py SYNTH_DIR SENSOR_DIR WORK_DIR

For each training (segmentation; regression, direct and full), the largest
absolute difference between the weights trained under the default strategy
and under `MirroredStrategy(["/cpu:0", "/cpu:1"])` on the same global batch,
for the trainable weights and for the batch-norm statistics, with the
largest change training made to a trainable weight for scale; whether a
mirrored segmentation run killed in its second epoch resumes to the
uninterrupted mirrored run's weights bit for bit; and how far from those a
run killed on one device and resumed mirrored ends.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from conftest import TINY_SIZE, tiny_reg_config  # noqa: E402
from interruptions import Interrupt, StopAfter  # noqa: E402
from keras_hpe.models.loading import load_model  # noqa: E402
from keras_hpe.models.regression import build_direct_regression, build_regression  # noqa: E402
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model  # noqa: E402
from keras_hpe.presets import AugmentConfig, SegTrainingConfig  # noqa: E402
from keras_hpe.training.fit import seed_new_model  # noqa: E402
from keras_hpe.training.reg import train_regression  # noqa: E402
from keras_hpe.training.seg import train_segmentation  # noqa: E402

# SGD, not Adam: Adam's steps do not change when every gradient is scaled, so a wrong replica scaling would not show.
# 48 frames in global batches of 16, 2 epochs: 6 steps, each split 8 + 8.
SEG = SegTrainingConfig(
    model=SegmentationConfig(size=TINY_SIZE, filters=(4, 8, 8), kernel_sizes=(3, 3, 3), dilation_rates=(1, 2, 2),
                             hidden_units=(8,)),
    optimizer="sgd", learning_rate=0.1, cosine_decay=False, batch_size=16, epochs=2,
    augment=AugmentConfig(10.0, 0.05), precision="float32",
)
# 32 frames, 1 epoch: 2 steps. Mirrored, batch norm is synchronised, and Keras computes the synchronised variance
# as E[x^2] - E[x]^2, which loses digits in float32 where the first layer's features are nearly constant (the
# crop's background): unlike the two-pass variance of one device, and more with every step. Over 2 epochs, the
# weights of the full network differed by 9.2e-4, and with augmentation (more background) the direct one's by
# 1.9e-3; unsynchronised batch norm differs by 4.5e-3 (full) and 1.3e-2 (direct) in 1 epoch.
REG = replace(tiny_reg_config(), optimizer="sgd", learning_rate=0.05, cosine_decay=False, epochs=1,
              precision="float32")


def compare(default: Path, mirrored: Path, kind: str, build) -> dict:
    """The largest differences between two runs' trainable weights and batch-norm statistics, and the largest
    change of a trainable weight from its initial value (the trainers seed Keras with the run's seed, 0)."""
    a, b = load_model(default, kind), load_model(mirrored, kind)
    seed_new_model(0)
    return {
        "trainable": largest(a.trainable_weights, b.trainable_weights),
        "statistics": largest(a.non_trainable_weights, b.non_trainable_weights),
        "change": largest(a.trainable_weights, build().trainable_weights),
    }


def largest(first: list, second: list) -> float:
    """The largest absolute difference between two lists of weights (0 for none)."""
    return max((float(np.abs(x.numpy() - y.numpy()).max()) for x, y in zip(first, second)), default=0.0)


def equal(paths: list[Path], kind: str) -> bool:
    first, second = (load_model(path, kind).get_weights() for path in paths)
    return all(np.array_equal(x, y) for x, y in zip(first, second))


def resumed(train, out: Path, first_strategy) -> Path:
    """The model of `train(out, callbacks, strategy)` killed after the first batch of its second epoch under
    `first_strategy`, then run again mirrored."""
    try:
        train(out, [StopAfter(epoch=1, batch=0)], first_strategy)
    except Interrupt:
        pass
    return train(out, [])


def main() -> None:
    synth, sensor, work = (Path(arg) for arg in sys.argv[1:4])
    two_cpus = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}

    def seg(out: Path, callbacks, strategy=two_cpus) -> Path:
        return train_segmentation(synth, out, SEG, progress=False, strategy=strategy, callbacks=callbacks).model_path

    seg_default, seg_mirrored = seg(work / "seg_default", [], "default"), seg(work / "seg_mirrored", [])
    results["seg"] = compare(seg_default, seg_mirrored, "segmentation", lambda: build_segmentation_model(SEG.model))
    results["seg"]["resumed_exactly"] = equal([resumed(seg, work / "seg_resumed", two_cpus), seg_mirrored],
                                              "segmentation")
    moved = resumed(seg, work / "seg_moved", "default")
    results["seg"]["resumed_elsewhere"] = largest(load_model(moved, "segmentation").trainable_weights,
                                                  load_model(seg_mirrored, "segmentation").trainable_weights)
    results["seg"]["run"] = json.loads(seg_mirrored.with_suffix(".json").read_text())["run"]

    builds = {"direct": lambda: build_direct_regression(REG.model), "full": lambda: build_regression(REG.model)}
    for variant, build in builds.items():
        def reg(out: Path, strategy) -> Path:
            seg_path = seg_default if variant == "full" else None
            return train_regression(sensor, out, variant, REG, seg_path=seg_path, progress=False,
                                    strategy=strategy).model_paths[0]

        default, mirrored = reg(work / f"{variant}_default", "default"), reg(work / f"{variant}_mirrored", two_cpus)
        results[variant] = compare(default, mirrored, "regression", build)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
