"""The report folder: README.md, CSVs, summary.json of exactly the agreed shape, figures linked."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import evaluate_joints
from keras_hpe.reports.report import machine_info, write_report

SEG_FIELDS = {"per_pixel", "per_class"}
JOINT_FIELDS = {"mean_3d_mm", "mean_2d_px"}
MANIFEST = {"format": "keras_hpe.dataset/1", "domain": "sensor", "count": 16, "size": 32}


def _joint_errors(noise_px, seed):
    rng = np.random.default_rng(seed)
    gt = np.stack([rng.uniform(250, 390, (20, 14)), rng.uniform(180, 300, (20, 14)),
                   rng.uniform(600, 900, (20, 14))], axis=-1)
    return evaluate_joints(gt + rng.normal(0, noise_px, gt.shape), gt)


def _png(path):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    return path


@pytest.fixture()
def report(tmp_path):
    joints = {"direct": _joint_errors(6.0, 0), "full": _joint_errors(4.0, 1)}
    figure = _png(tmp_path / "fig5.png")
    out = tmp_path / "reports"
    readme = write_report(
        out,
        table2={"none": {"per_pixel": 50.0, "per_class": 40.0}, "integrate": {"per_pixel": 54.0, "per_class": 44.0},
                "crf_potts": None},
        table3={"synthetic_only": {"per_pixel": 50.0, "per_class": 40.0},
                "semi_weak": {"per_pixel": 53.0, "per_class": 45.0}},
        table4=joints,
        curves=joints,
        seconds={"data": 12.5, "seg_pretrain": 3600.0},
        manifests={"sensor_eval": MANIFEST},
        config={"preset": "quick", "out": Path("runs/x")},
        figures={"fig5": figure},
    )
    return readme, out, joints


def test_summary_json_has_exactly_the_agreed_shape(report):
    _, out, joints = report
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"table2", "table3", "table4", "seconds"}
    assert set(summary["table2"]) == {"none", "center", "integrate", "crf_potts", "crf_overlap"}
    assert set(summary["table3"]) == {"synthetic_only", "semi_weak"}
    assert set(summary["table4"]) == {"direct", "cascade", "semi", "full"}
    assert all(set(row) == SEG_FIELDS for row in [*summary["table2"].values(), *summary["table3"].values()])
    assert all(set(row) == JOINT_FIELDS for row in summary["table4"].values())
    assert summary["table2"]["integrate"] == {"per_pixel": 54.0, "per_class": 44.0}
    assert summary["table2"]["center"] == {"per_pixel": None, "per_class": None}  # not run
    assert summary["table4"]["full"]["mean_3d_mm"] == pytest.approx(joints["full"].mean_3d_mm)
    assert summary["table4"]["semi"] == {"mean_3d_mm": None, "mean_2d_px": None}
    assert summary["seconds"] == {"data": 12.5, "seg_pretrain": 3600.0}


def test_readme_tables_verdicts_figures_and_details(report):
    readme, out, joints = report
    text = readme.read_text()
    assert text.startswith("# Reproduction of Neverova et al.")
    assert "simulated benchmark" in text and "not on NYU" in text
    assert "restoration with eq. 2 beats no restoration: +4.00 points per pixel (paper +3.52)" in text
    assert "+3.00 points (paper +6.15)" in text
    lower = 100 * (1 - joints["full"].mean_3d_mm / joints["direct"].mean_3d_mm)
    assert f"{lower:.1f}% lower mean 3D error than direct regression (a)" in text
    assert re.search(r"\| CRF, Potts-like pairwise term \| not run \|", text)
    assert "![fig5](../fig5.png)" in text and "![fig8](fig8_success_curves.png)" in text
    assert "| **total** | **3612.5** | **1:00:12** |" in text
    assert "<details><summary>configuration</summary>" in text and '"out": "runs/x"' in text
    assert '"domain": "sensor"' in text
    assert f"| cpu_count | {machine_info()['cpu_count']} |" in text
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (out / link).is_file(), link  # every link resolves from the README's folder


def test_csv_files_and_curves(report):
    _, out, joints = report
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "fig8_success_curves.png", "success_curves.csv", "summary.json",
        "table2.csv", "table3.csv", "table4.csv",
    ]  # atomic writes leave no temporaries
    table4 = pd.read_csv(out / "table4.csv", index_col="key")
    assert table4.loc["full", "mean_3d_mm"] == pytest.approx(joints["full"].mean_3d_mm)
    assert table4.loc["cascade", "status"] == "not run"
    curves = pd.read_csv(out / "success_curves.csv", index_col="threshold_mm")
    assert list(curves.columns) == ["direct", "full"]
    assert curves["full"].to_numpy() == pytest.approx(100 * joints["full"].curves["max"])


def test_nyu_manifest_changes_the_data_statement(tmp_path):
    readme = write_report(tmp_path, seconds={}, manifests={"test": {**MANIFEST, "domain": "nyu"}},
                          config={}, machine={"platform": "test"}, figures={})
    text = readme.read_text()
    assert "NYU Hand Pose Dataset" in text and "simulated benchmark" not in text
    assert "| platform | test |" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(value is None for row in summary["table3"].values() for value in row.values())


@pytest.mark.parametrize("stage1, status", [
    ({"per_pixel": 93.0, "per_class": 80.0, "frames": 500}, "Meets the paper's claim"),
    ({"per_pixel": 61.5, "per_class": 40.0, "frames": 500}, "Falls short of the paper's claim"),
    (None, "Not checked"),
])
def test_stage1_accuracy_is_checked_against_its_target(tmp_path, stage1, status):
    readme = write_report(tmp_path, stage1=stage1, seconds={}, manifests={}, config={}, machine={}, figures={})
    line = next(line for line in readme.read_text().splitlines() if "held-out synthetic frames" in line)
    assert line.startswith(f"- **{status}:**") and "90%" in line
    if stage1 is not None:
        assert f"{stage1['per_pixel']:.2f}% of the hand pixels of 500 held-out" in line
        assert ("points short" in line) == (stage1["per_pixel"] < 90)


def test_machine_info_fields():
    info = machine_info()
    assert set(info) >= {"platform", "cpu_count", "python", "tensorflow", "keras"}
    assert info["keras"][0].isdigit() and info["cpu_count"] >= 1


def test_bad_input_raises_user_errors(tmp_path):
    common = dict(manifests={}, config={}, machine={}, figures={})
    with pytest.raises(UserError, match="wall time of stage 'train' must be finite and >= 0"):
        write_report(tmp_path / "a", seconds={"train": -1.0}, **common)
    with pytest.raises(UserError, match="stage 1: per_class must be an accuracy in percent"):
        write_report(tmp_path / "c", seconds={}, stage1={"per_pixel": 0.6, "per_class": 140.0}, **common)
    with pytest.raises(UserError, match="figure 'fig9': no such file"):
        write_report(tmp_path / "b", seconds={}, **{**common, "figures": {"fig9": tmp_path / "missing.png"}})
    assert not any((tmp_path / name).exists() for name in "abc")
