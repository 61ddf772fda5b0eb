"""What costs a synthetic-only segmentation network its accuracy on the simulated real frames?

Renders the same labelled sensor-domain frames (same hands, same seed) with
the sensor model's effects switched off ("clean": only the projector's
shadows remain), with each effect alone, and with all of them (the domain as
it is), and scores a segmentation network on each, with the pipeline's hole
filling (`data.crop.fill_holes`) and without it. Synthetic frames are scored
for reference. A diagnostic: the sensor domain itself is never changed by it.
Per-pixel accuracy over hand pixels; the last line printed is JSON.

Measured on the stage-1 network of a quick run trained without hole filling
(300 frames each): 61.1% on clean frames, 41.1% with every effect; random
holes alone 43.9%, every other effect alone 57.4-60.9%.

    python benchmarks/domain_gap_benchmark.py [--model runs/quick/seg_synth/seg_synth.keras] [--frames 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe.data.sensor import SensorConfig, render_sensor_frames  # noqa: E402
from keras_hpe.data.synth import render_synth_frames  # noqa: E402
from keras_hpe.evaluation.segmentation import evaluate_segmentation  # noqa: E402
from keras_hpe.models.segmentation import model_crop_size, predict_parts  # noqa: E402
from keras_hpe.training.seg import load_segmentation_model  # noqa: E402

DEFAULT = SensorConfig()
CLEAN = SensorConfig(disparity_step_px=0.0, disparity_noise_px=0.0, lateral_sigma_px=0.0, edge_dropout=0.0,
                     flying_pixel_prob=0.0, grazing_start_deg=90.0, grazing_stop_deg=90.0, hole_fraction=0.0)
EFFECTS = {
    "quantisation": ("disparity_step_px",),
    "axial noise": ("disparity_noise_px",),
    "lateral smoothing": ("lateral_sigma_px",),
    "edge drop-outs": ("edge_dropout",),
    "flying pixels": ("flying_pixel_prob",),
    "grazing drop-outs": ("grazing_start_deg", "grazing_stop_deg"),
    "random holes": ("hole_fraction",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("runs/quick/seg_synth/seg_synth.keras"),
                        help="a segmentation model (default: the quick run's stage 1)")
    parser.add_argument("--frames", type=int, default=300, help="frames per variant (default: 300)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the frames (default: 123)")
    args = parser.parse_args()
    if not args.model.is_file():
        parser.error(f"no model at {args.model}: run `keras-hpe reproduce --preset quick` or pass --model")
    model = load_segmentation_model(args.model)
    size = model_crop_size(model)

    def accuracy(frames: dict, fill: bool) -> float:
        unfilled = mock.patch("keras_hpe.models.segmentation.fill_holes", lambda depth_mm: depth_mm)
        with contextlib.nullcontext() if fill else unfilled:
            labels = predict_parts(model, frames["depth_mm"], frames["center_uvd"][:, 2])[1]
        return round(100 * evaluate_segmentation(labels, frames["labels"], frames["depth_mm"]).per_pixel_accuracy, 2)

    variants = {"clean": CLEAN}
    variants.update({name: replace(CLEAN, **{f: getattr(DEFAULT, f) for f in fields}) for name, fields in EFFECTS.items()})
    variants["all (the sensor domain)"] = DEFAULT
    results = {}
    print(f"{'frames':28s} {'no fill':>8s} {'filled':>8s}")
    for name, config in variants.items():
        frames = render_sensor_frames(np.random.default_rng(args.seed), args.frames, size, config=config, eval_labels=True)
        results[name] = {"no_fill": accuracy(frames, False), "filled": accuracy(frames, True)}
        print(f"{name:28s} {results[name]['no_fill']:7.2f}% {results[name]['filled']:7.2f}%", flush=True)
    synth = render_synth_frames(np.random.default_rng(args.seed), args.frames, size)
    results["synthetic"] = {"no_fill": accuracy(synth, False), "filled": accuracy(synth, True)}
    print(f"{'synthetic':28s} {results['synthetic']['no_fill']:7.2f}% {results['synthetic']['filled']:7.2f}%")
    print(json.dumps({"benchmark": "domain_gap", "model": str(args.model), "frames": args.frames,
                      "per_pixel_accuracy": results}))


if __name__ == "__main__":
    main()
