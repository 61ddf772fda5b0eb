"""`keras-hpe reproduce` end to end with the tiny plan; skipping, resuming and rerunning stages."""

import contextlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_hpe import reproduce as reproduce_module
from keras_hpe.cli import main as cli_main
from keras_hpe.data import dataset as dataset_module
from keras_hpe.errors import UserError
from keras_hpe.reproduce import STAGE_FILE, Stage, build_stages, derived_seed, get_plan, reproduce, run_stage
from keras_hpe.training.devices import cpu_has_bfloat16

# The quick preset's "auto" on this CPU (`training.devices.resolve_precision`).
SEG_PRECISION = "mixed_bfloat16" if cpu_has_bfloat16() else "float32"
STAGES = ("synth", "synth_test", "real", "real_test", "seg_synth", "dictionary", "restore", "seg_weak",
          "reg_direct", "reg_cascade", "reg_semi", "reg_full", "reg_oracle", "evaluate", "export", "report")


@pytest.fixture(scope="module", autouse=True)
def reproduce_command():
    """Register the command (cli/main.py lists it once it is merged)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_main, "COMMAND_MODULES", ("keras_hpe.cli.reproduce",))
        yield


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny plan run once through the command line; `reads` lists (stage, data set, fields) of every read.

    Mirrored (`--strategy mirrored`): on a machine without GPUs, a MirroredStrategy over its one CPU device.
    """
    root = tmp_path_factory.mktemp("reproduce")
    paths = {"out": root / "run", "reports": root / "reports", "saved": root / "saved" / "keras_hpe"}
    stdout = io.StringIO()
    reads, current = [], {"stage": None}
    run_stage, check_fields = reproduce_module.run_stage, dataset_module._check_fields

    def recording_run_stage(stage, *args, **kwargs):
        current["stage"] = stage.name
        return run_stage(stage, *args, **kwargs)

    def recording_check_fields(manifest, path, fields):
        # Every reader (load_arrays, load_frames, make_tf_dataset) names the fields it reads here.
        checked = check_fields(manifest, path, fields)
        reads.append((current["stage"], Path(path).parent.name, tuple(checked)))
        return checked

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(reproduce_module, "run_stage", recording_run_stage)
        patch.setattr(dataset_module, "_check_fields", recording_check_fields)
        code = cli_main.main(["reproduce", "--preset", "tiny", "--out", str(paths["out"]), "--reports",
                              str(paths["reports"]), "--saved-models", str(paths["saved"]), "--no-progress",
                              "--strategy", "mirrored"])
    return code, stdout.getvalue(), paths, reads


def test_tiny_plan_writes_report_summary_and_export(tiny_run):
    code, stdout, paths, _ = tiny_run
    assert code == 0
    assert (paths["reports"] / "README.md").is_file()
    readme = (paths["reports"] / "README.md").read_text()  # machine-independent: no absolute run paths
    assert str(paths["out"]) not in readme and str(paths["saved"]) not in readme
    assert '"OUT/seg_synth/seg_synth.keras"' in readme and '"SAVED_MODELS/1"' in readme
    summary = json.loads((paths["reports"] / "summary.json").read_text())
    assert set(summary) == {"table2", "table3", "table4", "seconds", "verdicts", "intervals", "not_run"}
    assert summary["not_run"] == {}  # every table and figure of the paper
    assert set(summary["table2"]) == {"none", "center", "integrate", "crf_potts", "crf_overlap"}
    assert set(summary["table3"]) == {"synthetic_only", "semi_weak"}
    assert set(summary["table4"]) == {"direct", "cascade", "semi", "full", "oracle"}
    assert all(row["mean_3d_mm"] > 0 for row in summary["table4"].values())
    assert all(0 <= row["per_pixel"] <= 100 for row in summary["table2"].values())
    assert list(summary["seconds"]) == list(STAGES[:-1])  # every stage before the report itself
    for figure in ("fig5_segmentation.png", "fig6_per_part_accuracy.png", "fig7_restoration_failures.png",
                   "fig9_pose_montage.png"):
        assert (paths["reports"] / "figures" / figure).is_file()
    assert (paths["reports"] / "fig8_success_curves.png").is_file()
    # TF Serving layout <name>/<version>/
    assert [p.name for p in paths["saved"].iterdir()] == ["1"]
    assert (paths["saved"] / "1" / "saved_model.pb").is_file()
    assert (paths["saved"] / "1" / "variables").is_dir()
    lines = stdout.strip().splitlines()
    assert json.loads(lines[-1]) == summary
    assert any(line.startswith("report: ") and line.endswith("README.md") for line in lines)
    assert any(line == f"export: {paths['saved'] / '1'}" for line in lines)
    for stage in STAGES:
        assert json.loads((paths["out"] / stage / STAGE_FILE).read_text())["stage"] == stage
        assert not (paths["out"] / f"{stage}.partial").exists()
    # Each training stage records where and in what precision it trained.
    for stage, precision in (("seg_synth", SEG_PRECISION), ("seg_weak", SEG_PRECISION), ("reg_full", "float32")):
        run = json.loads((paths["out"] / stage / STAGE_FILE).read_text())["result"]["run"]
        assert (run["strategy"], run["replicas"], run["precision"]) == ("MirroredStrategy", 1, precision), stage
        assert run["devices"] == [device.name for device in tf.config.list_logical_devices()]


