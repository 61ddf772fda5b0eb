"""Where a stage trains and in what precision: a `tf.distribute` strategy and a Keras dtype policy.

`--strategy` picks the strategy (`make_strategy`): "auto" is a
`MirroredStrategy` over all visible GPUs when there are two or more and the
default strategy otherwise; "mirrored" mirrors over all GPUs (over the CPU
when there is none); "default" is TensorFlow's default strategy, one device.
The batch size a stage is given is the global batch: a mirrored step splits
it across the replicas and sums their gradients, so N replicas train on the
batches, with the learning rate, of one device. Multi-worker training
(`MultiWorkerMirroredStrategy`) is not offered: it is broken with Keras 3's
`fit` (keras-team/keras#20585).

`--precision` picks the policy (`resolve_precision`): "float32"; "mixed",
which computes in float16 on GPUs and in bfloat16 on CPUs, with float32
weights and float32 output layers; or "auto", mixed on GPUs, and on CPUs
mixed for the networks measured faster that way (`CPU_BFLOAT16_NETWORKS`)
where the CPU computes bfloat16 natively, float32 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tensorflow as tf

from keras_hpe.errors import UserError
from keras_hpe.presets import check_precision

STRATEGIES = ("auto", "mirrored", "default")
NETWORKS = ("segmentation", "regression")
# Measured faster in mixed_bfloat16 than float32 on a CPU with AVX512_BF16: the segmentation network, 1.32x
# (`presets.SegTrainingConfig`). The regression network was not measured, so it stays float32 on CPUs.
CPU_BFLOAT16_NETWORKS = ("segmentation",)
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic, which oneDNN's bfloat16 kernels use.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Placement:
    """A stage's `strategy` and `precision` (the Keras dtype policy it computes in)."""

    strategy: tf.distribute.Strategy
    precision: str

    def to_dict(self) -> dict:
        """What a run log records: the visible devices, the strategy and its replicas' devices, the precision.

        The default strategy has no replica devices of its own: TensorFlow
        places each op (on the first GPU, if any).
        """
        with self.strategy.scope():
            default = not tf.distribute.has_strategy()  # False in the default strategy's own scope too
        return {
            "devices": [device.name for device in tf.config.list_logical_devices()],
            "strategy": "default" if default else type(self.strategy).__name__,
            "replicas": self.strategy.num_replicas_in_sync,
            "replica_devices": [] if default else list(self.strategy.extended.worker_devices),
            "precision": self.precision,
        }


def choose_placement(strategy: str | tf.distribute.Strategy, precision: str, network: str) -> Placement:
    """The placement of a training of `network` ("segmentation" or "regression"); UserError for unknown names.

    `strategy` is a name of `STRATEGIES` or a strategy made by the caller
    (the tests' two logical CPUs); `precision` a name of `presets.PRECISIONS`.
    """
    if isinstance(strategy, str):
        strategy = make_strategy(strategy)
    return Placement(strategy, resolve_precision(precision, network))


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy `--strategy name` means on this machine."""
    if name not in STRATEGIES:
        raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "mirrored" or (name == "auto" and len(_gpus()) >= 2):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def resolve_precision(precision: str, network: str) -> str:
    """The Keras dtype policy of `--precision precision` for training `network` on this machine.

    GPUs: "mixed" and "auto" are mixed_float16 (tensor cores; bfloat16 was
    not measured on a GPU). CPUs: "mixed" is mixed_bfloat16 (oneDNN's fast
    16-bit path on CPUs), "auto" is mixed_bfloat16 for `CPU_BFLOAT16_NETWORKS`
    on a CPU with native bfloat16, else float32.
    """
    check_precision(precision, "training")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
    if precision == "float32":
        return "float32"
    if _gpus():
        return "mixed_float16"
    if precision == "mixed" or (network in CPU_BFLOAT16_NETWORKS and cpu_has_bfloat16()):
        return "mixed_bfloat16"
    return "float32"


def _gpus() -> list[tf.config.LogicalDevice]:
    return tf.config.list_logical_devices("GPU")


@cache
def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (False where /proc/cpuinfo is not there to say)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)
