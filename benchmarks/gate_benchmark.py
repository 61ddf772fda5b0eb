"""Does the barycenter quality gate pick the restorations that improve the segmentation?

On a labelled real split (default: a finished quick run's evaluation split),
segments the frames with the run's synthetic-only network, restores them
(eq. 2) with the run's dictionary, and compares per frame what the gate
decides (restored quality below raw, `restoration.quality`) with what the
ground-truth labels say (restored per-pixel accuracy above raw). It does so
for the gate (the mean barycenter distance over the joints a map shows) and
for the rule it replaced (a joint whose parts are absent costs the distance
from the hand centre to it). Also prints the quality of the true label maps
(the gate's floor: part barycenters are not joints), the share of forearm
pixels labelled hand, and the gate recomputed with the forearm removed by the
true labels. The last line printed is JSON.

    python benchmarks/gate_benchmark.py [--run runs/quick] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_hpe.data.camera import uvd_to_xyz  # noqa: E402
from keras_hpe.data.dataset import load_arrays  # noqa: E402
from keras_hpe.restoration.index import PatchIndex  # noqa: E402
from keras_hpe.restoration.quality import barycenter_qualities, joint_barycenters_xyz  # noqa: E402
from keras_hpe.restoration.restore import restore_frames  # noqa: E402
from keras_hpe.training.seg import evaluate_model, load_segmentation_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/quick"),
                        help="a finished `reproduce` run folder (default: runs/quick)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a labelled real split (default: the run's real_test/data)")
    parser.add_argument("--workers", type=int, default=2, help="restoration processes (default: 2)")
    args = parser.parse_args()
    eval_dir = args.data or args.run / "real_test" / "data"
    if not (eval_dir / "manifest.json").is_file():
        parser.error(f"{eval_dir} has no data set: run `keras-hpe reproduce --preset quick --out {args.run}` first")
    _, arrays = evaluate_model(load_segmentation_model(args.run / "seg_synth" / "seg_synth.keras"), eval_dir)
    joints = load_arrays(eval_dir, ["joints_xyz"])["joints_xyz"]
    raw, truth, depth, centers = arrays["pred_labels"], arrays["labels"], arrays["depth_mm"], arrays["center_uvd"]
    restored = restore_frames(raw, PatchIndex.load(args.run / "dictionary" / "index", 7), method="integrate",
                              window=5, workers=args.workers, progress=True)
    hand = truth > 0
    arm = (depth > 0) & ~hand

    def accuracy(labels):
        return ((labels == truth) & hand).sum(axis=(1, 2)) / np.maximum(hand.sum(axis=(1, 2)), 1)

    def quality(labels):
        return barycenter_qualities(labels, depth, centers, joints)

    def centre_rule(labels):
        barycenters, present = joint_barycenters_xyz(labels, depth, centers)
        estimate = np.where(present[..., None], barycenters, uvd_to_xyz(centers.astype(np.float64))[:, None])
        return np.linalg.norm(estimate - joints, axis=-1).sum(axis=-1)

    improved = accuracy(restored) > accuracy(raw)
    accepted = quality(restored) < quality(raw)
    accepted_centre_rule = centre_rule(restored) < centre_rule(raw)
    accepted_hand_only = quality(np.where(hand, restored, 0)) < quality(np.where(hand, raw, 0))
    result = {
        "benchmark": "quality_gate_agreement",
        "frames": len(raw),
        "restoration_improves_accuracy": round(float(improved.mean()), 4),
        "gate_accepts": round(float(accepted.mean()), 4),
        "gate_agrees_with_accuracy": round(float((accepted == improved).mean()), 4),
        "centre_rule_accepts": round(float(accepted_centre_rule.mean()), 4),
        "centre_rule_agrees_with_accuracy": round(float((accepted_centre_rule == improved).mean()), 4),
        "gate_accepts_forearm_removed": round(float(accepted_hand_only.mean()), 4),
        "quality_mm": {"raw": round(float(quality(raw).mean()), 1), "restored": round(float(quality(restored).mean()), 1),
                       "truth": round(float(quality(truth).mean()), 1)},
        "forearm_labelled_hand": {"raw": round(float((raw[arm] > 0).mean()), 4),
                                  "restored": round(float((restored[arm] > 0).mean()), 4)},
    }
    print(f"restoration improves the per-pixel accuracy of {result['restoration_improves_accuracy']:.1%} of frames; "
          f"the gate accepts {result['gate_accepts']:.1%} and agrees with the accuracy on "
          f"{result['gate_agrees_with_accuracy']:.1%}; the centre rule it replaced accepts "
          f"{result['centre_rule_accepts']:.1%} and agrees on {result['centre_rule_agrees_with_accuracy']:.1%}")
    print(f"mean quality (mean barycenter distance over the joints shown, mm; lower is better): raw {result['quality_mm']['raw']}, restored "
          f"{result['quality_mm']['restored']}, true labels {result['quality_mm']['truth']}")
    print(f"forearm pixels labelled hand: {result['forearm_labelled_hand']['raw']:.1%}; with the forearm removed the "
          f"gate accepts {result['gate_accepts_forearm_removed']:.1%}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