def test_the_cost_model_computes_the_bytes_the_tiny_run_wrote(tiny_run):
    """Within 10 % in OUT, where the data sets are exact, the models' bytes per weight measured and the remainders
    (logs, JSON, the accepted share of the restored frames) fitted at 64 x 64, and in all three folders: the
    export's and the report's bytes are fitted at 64 x 64 alone (a graph, figures), and 32 x 32 changes them."""
    from keras_hpe import costs
    from keras_hpe.presets import get_preset

    _, _, paths, _ = tiny_run
    plan = get_plan("tiny")
    preset = get_preset(plan.preset)
    predicted = costs.predict_run(plan, STAGES, preset, costs.FittedCosts.load(), costs.Machine(),
                                  costs.model_weights(preset, plan.size))
    written = {folder: sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
               for folder, path in (("out", paths["out"]), ("saved_models", paths["saved"]),
                                    ("reports", paths["reports"]))}
    computed = {folder: sum(stage.disk_bytes for stage in predicted.stages if stage.folder == folder)
                for folder in written}
    assert computed["out"] == pytest.approx(written["out"], rel=0.10)
    assert sum(computed.values()) == pytest.approx(sum(written.values()), rel=0.10)


def test_fig7_shows_rejected_training_frames_restored_again_as_the_restore_stage_did(tiny_run):
    from keras_hpe.restoration.pseudo_labels import read_quality_csv

    _, _, paths, _ = tiny_run
    fig7 = json.loads((paths["out"] / "evaluate" / "evaluation.json").read_text())["fig7"]
    quality = read_quality_csv(paths["out"] / "restore" / "restored" / "quality.csv")
    frames = fig7["frames"]
    assert len(frames) == get_plan("tiny").fig7_frames and frames == sorted(set(frames))
    assert not quality["accepted"][frames].any()
    # Recomputed with the restore stage's functions: the same qualities as it recorded.
    np.testing.assert_allclose(fig7["raw_quality_mm"], quality["raw_quality_mm"][frames], atol=2e-3)
    np.testing.assert_allclose(fig7["restored_quality_mm"], quality["restored_quality_mm"][frames], atol=2e-3)
    readme = (paths["reports"] / "README.md").read_text()
    assert readme.index("![fig6]") < readme.index("![fig7](figures/fig7_restoration_failures.png)") < readme.index(
        "![fig8]")


def test_no_json_in_the_run_folder_records_its_absolute_path(tiny_run):
    _, _, paths, _ = tiny_run
    files = list(paths["out"].rglob("*.json"))
    assert len(files) > 20  # stage.json files, manifests, metrics, the dictionary's meta.json, the restore summary
    for file in files:
        text = file.read_text()
        assert str(paths["out"]) not in text and str(paths["out"].resolve()) not in text, file
    restore = json.loads((paths["out"] / "restore" / STAGE_FILE).read_text())["result"]["job"]
    assert restore["model"]["path"] == "seg_synth/seg_synth.keras" and restore["source"]["path"] == "real/data"
    assert json.loads((paths["out"] / "reg_full" / "reg_full.json").read_text())["seg_model"] == \
        "seg_weak/seg_weak.keras"
    readme = (paths["reports"] / "README.md").read_text()  # the report still shows them under OUT
    assert '"path": "OUT/real/data"' in readme and '"path": "OUT/dictionary/index"' in readme


