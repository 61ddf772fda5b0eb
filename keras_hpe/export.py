"""Export a `HandPoseEstimator`: a TF Serving SavedModel, plus LiteRT and ONNX files, in OUT/<version>/.

    OUT/<version>/
      saved_model.pb, variables/    TF Serving SavedModel (always written: the others are converted from it)
      model.tflite                  LiteRT, float32                         (format "litert")
      model_fp16.tflite             LiteRT, float16 weights                 (format "litert-fp16")
      model_int8.tflite             LiteRT, int8 networks, calibrated       (format "litert-int8")
      model.onnx                    ONNX                                    (format "onnx")
      assets.extra/keras_hpe.json   metadata for clients; TF Serving ignores the folder

Every file holds the whole estimator graph (depth normalisation, LCN,
segmentation, part labels, regression, camera; a cascade's two regression
steps and the second crop between them) with named inputs `depth_mm`
(B, S, S) float32 crops in mm and `center_uvd` (B, 3) float32 crop centres,
and named outputs `joints_xyz` (B, 14, 3) mm, `joints_uvd` (B, 14, 3) and,
with a segmentation network, `parts` (B, S, S) uint8; the batch is dynamic in
every format. The SavedModel and the LiteRT files call this the
`serving_default` signature; ONNX has the same input and output names. A
client needs only its runtime (TensorFlow, `ai_edge_litert`, `onnxruntime`),
not keras_hpe or Keras custom objects.

The SavedModel is written with Keras' `ExportArchive`, not `tf.saved_model.save`
of the estimator module: the LiteRT converter freezes the variables of the
former, while it left those of the latter as resource variables that are
uninitialised at run time (NaN joints). `keras.Model.export` itself cannot be
used: the estimator is two Keras models and TF ops, not one Keras model. ONNX
is converted with tf2onnx from the estimator's `tf.function`, as
`keras.Model.export(format="onnx")` does with the TensorFlow backend.

LiteRT files use builtin ops only (no Flex delegate). int8 is full-integer
quantisation of the two networks, calibrated on crops of a data set (the real
training split); the input normalisation and LCN, the part labels, the camera
and the regression's output layer stay float32, and so do the inputs and
outputs. In int8 those parts are useless: 256 levels over 0-1000 mm of depth
flatten the hand (a whole-int8 graph of a trained model agreed with float32
on 3% of the part labels and moved the joints by 158 mm on average).

The int8 bound, measured (`benchmarks/inference_benchmark.py --format
litert-int8 --data`, 200 simulated-real test frames, 64 x 64 models trained
briefly, calibrated on 256 real training crops): joints 5.6 mm from float32 on
average, 58 mm at most (a joint whose part mask lost or gained pixels), 99.0%
of the part labels equal, and the mean 3D error 43.11 mm against float32's
42.87 mm: within the 1 mm that issue 13 allows. float32 LiteRT and ONNX agree
with Keras within 0.0003 mm, float16 within 0.1 mm on average (14.5 mm at
most, where a part label flips).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from keras_hpe import __version__
from keras_hpe.data.skeleton import JOINT_NAMES, PART_NAMES, SKELETON_EDGES
from keras_hpe.errors import UserError
from keras_hpe.outputs import atomic_path, folder_lock

if TYPE_CHECKING:  # TensorFlow loads only when an export runs: the CLI reads FORMATS for --help.
    from keras_hpe.pipeline import HandPoseEstimator

SIGNATURE = "serving_default"
METADATA_FILE = Path("assets.extra") / "keras_hpe.json"
FORMATS = ("saved_model", "litert", "litert-fp16", "litert-int8", "onnx")
FILES = {
    "saved_model": "saved_model.pb",
    "litert": "model.tflite",
    "litert-fp16": "model_fp16.tflite",
    "litert-int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
ONNX_OPSET = 17
CALIBRATION_FRAMES = 256


def existing_versions(out: str | Path) -> list[int]:
    """The TF Serving versions (all-digit sub-folder names) present under `out`, sorted."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(int(p.name) for p in out.iterdir() if p.is_dir() and p.name.isdigit())


