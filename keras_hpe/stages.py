"""The stages of `keras-hpe reproduce`: each runner fills its folder `work` from its inputs' folders.

`reproduce.build_stages` lists them with their parameters; a runner is called
as `run(work, inputs, params, progress)` with `inputs` the folders of the
stages it reads, and returns the JSON result that `stage.json` records.
`work.parent` is the run folder: what the stages write records the paths
inside it relative to it (`outputs.recorded_path`), so that it can be moved.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_hpe.outputs import atomic_path, recorded_path, write_text

if TYPE_CHECKING:
    import tensorflow as tf

STAGE_FILE = "stage.json"
DATA = "data"  # a data stage's data set sub-folder
DICTIONARY = "index"
RESTORED = "restored"
EVALUATION_FILE = "evaluation.json"
ERRORS_FILE = "joint_errors.npz"
PUBLISHED_ERRORS_FILE = "published_joint_errors.npz"  # --compare's methods, by name
COUNTS_FILE = "segmentation_counts.npz"  # per-frame counts of every Table 2/3 row, for the intervals
SYNTH_TEST_COUNTS_FILE = "synth_test_counts.npz"  # stage 1's, on the held-out synthetic frames
FIGURES = "figures"
SHOWN_RUN = "OUT"  # the report shows the run folder as the option that names it
REG_VARIANTS = ("direct", "cascade", "semi", "full", "oracle")
NYU_NO_LABELS = "the NYU Hand Pose Dataset has no part labels, so segmentation accuracy cannot be measured"
NYU_NO_ORACLE = "the NYU Hand Pose Dataset has no part labels, and the oracle (e) regresses from the true segmentation"


def run_synth(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.synth import generate_synth

    manifest = generate_synth(work / DATA, params["frames"], seed=params["seed"], size=params["size"],
                              shard_size=params["shard_size"], progress=progress)
    return {"frames": manifest.count}


def run_sensor(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.sensor import SensorConfig, generate_sensor

    manifest = generate_sensor(work / DATA, params["frames"], seed=params["seed"], size=params["size"],
                               eval_labels=params["eval_labels"], config=SensorConfig(**params["sensor"]),
                               shard_size=params["shard_size"], progress=progress)
    return {"frames": manifest.count}


def run_nyu(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.nyu import load_nyu

    manifest = load_nyu(params["root"], params["split"], work / DATA, size=params["size"], limit=params["frames"],
                        shard_size=params["shard_size"], progress=progress)
    return {"frames": manifest.count}


def run_seg_synth(
    work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, config, strategy: tf.distribute.Strategy
) -> dict:
    from keras_hpe.evaluation.segmentation import save_frame_counts
    from keras_hpe.training.seg import accuracy_summary, evaluate_model, load_segmentation_model, train_segmentation

    result = train_segmentation(inputs["synth"] / DATA, work, config, val_dir=inputs["synth_test"] / DATA,
                                epochs=params["seg_epochs"], batch_size=params["batch_size"], seed=params["seed"],
                                progress=progress, run_dir=work.parent, strategy=strategy)
    # Scored again here for the per-frame counts behind stage 1's interval (the metrics JSON keeps totals only).
    scores = evaluate_model(load_segmentation_model(result.model_path), inputs["synth_test"] / DATA)[0]
    save_frame_counts(work / SYNTH_TEST_COUNTS_FILE, {"synth_test": scores.frame_counts})
    return {"model": result.model_path.name, "synth_test": {**accuracy_summary(scores), "hand_iou": scores.hand_iou},
            "run": result.metrics["run"]}


def run_dictionary(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.data.dataset import load_arrays, read_manifest
    from keras_hpe.restoration.index import build_dictionary

    data = inputs["synth"] / DATA
    labels = load_arrays(data, ["labels"])["labels"][:: params["every"]]
    source = {"path": recorded_path(data, work.parent), "every": params["every"], "frames_used": int(len(labels)),
              "manifest": _manifest_dict(read_manifest(data))}
    meta = build_dictionary(labels, work / DICTIONARY, patch=params["patch"], n_trees=params["trees"],
                            search_k=params["search_k"], seed=params["seed"], source_manifest=source,
                            progress=progress)
    return {"patches_total": meta.patches_total, "patches_unique": meta.patches_unique, "frames": meta.frames}


def run_restore(work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, workers: int) -> dict:
    from keras_hpe.restoration.pseudo_labels import restore_dataset

    result = restore_dataset(
        inputs["seg_synth"] / "seg_synth.keras", inputs["dictionary"] / DICTIONARY, inputs["real"] / DATA,
        work / RESTORED, method=params["method"], patch=params["patch"], window=params["window"],
        workers=workers, progress=progress, run_dir=work.parent,
    )
    return result.summary


def run_seg_weak(
    work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, config, strategy: tf.distribute.Strategy
) -> dict:
    from keras_hpe.data.dataset import read_manifest
    from keras_hpe.training.seg_weak import train_segmentation_weak

    real_test = inputs["real_test"] / DATA
    labelled = "labels" in read_manifest(real_test).fields
    result = train_segmentation_weak(
        inputs["seg_synth"] / "seg_synth.keras", inputs["synth"] / DATA, inputs["restore"] / RESTORED, work, config,
        epochs=params["epochs"], batch_size=params["batch_size"], val_dir=real_test if labelled else None,
        seed=params["seed"], progress=progress, run_dir=work.parent, strategy=strategy,
    )
    return {"model": result.model_path.name, "real_test": result.metrics.get("val"), "run": result.metrics["run"]}


def run_reg(
    work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, config, seg_model: str | None,
    strategy: tf.distribute.Strategy,
) -> dict:
    from keras_hpe.training.reg import train_regression

    seg_path = None if seg_model is None else inputs[seg_model] / f"{seg_model}.keras"
    result = train_regression(inputs["real"] / DATA, work, params["variant"], config, seg_path=seg_path,
                              epochs=params["reg_epochs"], batch_size=params["batch_size"], seed=params["seed"],
                              progress=progress, run_dir=work.parent, strategy=strategy)
    return {"models": [path.name for path in result.model_paths], "run": result.metrics["run"]}


def run_evaluate(
    work: Path, inputs: dict[str, Path], params: dict, progress: bool, *, workers: int,
    published: dict[str, np.ndarray],
) -> dict:
    """Tables 2-4 on the real test split, the success curves' errors and the picture figures (Fig. 7 from the
    real training frames the restore stage rejected). `published`: other methods' predictions (uvd) of the test
    frames, scored like `keras-hpe evaluate-joints` scores them."""
    from keras_hpe.data.dataset import load_arrays, load_frames, read_manifest
    from keras_hpe.evaluation.joints import evaluate_joints
    from keras_hpe.evaluation.restoration import table2_scores, table3_scores
    from keras_hpe.evaluation.segmentation import plot_per_part_accuracy, save_frame_counts
    from keras_hpe.reports.figures import plot_pose_montage, sample_frames
    from keras_hpe.reports.tables import segmentation_percent
    from keras_hpe.training.reg_predict import evaluate_regression, load_pipeline

    real_test = inputs["real_test"] / DATA
    manifest = read_manifest(real_test)
    seg_synth, seg_weak = inputs["seg_synth"] / "seg_synth.keras", inputs["seg_weak"] / "seg_weak.keras"
    index_dir = inputs["dictionary"] / DICTIONARY
    figures_dir = work / FIGURES
    figures_dir.mkdir()
    evaluation: dict = {"table2": None, "table3": None, "table4": {}, "not_run": {}, "frames": manifest.count}
    figures: dict[str, str] = {}
    counts = {}
    if "labels" in manifest.fields:
        table2 = table2_scores(seg_synth, index_dir, real_test, params["table2_methods"], patch=params["patch"],
                               window=params["window"], workers=workers, progress=progress)
        table3 = table3_scores(seg_synth, seg_weak, real_test)
        for name, rows in (("table2", table2), ("table3", table3)):
            evaluation[name] = {row: segmentation_percent(scores, row) for row, scores in rows.items()}
            counts.update({f"{name}/{row}": scores.frame_counts for row, scores in rows.items()})
        figures["fig6"] = plot_per_part_accuracy(
            {"synthetic only": table3["synthetic_only"], "semi/weakly supervised": table3["semi_weak"]},
            figures_dir / "fig6_per_part_accuracy.png").name
        frames = sample_frames(manifest.count, params["fig5_frames"], params["seed"])
        figures["fig5"] = _segmentation_examples(figures_dir / "fig5_segmentation.png", real_test, frames, seg_synth,
                                                 seg_weak, index_dir, params).name
    else:
        evaluation["not_run"] = {"table2": NYU_NO_LABELS, "table3": NYU_NO_LABELS,
                                 "fig5": NYU_NO_LABELS, "fig6": NYU_NO_LABELS}
    errors_mm, pred_full_uvd = {}, None
    for variant in REG_VARIANTS:
        name = f"reg_{variant}"
        if name not in inputs:  # the oracle, on NYU
            evaluation["not_run"][f"table4/{variant}"] = NYU_NO_ORACLE
            continue
        pipeline = load_pipeline(inputs[name] / f"{name}.keras")
        errors, pred_uvd = evaluate_regression(pipeline, real_test, progress=progress)
        evaluation["table4"][variant] = errors.to_dict()
        errors_mm[variant] = errors.errors_mm
        pred_full_uvd = pred_uvd if variant == "full" else pred_full_uvd
    np.savez(work / ERRORS_FILE, **errors_mm)
    if published:
        gt_uvd = load_arrays(real_test, ["joints_uvd"])["joints_uvd"]
        scores = {name: evaluate_joints(pred_uvd, gt_uvd) for name, pred_uvd in published.items()}
        evaluation["published"] = {name: errors.to_dict() for name, errors in scores.items()}
        np.savez(work / PUBLISHED_ERRORS_FILE, **{name: errors.errors_mm for name, errors in scores.items()})
    save_frame_counts(work / COUNTS_FILE, counts)
    fig7 = _restoration_failures(figures_dir / "fig7_restoration_failures.png", inputs, params)
    if isinstance(fig7, str):
        evaluation["not_run"]["fig7"] = fig7
    else:
        figures["fig7"], evaluation["fig7"] = fig7.pop("figure"), fig7
    frames = sample_frames(manifest.count, params["fig9_frames"], params["seed"])
    arrays = load_frames(real_test, frames, ["depth_mm", "center_uvd", "joints_uvd"])
    figures["fig9"] = plot_pose_montage(
        figures_dir / "fig9_pose_montage.png", arrays["depth_mm"], pred_full_uvd[frames], arrays["center_uvd"],
        gt_uvd=arrays["joints_uvd"], frame_ids=frames, cube_mm=manifest.cube_mm, camera=manifest.camera_model,
    ).name
    evaluation["figures"] = figures
    write_text(work / EVALUATION_FILE, json.dumps(json_normal(evaluation), indent=2) + "\n")
    return {"figures": figures, "not_run": evaluation["not_run"]}


def _segmentation_examples(
    out_png: Path, data_dir: Path, frames: np.ndarray, seg_synth: Path, seg_weak: Path, index_dir: Path, params: dict
) -> Path:
    """Fig. 5 for `frames`: the synthetic-only prediction, its restoration (eq. 2) and the fine-tuned prediction."""
    from keras_hpe.data.dataset import load_frames
    from keras_hpe.models.segmentation import predict_parts
    from keras_hpe.reports.figures import plot_segmentation_examples
    from keras_hpe.restoration.restore import restore_frames
    from keras_hpe.training.seg import load_segmentation_model

    arrays = load_frames(data_dir, frames, ["depth_mm", "labels", "center_uvd"])
    depth_mm, center_d_mm = arrays["depth_mm"], arrays["center_uvd"][:, 2]
    synthetic_only = predict_parts(load_segmentation_model(seg_synth), depth_mm, center_d_mm)[1]
    fine_tuned = predict_parts(load_segmentation_model(seg_weak), depth_mm, center_d_mm)[1]
    restored = restore_frames(synthetic_only, index_dir, method="integrate", window=params["window"],
                              patch=params["patch"])
    return plot_segmentation_examples(out_png, depth_mm, synthetic_only=synthetic_only, restored=restored,
                                      fine_tuned=fine_tuned, ground_truth=arrays["labels"])


def _restoration_failures(out_png: Path, inputs: dict[str, Path], params: dict) -> dict | str:
    """Fig. 7 for rejected real training frames drawn with the run's seed: its file name, the frames and their
    qualities as recomputed; or why there is none.

    The restore stage keeps only the accepted maps, so the chosen frames are predicted and
    restored again by the functions it used, with its method and window.
    """
    from keras_hpe.data.dataset import load_frames, read_manifest
    from keras_hpe.models.segmentation import predict_parts
    from keras_hpe.reports.figures import plot_restoration_failures, sample_frames
    from keras_hpe.restoration.pseudo_labels import QUALITY_NAME, read_quality_csv, read_restored_manifest
    from keras_hpe.restoration.quality import gate_restorations
    from keras_hpe.restoration.restore import restore_frames
    from keras_hpe.training.seg import load_segmentation_model

    restored_dir, real = inputs["restore"] / RESTORED, inputs["real"] / DATA
    quality = read_quality_csv(restored_dir / QUALITY_NAME)
    rejected = quality["frame"][~quality["accepted"]]
    if not len(rejected):
        return f"the quality gate rejected none of the {len(quality['frame'])} restored real training frames"
    frames = rejected[sample_frames(len(rejected), params["fig7_frames"], params["seed"])]
    job = read_restored_manifest(restored_dir).params["restoration"]
    manifest = read_manifest(real)
    arrays = load_frames(real, frames, ["depth_mm", "center_uvd", "joints_xyz"])
    model = load_segmentation_model(inputs["seg_synth"] / "seg_synth.keras")
    raw = predict_parts(model, arrays["depth_mm"], arrays["center_uvd"][:, 2])[1]
    restored = restore_frames(raw, inputs["dictionary"] / DICTIONARY, method=job["method"], window=job["window"],
                              patch=params["patch"])
    geometry = {"cube_mm": manifest.cube_mm, "camera": manifest.camera_model}
    gate = gate_restorations(raw, restored, arrays["depth_mm"], arrays["center_uvd"], arrays["joints_xyz"], **geometry)
    plot_restoration_failures(out_png, arrays["depth_mm"], raw, restored, arrays["joints_xyz"], arrays["center_uvd"],
                              gate, frame_ids=frames, **geometry)
    return {"figure": out_png.name, "frames": frames.tolist(), "raw_quality_mm": gate.raw_quality_mm.tolist(),
            "restored_quality_mm": gate.restored_quality_mm.tolist()}


def run_export(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    from keras_hpe.export import export_estimator
    from keras_hpe.pipeline import load_estimator

    estimator = load_estimator(inputs["reg_full"] / "reg_full.keras", inputs["seg_weak"] / "seg_weak.keras")
    path = export_estimator(estimator, params["saved_models"])
    return {"export_path": str(path), "version": int(path.name)}


def run_report(work: Path, inputs: dict[str, Path], params: dict, progress: bool) -> dict:
    """write_report into the reports folder, with the figures copied beside it."""
    from keras_hpe.data.dataset import read_manifest
    from keras_hpe.evaluation.segmentation import load_frame_counts
    from keras_hpe.reports.report import write_report
    from keras_hpe.reports.table4 import PUBLISHED, TABLE4_METHODS
    from keras_hpe.restoration.index import DictionaryMeta

    reports_dir = Path(params["reports"])
    evaluation = json.loads((inputs["evaluate"] / EVALUATION_FILE).read_text())
    figures = {}
    for name, file in evaluation["figures"].items():
        figures[name] = reports_dir / FIGURES / file
        with atomic_path(figures[name]) as tmp:
            shutil.copyfile(inputs["evaluate"] / FIGURES / file, tmp)
    with np.load(inputs["evaluate"] / ERRORS_FILE) as errors_file:
        errors_mm = {variant: errors_file[variant] for variant in evaluation["table4"]}
    curves = {TABLE4_METHODS[variant]: _joint_errors(values, errors_mm[variant])
              for variant, values in evaluation["table4"].items()}
    published = {}
    if evaluation.get("published"):
        with np.load(inputs["evaluate"] / PUBLISHED_ERRORS_FILE) as errors_file:
            published = {name: _joint_errors(values, errors_file[name])
                         for name, values in evaluation["published"].items()}
        curves.update({f"{name} ({PUBLISHED})": errors for name, errors in published.items()})
    # Folders of earlier versions have no per-frame counts: their segmentation verdicts are "not checked".
    counts_file, stage1_file = inputs["evaluate"] / COUNTS_FILE, inputs["seg_synth"] / SYNTH_TEST_COUNTS_FILE
    counts = load_frame_counts(counts_file) if counts_file.is_file() else {}
    table_counts = {table: {name.split("/", 1)[1]: value for name, value in counts.items()
                            if name.startswith(f"{table}/")} for table in ("table2", "table3")}
    stages = {name: json.loads((folder / STAGE_FILE).read_text()) for name, folder in inputs.items()}
    manifests = {name: _manifest_dict(read_manifest(inputs[name] / DATA))
                 for name in ("synth", "synth_test", "real", "real_test")}
    manifests["restored real (accepted pseudo labels)"] = _manifest_dict(read_manifest(inputs["restore"] / RESTORED))
    dictionary = DictionaryMeta.from_dict(json.loads((inputs["dictionary"] / DICTIONARY / "meta.json").read_text()))
    config = {
        **{key: params[key] for key in ("plan", "preset", "seed", "real_domain")},
        "restoration": stages["restore"]["result"],
        "dictionary": {key: value for key, value in dictionary.to_dict().items() if key != "source_manifest"},
        "export": stages["export"]["result"],
    }
    synth_test = stages["seg_synth"]["result"].get("synth_test")  # fractions, from accuracy_summary
    stage1 = None if synth_test is None else {
        "per_pixel": 100.0 * synth_test["per_pixel_accuracy"], "per_class": 100.0 * synth_test["mean_class_accuracy"],
        "frames": synth_test["frames"]}
    # The report is read on other machines: paths of this one's folders appear as the options naming them.
    folders = {SHOWN_RUN: work.parent, "SAVED_MODELS": Path(stages["export"]["params"]["saved_models"])}
    manifests, config = _shown_paths(manifests, folders), _shown_paths(config, folders)
    readme = write_report(
        reports_dir,
        stage1=stage1,
        table2=evaluation["table2"],
        table3=evaluation["table3"],
        table4={variant: values for variant, values in evaluation["table4"].items()},
        stage1_counts=load_frame_counts(stage1_file)["synth_test"] if stage1_file.is_file() else None,
        table2_counts=table_counts["table2"],
        table3_counts=table_counts["table3"],
        table4_errors_mm=errors_mm,
        table4_published=published,
        curves=curves,
        seconds={name: stage["seconds"] for name, stage in stages.items()},
        manifests=manifests,
        config=config,
        figures=figures,
        not_run=evaluation["not_run"],
    )
    return {"readme": str(readme), "summary": str(reports_dir / "summary.json")}


def _joint_errors(values: dict, errors_mm: np.ndarray):
    """A `JointErrors` back from its `to_dict()` and its per-frame errors."""
    from keras_hpe.evaluation.joints import JointErrors

    return JointErrors(
        mean_3d_mm=values["mean_3d_mm"], per_joint_mm=values["per_joint_mm"], mean_2d_px=values["mean_2d_px"],
        frames=values["frames"], thresholds_mm=np.asarray(values["thresholds_mm"]),
        curves={mode: np.asarray(curve) for mode, curve in values["curves"].items()}, errors_mm=errors_mm,
    )


def _shown_paths(value, folders: dict[str, Path], key: str | None = None):
    """`value` with every path string inside one of `folders` written as "NAME/relative/path", and every
    relative "path" value, recorded relative to the run folder, as "OUT/relative/path" (`SHOWN_RUN`)."""
    if isinstance(value, dict):
        return {name: _shown_paths(item, folders, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_shown_paths(item, folders) for item in value]
    if key == "path" and isinstance(value, str) and not os.path.isabs(value):
        return Path(SHOWN_RUN, value).as_posix()
    if isinstance(value, str) and os.path.isabs(value):
        for name, folder in folders.items():
            folder = os.path.abspath(folder)
            if os.path.commonpath([os.path.abspath(value), folder]) == folder:
                return Path(name, os.path.relpath(value, folder)).as_posix()
    return value


def _manifest_dict(manifest) -> dict:
    return {key: value for key, value in manifest.to_dict().items() if key != "shards"}


def json_normal(values: object) -> object:
    """`values` as read back from JSON (tuples -> lists, numpy scalars -> numbers), for comparing keys."""
    return json.loads(json.dumps(values, default=lambda value: value.item() if isinstance(value, np.generic)
                                 else str(value)))