def test_a_moved_run_folder_resumes_without_rerunning_finished_stages(tiny_run, tmp_path):
    _, _, paths, _ = tiny_run
    moved = tmp_path / "moved"
    shutil.copytree(paths["out"], moved)
    shutil.rmtree(moved / "evaluate")  # as if the run had stopped before the evaluation
    hidden = paths["out"].with_name("hidden")
    paths["out"].rename(hidden)  # nothing may be read from the old place
    try:
        resumed = reproduce(get_plan("tiny"), moved, reports_dir=tmp_path / "reports", saved_models_dir=paths["saved"],
                            progress=False)
    finally:
        hidden.rename(paths["out"])
    assert {stage.name for stage in resumed.stages if stage.ran} == {"evaluate", "report"}
    # The evaluation read the regression models' segmentation models at their new place.
    before = json.loads((paths["out"] / "evaluate" / "evaluation.json").read_text())["table4"]
    after = json.loads((moved / "evaluate" / "evaluation.json").read_text())["table4"]
    assert after["full"]["mean_3d_mm"] == pytest.approx(before["full"]["mean_3d_mm"], rel=1e-6)


def test_rerun_skips_everything_then_a_changed_param_reruns_only_downstream(tiny_run):
    _, _, paths, _ = tiny_run
    options = dict(reports_dir=paths["reports"], saved_models_dir=paths["saved"], progress=False)

    def stamps():
        return {stage: (paths["out"] / stage / STAGE_FILE).stat().st_mtime_ns for stage in STAGES}

    before = stamps()
    again = reproduce(get_plan("tiny"), paths["out"], **options)
    assert [stage.ran for stage in again.stages] == [False] * len(STAGES)
    assert stamps() == before
    assert again.export_path == paths["saved"] / "1"

    # Fig. 9's frame count is a parameter of the evaluation: it and the report rerun, nothing upstream,
    # and not the export, which does not read the evaluation.
    changed = reproduce(replace(get_plan("tiny"), fig9_frames=4), paths["out"], **options)
    assert {stage.name for stage in changed.stages if stage.ran} == {"evaluate", "report"}
    after = stamps()
    assert {stage for stage in STAGES if after[stage] != before[stage]} == {"evaluate", "report"}
    assert [p.name for p in paths["saved"].iterdir()] == ["1"]


def test_a_changed_upstream_stage_reruns_its_downstream_and_an_interrupted_one_resumes(tmp_path):
    calls, interrupt = [], {"b"}

    def step(name):
        def run(work, inputs, params, progress):
            calls.append(name)
            attempts = work / "attempts"
            attempts.write_text((attempts.read_text() if attempts.exists() else "") + "x")
            if name in interrupt:
                interrupt.discard(name)
                raise KeyboardInterrupt
            return {"inputs": sorted(inputs), "value": params["value"]}
        return run

    def stages(a_value):
        return [Stage("a", (), {"value": a_value}, step("a")), Stage("b", ("a",), {"value": 0}, step("b")),
                Stage("c", ("b",), {"value": 0}, step("c")), Stage("d", (), {"value": 0}, step("d"))]

    def run_all(stage_list):
        fingerprints, records = {}, {}
        for stage in stage_list:
            records[stage.name], fingerprints[stage.name] = run_stage(stage, tmp_path, fingerprints, records, False)
        return records

    with pytest.raises(KeyboardInterrupt):
        run_all(stages(1))
    assert (tmp_path / "a").is_dir() and (tmp_path / "b.partial").is_dir() and not (tmp_path / "b").exists()
    records = run_all(stages(1))
    assert calls == ["a", "b", "b", "c", "d"]  # a was kept; b resumed in its partial folder
    assert (tmp_path / "b" / "attempts").read_text() == "xx"
    assert records["c"].result == {"inputs": ["b"], "value": 0}
    calls.clear()
    run_all(stages(2))
    assert calls == ["a", "b", "c"]  # d does not depend on a
    assert (tmp_path / "b" / "attempts").read_text() == "x"  # a fresh folder: the old state was not for these inputs