def check_formats(formats: Iterable[str], calibration: str | Path | None) -> tuple[str, ...]:
    """The formats to write, in `FORMATS` order with the SavedModel first; UserError for a bad combination."""
    formats = set(formats)
    unknown = sorted(formats - set(FORMATS))
    if unknown:
        raise UserError(f"unknown export format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    if "litert-int8" in formats and calibration is None:
        raise UserError("format litert-int8 needs calibration data: give --calibration DIR (real training crops)")
    if "litert-int8" not in formats and calibration is not None:
        raise UserError("--calibration is only used by format litert-int8; add it to --format or leave --calibration out")
    return tuple(f for f in FORMATS if f in formats or f == "saved_model")


def calibration_crops(
    folder: str | Path, estimator: HandPoseEstimator, frames: int = CALIBRATION_FRAMES
) -> dict[str, np.ndarray]:
    """Up to `frames` crops spread evenly over the data set `folder`: {"depth_mm", "center_uvd"}."""
    from keras_hpe.data.dataset import load_frames, read_manifest

    if frames < 1:
        raise UserError(f"calibration frames must be >= 1, got {frames}")
    manifest = read_manifest(folder)
    if manifest.size != estimator.size:
        raise UserError(f"calibration data {folder} has {manifest.size}x{manifest.size} crops; the models take "
                        f"{estimator.size}x{estimator.size}")
    if manifest.cube_mm != estimator.info.cube_mm:
        raise UserError(f"calibration data {folder} was cropped with a {manifest.cube_mm:g} mm cube; the models "
                        f"with {estimator.info.cube_mm:g} mm")
    indices = np.unique(np.linspace(0, manifest.count - 1, min(frames, manifest.count)).round().astype(int))
    arrays = load_frames(folder, indices, ["depth_mm", "center_uvd"])
    return {"depth_mm": arrays["depth_mm"], "center_uvd": arrays["center_uvd"].astype(np.float32)}


def export_estimator(
    estimator: HandPoseEstimator,
    out: str | Path,
    version: int | None = None,
    formats: Iterable[str] = ("saved_model",),
    calibration: str | Path | None = None,
    calibration_frames: int = CALIBRATION_FRAMES,
) -> Path:
    """Write `estimator` in `formats` to `out/<version>/` (default: 1 + the highest version present); return it.

    `calibration` is the data set folder whose crops calibrate `litert-int8`.
    The version folder appears at once, complete (written beside it, then
    renamed), so a TF Serving instance watching `out` never loads half a model.
    An existing version is never overwritten; `out` is locked while the
    version is chosen and written.
    """
    formats = check_formats(formats, calibration)
    if version is not None and version < 1:
        raise UserError(f"export version must be an integer >= 1, got {version}")
    crops = None if calibration is None else calibration_crops(calibration, estimator, calibration_frames)
    out = Path(out)
    # Two exports at once would pick the same version number.
    with folder_lock(out, "export folder"):
        if version is None:
            version = max(existing_versions(out), default=0) + 1
        target = out / str(version)
        if target.exists():
            raise UserError(f"{target} already exists; pick another --version or leave it out to use the next one")
        metadata = _metadata(estimator, formats)
        with atomic_path(target) as tmp:
            _write_saved_model(estimator, tmp)
            if any(f.startswith("litert") for f in formats):
                float_model = _litert_model(tmp)
                if "litert" in formats:
                    (tmp / FILES["litert"]).write_bytes(float_model)
                if "litert-fp16" in formats:
                    (tmp / FILES["litert-fp16"]).write_bytes(_litert_model(tmp, "float16"))
                if "litert-int8" in formats:
                    (tmp / FILES["litert-int8"]).write_bytes(_litert_int8_model(tmp, float_model, estimator, crops))
            if "onnx" in formats:
                _write_onnx(estimator, tmp / FILES["onnx"])
            if crops is not None:
                metadata["int8_calibration"] = {
                    "data": str(calibration),
                    "frames": len(crops["depth_mm"]),
                    "float32": "inputs, depth normalisation, LCN, part labels, regression output layer, camera, outputs",
                }
            (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
            (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        return target


def _metadata(estimator: HandPoseEstimator, formats: tuple[str, ...]) -> dict:
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
        "files": {name: FILES[name] for name in formats},
        "size": info.size,
        "cube_mm": info.cube_mm,
        "camera": asdict(info.camera),
        "segmentation_model": info.segmentation_model,
        "regression_model": info.regression_model,
        "cascade": info.cascade,
        "joint_names": list(JOINT_NAMES),
        "skeleton_edges": [list(edge) for edge in SKELETON_EDGES],
        "part_names": list(PART_NAMES),
    }
    if "onnx" in formats:
        metadata["onnx_opset"] = ONNX_OPSET
    return metadata


def _write_saved_model(estimator: HandPoseEstimator, path: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    for model in estimator.networks:
        archive.track(model)
    archive.add_endpoint(SIGNATURE, estimator.serve)
    archive.write_out(str(path), verbose=False)


def _litert_converter(saved_model: Path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    # Builtins only: an op that would need the Flex delegate fails the export, not the device.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _litert_model(saved_model: Path, weights: str = "float32") -> bytes:
    import tensorflow as tf

    converter = _litert_converter(saved_model)
    if weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return _convert(converter.convert)


def _convert(convert):
    """`convert()`, with an op that is not a LiteRT builtin reported in one line."""
    try:
        return convert()
    except Exception as error:
        ops = re.search(r"TF Select ops: (.+)", str(error))
        if ops is None:
            raise
        raise UserError(f"cannot export to LiteRT with builtin ops only: the graph uses {ops.group(1)}, which "
                        "would need the Flex delegate; express them with builtin ops in the models") from None


def _litert_int8_model(
    saved_model: Path, float_model: bytes, estimator: HandPoseEstimator, crops: dict[str, np.ndarray]
) -> bytes:
    import tensorflow as tf

    def representative_crops():
        for depth_mm, center_uvd in zip(crops["depth_mm"], crops["center_uvd"]):
            yield {"depth_mm": depth_mm[None], "center_uvd": center_uvd[None]}

    converter = _litert_converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_crops
    # The converter has no option to leave ops in float32; the quantisation debugger's
    # denylist (TF's "selective quantisation") does that, by the ops' output tensor names.
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=_float_tensors(float_model, estimator))
    with warnings.catch_warnings():
        # The debugger opens its models with tf.lite.Interpreter, which warns that it is deprecated.
        warnings.filterwarnings("ignore", "\\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_crops, debug_options=options
        )
    return debugger.get_nondebug_quantized_model()


def _float_tensors(float_model: bytes, estimator: HandPoseEstimator) -> list[str]:
    """Names of the tensors of the LiteRT float32 model that int8 leaves in float32.

    Those the networks do not compute (a cascade's second crop among them),
    and those of each regression network's output layer (14 small per-joint
    einsums): quantised, it moved the joints of a trained model by 76 mm on
    average (mean 3D error 84.6 mm, not 42.9); kept in float32, the int8
    joints are 5.6 mm from the float32 ones on average.
    """
    from ai_edge_litert.interpreter import Interpreter

    networks = "|".join(re.escape(m.name) for m in estimator.networks)
    output_layers = "|".join(
        # The last layer with weights: the one that outputs the joints.
        re.escape(m.name) + r"(?:_\d+)?/" + re.escape([layer for layer in m.layers if layer.weights][-1].name)
        for m in (estimator.regression, estimator.refine) if m is not None
    )
    # A network's ops are named "<model>[_<call count>]/<layer>[_<call count>]/...", fused ops by their first op.
    inside = re.compile(rf"^(?:{networks})(?:_\d+)?/")
    output = re.compile(rf"^(?:{output_layers})(?:_\d+)?/")
    tensors = Interpreter(model_content=float_model).get_tensor_details()
    return [t["name"] for t in tensors if not inside.match(t["name"]) or output.match(t["name"])]


def _write_onnx(estimator: HandPoseEstimator, path: Path) -> None:
    import onnx
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(
        estimator.serve, input_signature=estimator.serve.input_signature, opset=ONNX_OPSET
    )
    onnx.save(model, str(path))
