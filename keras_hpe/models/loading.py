"""Reading `.keras` model files: one loader that names the file and the kind of model it expected.

A segmentation model takes one (S, S, 1) input and gives per-pixel class
probabilities (S, S, 21): not hand and the 20 parts; a regression model takes "depth" (S, S, 1) and,
for the semi / full variants, "segmentation" (S, S, 20), and gives the joints
(14, 3). `load_model` tells a file that is not a Keras archive, a damaged
one, a model of the other kind and a segmentation model of the 20 parts
only (made before the not-hand class) apart, each as a one-line `UserError`.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import keras

# Imported for their registered layers, which the archives' configs name.
import keras_hpe.models.regression  # noqa: F401
import keras_hpe.models.segmentation  # noqa: F401
from keras_hpe.data.skeleton import NUM_JOINTS, NUM_LABELS, NUM_PARTS
from keras_hpe.errors import UserError

KINDS = ("segmentation", "regression")


def load_model(path: str | Path, kind: str) -> keras.Model:
    """Load the `kind` ("segmentation" or "regression") model at `path`, uncompiled, for inference or re-compiling.

    Raises UserError naming `path` if the file is missing, is not a `.keras`
    archive (a zip holding config.json), cannot be loaded, or holds a model
    of another kind.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file {path} does not exist")
    if not _is_keras_archive(path):
        raise UserError(f"{path} is not a Keras .keras model file (a zip archive holding config.json)")
    # Keras warns about every part of a damaged file it skips: those warnings go with the error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as error:  # Keras raises many types for a damaged or foreign archive
            first_line = str(error).strip().split("\n", 1)[0] or type(error).__name__
            raise UserError(f"cannot load model {path}: {first_line}") from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    found, description = model_kind(model)
    if kind == "segmentation" and found is None and _is_parts_only_segmentation(model):
        raise UserError(
            f"{path} is a segmentation model of {NUM_PARTS} parts only ({description}): it predates the "
            f"not-hand class; retrain it (keras-hpe train seg) for {NUM_LABELS} classes"
        )
    if found != kind:
        what = f"a {found} model" if found is not None else "not a keras_hpe segmentation or regression model"
        raise UserError(f"{path} is {what} ({description}); expected a {kind} model")
    return model


def model_kind(model) -> tuple[str | None, str]:
    """("segmentation" | "regression" | None, a description of its inputs and outputs for messages)."""
    if not isinstance(model, keras.Model):
        return None, f"a {type(model).__name__}"
    shapes = _shapes(model)
    if shapes is None:
        return None, "a model without inputs and outputs"
    inputs, outputs = shapes
    if outputs == [(NUM_JOINTS, 3)] and "depth" in inputs:
        size = inputs["depth"][:2]
        expected = {"depth": size + (1,), "segmentation": size + (NUM_PARTS,)}
        if all(expected.get(name) == shape for name, shape in inputs.items()):
            return "regression", f"joints output {outputs[0]}"
    if len(inputs) == 1 and len(outputs) == 1:
        (shape,) = inputs.values()
        if len(shape) == 3 and shape[2] == 1 and outputs[0] == shape[:2] + (NUM_LABELS,):
            return "segmentation", f"per-pixel output {outputs[0]}"
    return None, f"inputs {inputs}, outputs {outputs}"


def _shapes(model: keras.Model) -> tuple[dict[str, tuple], list[tuple]] | None:
    """({input name: shape}, [output shapes]) without the batch axis; None for a model without tensors."""
    try:
        inputs = {tensor.name: tuple(tensor.shape[1:]) for tensor in model.inputs}
        outputs = [tuple(tensor.shape[1:]) for tensor in model.outputs]
    except (AttributeError, ValueError):  # a subclassed model that was never built has no tensors
        return None
    return inputs, outputs


def _is_parts_only_segmentation(model) -> bool:
    """Whether `model` is the older segmentation network: (S, S, 1) -> (S, S, 20), no not-hand channel."""
    shapes = _shapes(model) if isinstance(model, keras.Model) else None
    if shapes is None or len(shapes[0]) != 1 or len(shapes[1]) != 1:
        return False
    (shape,), (output,) = shapes[0].values(), shapes[1]
    return len(shape) == 3 and shape[2] == 1 and output == shape[:2] + (NUM_PARTS,)


def _is_keras_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "config.json" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