@pytest.mark.parametrize("change, stages", [
    ({"reg_epochs": 3}, {"reg_direct", "reg_cascade", "reg_semi", "reg_full", "reg_oracle", "report"}),
    ({"seg_weak_epochs": 3}, {"seg_weak", "report"}),
    ({"restore_workers": 2}, {"report"}),  # workers do not change any artefact
])
def test_a_plan_field_is_a_parameter_of_the_stages_it_affects_only(change, stages):
    plan = get_plan("tiny")
    before = {stage.name: stage.params for stage in build_stages(plan)}
    after = {stage.name: stage.params for stage in build_stages(replace(plan, **change))}
    assert {name for name in before if before[name] != after[name]} == stages


def test_precision_is_a_parameter_of_the_training_stages_and_the_strategy_of_none():
    plan = get_plan("tiny")
    before = {stage.name: stage.params for stage in build_stages(plan)}
    assert {stage.name: stage.params for stage in build_stages(plan, strategy="mirrored")} == before
    after = {stage.name: stage.params for stage in build_stages(plan, precision="float32")}
    assert {name for name in before if before[name] != after[name]} == {
        "seg_synth", "seg_weak", "reg_direct", "reg_cascade", "reg_semi", "reg_full", "reg_oracle", "report"}


@pytest.mark.parametrize("option, value", [("--strategy", "tpu"), ("--precision", "half")])
def test_an_unknown_strategy_or_precision_exits_2_before_any_work(option, value, tmp_path, capsys):
    code = cli_main.main(["reproduce", "--preset", "tiny", "--out", str(tmp_path / "run"), "--no-progress",
                          option, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"got {value!r}" in err
    assert not (tmp_path / "run").exists()


def test_seeds_differ_per_data_set_and_follow_the_run_seed():
    assert derived_seed(0, "synth") != derived_seed(0, "real")
    assert derived_seed(0, "synth") == derived_seed(0, "synth") != derived_seed(1, "synth")
    assert 0 <= derived_seed(7, "dictionary") < 2**31


def test_nyu_root_replaces_the_real_domain(tmp_path):
    from keras_hpe.data.nyu import write_nyu_like

    write_nyu_like(tmp_path / "nyu", "train", 2, seed=0)
    write_nyu_like(tmp_path / "nyu", "test", 2, seed=1)
    stages = {stage.name: stage for stage in build_stages(get_plan("tiny"), nyu_root=tmp_path / "nyu")}
    assert stages["real"].params["split"] == "train" and stages["real_test"].params["split"] == "test"
    assert stages["report"].params["real_domain"] == "nyu"
    with pytest.raises(UserError, match="sensor-config"):
        build_stages(get_plan("tiny"), nyu_root=tmp_path / "nyu", sensor_config=object())


@pytest.mark.parametrize("case", ["missing_nyu", "bad_json", "unknown_field"])
def test_bad_inputs_exit_2_with_one_line(case, tmp_path, capsys):
    config = tmp_path / "sensor.json"
    config.write_text({"bad_json": "{not json", "unknown_field": '{"baseline": 75}'}.get(case, "{}"))
    option = ["--nyu-root", str(tmp_path / "absent")] if case == "missing_nyu" else ["--sensor-config", str(config)]
    code = cli_main.main(["reproduce", "--preset", "tiny", "--out", str(tmp_path / "run"), "--no-progress", *option])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("keras-hpe: error:")
    assert ("absent" if case == "missing_nyu" else "sensor.json") in err
    assert not (tmp_path / "run").exists()


def test_only_the_oracle_reads_the_part_labels_of_the_real_training_frames(tiny_run):
    _, _, _, reads = tiny_run
    label_readers = {stage for stage, data_set, fields in reads if data_set == "real" and "labels" in fields}
    assert label_readers == {"reg_oracle"}
    # The method does read that data set, depth and joints only.
    assert {"restore", "reg_direct", "reg_full"} <= {stage for stage, data_set, _ in reads if data_set == "real"}
