"""Export a `HandPoseEstimator` as a TensorFlow Serving SavedModel: OUT/<version>/.

The `serving_default` signature takes named inputs `depth_mm` (B, S, S) float32
crops in mm and `center_uvd` (B, 3) float32 crop centres, and returns named
outputs `joints_xyz` (B, 14, 3) mm, `joints_uvd` (B, 14, 3) and, with a
segmentation network, `parts` (B, S, S) uint8. The whole normalisation and the
camera are in the graph, so the SavedModel loads with plain
`tf.saved_model.load` (no keras_hpe, no Keras custom objects).

We save a `tf.Module` holding the Keras models with `tf.saved_model.save`
rather than `keras.Model.export`: the latter names outputs `output_0`, ...,
and our estimator is more than one Keras model. Besides the graph, each
version holds `assets.extra/keras_hpe.json` (crop size, cube, camera, joint
names, skeleton, part names) for clients; TF Serving ignores that folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from keras_hpe import __version__
from keras_hpe.atomic import atomic_path
from keras_hpe.data.skeleton import JOINT_NAMES, PART_NAMES, SKELETON_EDGES
from keras_hpe.errors import UserError
from keras_hpe.pipeline import HandPoseEstimator

SIGNATURE = "serving_default"
METADATA_FILE = Path("assets.extra") / "keras_hpe.json"


def existing_versions(out: str | Path) -> list[int]:
    """The TF Serving versions (all-digit sub-folder names) present under `out`, sorted."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(int(p.name) for p in out.iterdir() if p.is_dir() and p.name.isdigit())


def export_estimator(estimator: HandPoseEstimator, out: str | Path, version: int | None = None) -> Path:
    """Write `estimator` to `out/<version>/` (default: 1 + the highest version present) and return that path.

    The version folder appears at once, complete (written beside it, then
    renamed), so a TF Serving instance watching `out` never loads half a model.
    An existing version is never overwritten.
    """
    import tensorflow as tf

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"export folder {out} exists and is not a folder")
    if version is None:
        version = max(existing_versions(out), default=0) + 1
    if version < 1:
        raise UserError(f"export version must be an integer >= 1, got {version}")
    target = out / str(version)
    if target.exists():
        raise UserError(f"{target} already exists; pick another --version or leave it out to use the next one")
    info = estimator.info
    metadata = {
        "format": "keras_hpe.saved_model",
        "keras_hpe_version": __version__,
        "signature": SIGNATURE,
        "inputs": {
            "depth_mm": [None, info.size, info.size],
            "center_uvd": [None, 3],
        },
        "outputs": list(info.outputs),
        "size": info.size,
        "cube_mm": info.cube_mm,
        "camera": asdict(info.camera),
        "segmentation_model": info.segmentation_model,
        "regression_model": info.regression_model,
        "joint_names": list(JOINT_NAMES),
        "skeleton_edges": [list(edge) for edge in SKELETON_EDGES],
        "part_names": list(PART_NAMES),
    }
    with atomic_path(target) as tmp:
        tf.saved_model.save(estimator, str(tmp), signatures={SIGNATURE: estimator.serve})
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return target
