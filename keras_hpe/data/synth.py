"""The `synth` domain: random hands rendered into cube crops with dense part labels.

Each frame: sample a hand (shape, pose, viewpoint) and its forearm (shape, wrist
angles; `ArmPrior`), take the crop centre as the mean of the hand's 14 joints
projected to uvd, ray-cast the cube's window directly at S x S and clip depth to
the cube. Label 0 means not hand: the forearm where depth > 0, nothing where
depth is 0. The forearm is drawn after the hand, so for a given seed the hands,
joints and crop centres are those of an armless render.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_hpe.data.camera import xyz_to_uvd
from keras_hpe.data.crop import CUBE_MM, clip_to_cube, crop_window
from keras_hpe.data.dataset import FIELDS, Manifest, generate_dataset
from keras_hpe.data.hand_model import PosePrior, ShapePrior, ViewPrior, sample_hands
from keras_hpe.data.renderer import render
from keras_hpe.data.solids import ArmPrior, hand_solids, sample_arms
from keras_hpe.errors import UserError

if TYPE_CHECKING:
    from keras_hpe.beam import BeamRunner

_PIXELS_PER_CHUNK = 1 << 18  # frames rendered together: bounds the (pixel, solid) pair arrays


@dataclass(frozen=True)
class SynthConfig:
    """Priors of the synthetic domain."""

    shape: ShapePrior = field(default_factory=ShapePrior)
    pose: PosePrior = field(default_factory=PosePrior)
    view: ViewPrior = field(default_factory=ViewPrior)
    arm: ArmPrior = field(default_factory=ArmPrior)


def render_synth_frames(
    rng: np.random.Generator,
    n: int,
    size: int,
    cube_mm: float = CUBE_MM,
    config: SynthConfig | None = None,
) -> dict[str, np.ndarray]:
    """Render n synthetic frames of size x size.

    Returns depth_mm (n, S, S) float32, labels (n, S, S) uint8, joints_uvd and
    joints_xyz (n, 14, 3) float32 and center_uvd (n, 3) float32.
    """
    if int(size) < 1:
        raise UserError(f"crop size must be >= 1 pixel, got {size}")
    config = config or SynthConfig()
    hands = sample_hands(rng, n, config.shape, config.pose, config.view)
    arms = sample_arms(rng, hands.scale, config.arm)
    joints_uvd = xyz_to_uvd(hands.joints_xyz)
    center_uvd = xyz_to_uvd(hands.joints_xyz.mean(axis=1))
    window = crop_window(center_uvd, cube_mm)
    solids = hand_solids(hands, arm=arms)
    chunk = max(1, _PIXELS_PER_CHUNK // (size * size))
    depth_mm = np.empty((n, size, size), dtype=np.float32)
    labels = np.empty((n, size, size), dtype=np.uint8)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        depth_mm[part], labels[part] = render(solids[part], window[part], size, size)
    depth_mm = clip_to_cube(depth_mm, center_uvd[:, 2], cube_mm)
    return {
        "depth_mm": depth_mm,
        "labels": np.where(depth_mm > 0, labels, np.uint8(0)),
        "joints_uvd": joints_uvd.astype(np.float32),
        "joints_xyz": hands.joints_xyz.astype(np.float32),
        "center_uvd": center_uvd.astype(np.float32),
    }


def generate_synth(
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    shard_size: int = 1024,
    progress: bool = True,
    config: SynthConfig | None = None,
    workers: int = 1,
    runner: BeamRunner | None = None,
) -> Manifest:
    """Write n synthetic frames (all five fields) as a `synth` data set at `out`.

    `workers` processes render the shards, or the Beam `runner` does (`dataset.generate_dataset`).
    """
    config = config or SynthConfig()
    return generate_dataset(
        out,
        n,
        make_shard=functools.partial(render_synth_frames, size=size, config=config),
        domain="synth",
        size=size,
        seed=seed,
        fields=FIELDS,
        shard_size=shard_size,
        params={"config": asdict(config)},
        progress=progress,
        workers=workers,
        runner=runner,
    )
