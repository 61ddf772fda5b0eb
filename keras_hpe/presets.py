"""Presets: every size and hyper-parameter of a run, as typed configs.

`quick` fits a 2-core CPU (the reproduction and the tests use it); `paper`
follows the paper where it gives a value and scales everything up for a GPU
machine. Each field's docstring says whether its value is the paper's or ours.
Each training stage has its own section (`seg`, ...); later stages add theirs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from keras_hpe.errors import UserError
from keras_hpe.models.regression import RegressionConfig
from keras_hpe.models.segmentation import SegmentationConfig


# What a run asks for; `training.devices.resolve_precision` turns it into a Keras dtype policy for the machine.
PRECISIONS = ("auto", "float32", "mixed")


def check_precision(precision: str, what: str) -> str:
    """`precision`, or UserError naming `what` unless it is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise UserError(f"{what} precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class AugmentConfig:
    """Cheap geometric augmentation of crops (ours; the paper does not mention any).

    Attributes:
        max_rotation_deg: in-plane rotation drawn uniformly in [-max, +max] degrees.
        scale_jitter: scale drawn uniformly in [1 - jitter, 1 + jitter].
    """

    max_rotation_deg: float = 0.0
    scale_jitter: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.max_rotation_deg > 0 or self.scale_jitter > 0


@dataclass(frozen=True)
class SegTrainingConfig:
    """Stage 1: supervised training of the segmentation network on synthetic data.

    Attributes:
        model: the network's architecture.
        optimizer: "sgd" (paper) or "adam".
        learning_rate: initial learning rate (paper: 0.1 with SGD).
        lr_decay: Torch7-style decay per step, lr_t = lr / (1 + t * lr_decay)
            (the paper decays the rate; its value was lost: ours). 0 = constant.
        cosine_decay: decay the rate to 0 along a cosine over the whole run
            (ours; used instead of `lr_decay` when True).
        batch_size: frames per step (paper: 1).
        epochs: passes over the training set (paper: 100).
        augment: geometric augmentation of the training crops.
        shuffle_buffer: frames shuffled across shard boundaries (ours).
        precision: "auto", "float32" or "mixed" (`--precision`): the policy
            the training computes in, `training.devices.resolve_precision`;
            the saved model is float32 either way.

    "auto" trains this network (stages 1 and 2) in mixed_bfloat16 on a CPU
    with native bfloat16 (AVX512_BF16 or AMX), in mixed_float16 on GPUs and
    in float32 on other CPUs. The CPU rule is measured: this CPU (AMD EPYC,
    2 cores) has AVX512_BF16 and no AMX, and oneDNN's bfloat16 convolutions
    are faster here. `benchmarks/seg_train_benchmark.py --steps 150 --repeats 3`
    (frames/s of training, median of 3 interleaved rounds, range in brackets):

    | setting                                  | frames/s            | vs float32 |
    |------------------------------------------|---------------------|------------|
    | float32, batch 8, default threads        | 98.1 (95.3-98.8)    | 1.00       |
    | mixed_bfloat16                           | 129.1 (103.9-159.0) | 1.32       |
    | XLA (`jit_compile=True`)                 | 76.7 (62.1-80.9)    | 0.78       |
    | 2 intra-op, 1 inter-op thread            | 111.5 (91.9-118.4)  | 1.14       |
    | one cached batch (no input pipeline)     | 114.1 (109.7-124.8) | 1.16       |
    | the input pipeline alone                 | 6,315               | 64         |

    And `benchmarks/seg_accuracy_benchmark.py --frames 10000 --epochs 1`
    (default network, 500 held-out synthetic frames, per pixel over hand
    pixels; real = the real evaluation split of a quick run; one run each,
    the held-out interval is about +-1.4 points):

    | run                          | train min | synthetic | real  |
    |------------------------------|-----------|-----------|-------|
    | float32, lr 2e-3, batch 8    | 2.41      | 46.9%     | 34.8% |
    | mixed_bfloat16               | 1.43      | 46.8%     | 34.9% |
    | lr 4e-3                      | 1.66      | 48.6%     | 34.7% |
    | lr 1e-3                      | 2.41      | 44.1%     | 36.4% |
    | batch 4                      | 2.42      | 48.2%     | 36.1% |
    | widths 32-64-64, bfloat16    | 3.40      | 51.3%     | 37.2% |

    bfloat16 learns as much per frame as float32 in 0.6-0.76x the time: adopted,
    and the quick plan renders 50,000 frames instead of 30,000 for the same
    minutes. XLA is slower (as tensorflow#62808 reports for convolutions), and
    the thread settings and the input pipeline are within the machine's
    drift: not adopted (the pipeline takes ~14% of training speed by sharing
    the 2 cores, not by stalling). The learning-rate and batch differences are
    within one run's noise; the wider network learns what 2.4x the frames would
    (about 3.6 points per doubling, `models.segmentation.SegmentationConfig`),
    i.e. nothing more per minute.
    """

    model: SegmentationConfig = field(default_factory=SegmentationConfig)
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    lr_decay: float = 0.0
    cosine_decay: bool = True
    batch_size: int = 8
    epochs: int = 5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_buffer: int = 1024
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise UserError(f"seg optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        check_precision(self.precision, "seg")


@dataclass(frozen=True)
class RegTrainingConfig:
    """Stage 3: training the regression network on the sensor domain (values ours unless said).

    Attributes:
        model: the network's sizes; `input_size` is set from the data.
        optimizer: "adam" (paper) or "sgd".
        learning_rate: initial rate (paper: 0.05; ours, as stage 1 of the quick preset, with a cosine schedule).
        lr_decay: Torch7-style decay per step (used when `cosine_decay` is False).
        cosine_decay: decay the rate to 0 along a cosine over the run.
        batch_size: frames per step (paper: 64).
        epochs: passes over the training set.
        augment: geometric augmentation of depth, segmentation and joints.
        shuffle_buffer: frames mixed by the shuffle (the whole set when it is smaller).
        cascade_cube_fraction: the cascade's second cube over the data's cube.
        cascade_jitter_mm: std of the noise added to the first estimate's mean
            joint when training the cascade's second step.
        batch_norm_batches: training batches over which the batch-norm
            statistics used at test time are averaged after training
            (`estimate_batch_norm_statistics`); 0 keeps Keras' moving averages.
        precision: "auto", "float32" or "mixed" (`--precision`,
            `training.devices.resolve_precision`): "auto" is mixed_float16 on
            GPUs and float32 on CPUs, where bfloat16 was not measured for
            this network.
    """

    model: RegressionConfig = field(default_factory=RegressionConfig)
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    lr_decay: float = 0.0
    cosine_decay: bool = True
    batch_size: int = 64
    epochs: int = 10
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_buffer: int = 8192
    cascade_cube_fraction: float = 0.6
    cascade_jitter_mm: float = 5.0
    batch_norm_batches: int = 100
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise UserError(f"regression optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        check_precision(self.precision, "regression")
        if not 0 < self.cascade_cube_fraction <= 1:
            raise UserError(f"cascade_cube_fraction must be in (0, 1], got {self.cascade_cube_fraction}")

    def to_dict(self) -> dict:
        """JSON-ready dict (for the metrics file)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values["model"] = self.model.to_dict()
        values["augment"] = asdict(self.augment)
        return values


@dataclass(frozen=True)
class Preset:
    """All stages' settings for one kind of run."""

    name: str
    seg: SegTrainingConfig
    reg: RegTrainingConfig


PRESETS: dict[str, Preset] = {
    # Ours: Adam (lr 2e-3, cosine), batch 8 (small batches learn more per
    # frame than 32 did), 5 epochs: 6,000 64x64 frames train in about 8
    # minutes on 2 idle CPU cores (~100 s per epoch). No augmentation: the synthetic set already
    # covers all in-plane rotations, and a short run underfits rather than overfits. Precision "auto":
    # mixed_bfloat16 on this CPU, 1.32x float32's speed (`SegTrainingConfig`).
    "quick": Preset(
        name="quick",
        seg=SegTrainingConfig(
            model=SegmentationConfig(),
            optimizer="adam",
            learning_rate=2e-3,
            cosine_decay=True,
            batch_size=8,
            epochs=5,
            augment=AugmentConfig(),
        ),
        # Ours: Adam, lr 2e-3 with a cosine schedule, batch 64, 10 epochs.
        reg=RegTrainingConfig(),
    ),
    # The paper's: SGD, learning rate 0.1 with decay, batch 1, 100 epochs on
    # the synthetic set; the decay value (1e-5 per step) is ours. The
    # architecture is the paper's pooled network computed densely, at our
    # widths (`SegmentationConfig()`).
    "paper": Preset(
        name="paper",
        seg=SegTrainingConfig(
            model=SegmentationConfig(),
            optimizer="sgd",
            learning_rate=0.1,
            lr_decay=1e-5,
            cosine_decay=False,
            batch_size=1,
            epochs=100,
            augment=AugmentConfig(),
        ),
        # The paper's Adam, lr 0.05 (constant: no schedule is mentioned), batch 64; the epochs are ours.
        reg=RegTrainingConfig(learning_rate=0.05, cosine_decay=False, batch_size=64, epochs=30),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name` ("quick" or "paper")."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
