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
from keras_hpe.evaluation.segmentation import FrameCounts, pooled_accuracy
from keras_hpe.reports.report import NOT_GIVEN, machine_info, write_report
from keras_hpe.reports.verdicts import INCONCLUSIVE, MEETS, NOT_CHECKED
from keras_hpe.reproduce import headline_numbers

SEG_FIELDS = {"per_pixel", "per_class", "hand_iou"}
JOINT_FIELDS = {"mean_3d_mm", "mean_2d_px"}
MANIFEST = {"format": "keras_hpe.dataset/1", "domain": "sensor", "count": 16, "size": 32}
FRAMES = 20
VERDICTS = ["stage1", "table2_integrate_vs_none", "table2_integrate_vs_center", "table2_integrate_vs_crf_potts",
            "table2_integrate_vs_crf_overlap", "table3_semi_weak_vs_synthetic_only", "table4_full_vs_direct",
            "table4_full_vs_semi"]


def _joint_errors(noise_px, seed):
    rng = np.random.default_rng(seed)
    gt = np.stack([rng.uniform(250, 390, (20, 14)), rng.uniform(180, 300, (20, 14)),
                   rng.uniform(600, 900, (20, 14))], axis=-1)
    return evaluate_joints(gt + rng.normal(0, noise_px, gt.shape), gt)


def _png(path):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    return path


def _segmentation(correct_pixels, seed):
    """Plain numbers (%) and the per-frame counts behind them: 10 pixels per part and frame."""
    correct = np.random.default_rng(seed).binomial(10, correct_pixels / 10, (FRAMES, 20))
    counts = FrameCounts(correct, np.full_like(correct, 10))
    pooled = pooled_accuracy(correct.sum(0), counts.pixels.sum(0))
    return {"per_pixel": 100 * pooled["per_pixel"], "per_class": 100 * pooled["per_class"]}, counts


@pytest.fixture()
def report(tmp_path):
    joints = {"direct": _joint_errors(6.0, 0), "full": _joint_errors(4.0, 1)}
    figure = _png(tmp_path / "fig5.png")
    out = tmp_path / "reports"
    (none, none_counts), (integrate, integrate_counts) = _segmentation(5.0, 0), _segmentation(7.0, 1)
    readme = write_report(
        out,
        table2={"none": none, "integrate": {**integrate, "hand_iou": 93.5}, "crf_potts": None},
        table3={"synthetic_only": none, "semi_weak": {"per_pixel": 53.0, "per_class": 45.0}},
        table4={variant: errors.to_dict() for variant, errors in joints.items()},
        table2_counts={"none": none_counts, "integrate": integrate_counts},
        table3_counts={"synthetic_only": none_counts},
        table4_errors_mm={variant: errors.errors_mm for variant, errors in joints.items()},
        curves=joints,
        seconds={"data": 12.5, "seg_pretrain": 3600.0},
        manifests={"sensor_eval": MANIFEST},
        config={"preset": "quick", "out": Path("runs/x")},
        figures={"fig5": figure},
    )
    return readme, out, joints, integrate


def test_summary_json_has_exactly_the_agreed_shape(report):
    _, out, joints, integrate = report
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"table2", "table3", "table4", "seconds", "verdicts", "intervals", "not_run"}
    assert set(summary["table2"]) == {"none", "center", "integrate", "crf_potts", "crf_overlap"}
    assert set(summary["table3"]) == {"synthetic_only", "semi_weak"}
    assert set(summary["table4"]) == {"direct", "cascade", "semi", "full", "oracle"}
    assert all(set(row) == SEG_FIELDS for row in [*summary["table2"].values(), *summary["table3"].values()])
    assert all(set(row) == JOINT_FIELDS for row in summary["table4"].values())
    assert summary["table2"]["integrate"] == {**integrate, "hand_iou": 93.5}
    assert summary["table2"]["center"] == {"per_pixel": None, "per_class": None, "hand_iou": None}  # not run
    assert summary["table4"]["full"]["mean_3d_mm"] == pytest.approx(joints["full"].mean_3d_mm)
    assert summary["table4"]["semi"] == {"mean_3d_mm": None, "mean_2d_px": None}
    assert summary["seconds"] == {"data": 12.5, "seg_pretrain": 3600.0}


def test_summary_json_holds_every_verdict_with_its_interval(report):
    _, out, joints, integrate = report
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["verdicts"]) == VERDICTS
    restoration = summary["verdicts"]["table2_integrate_vs_none"]
    assert restoration["status"] == MEETS and 0 < restoration["low"] < restoration["estimate"] < restoration["high"]
    assert (restoration["resamples"], restoration["seed"], restoration["frames"]) == (2000, 0, FRAMES)
    assert restoration == {**restoration, **summary["intervals"]["table2"]["integrate"]["per_pixel_vs_none"]}
    assert summary["verdicts"]["table4_full_vs_direct"]["target"] == -15.7
    for key in ("stage1", "table3_semi_weak_vs_synthetic_only", "table4_full_vs_semi"):
        assert summary["verdicts"][key]["status"] == NOT_CHECKED and summary["verdicts"][key]["low"] is None
    # No verdict meets the paper's claim on an interval that includes 0.
    for verdict in summary["verdicts"].values():
        if verdict["status"] == MEETS:
            assert verdict["low"] > 0 or verdict["high"] < 0
        if verdict["status"] == INCONCLUSIVE:
            assert verdict["low"] <= 0 <= verdict["high"]
    change = summary["intervals"]["table4"]["full"]["change_3d_vs_direct_percent"]
    headline = headline_numbers(summary)
    assert headline["full_vs_direct_3d_percent"] == pytest.approx(change["estimate"])
    assert (headline["full_vs_direct_3d_percent_low"], headline["full_vs_direct_3d_percent_high"]) == (
        change["low"], change["high"])
    assert headline["stage2_gain_per_pixel_points_low"] is None  # no counts for semi_weak


def test_readme_tables_verdicts_figures_and_details(report):
    readme, out, joints, integrate = report
    text = readme.read_text()
    assert text.startswith("# Reproduction of Neverova et al.")
    assert "simulated benchmark" in text and "not on NYU" in text
    assert "**Deviation: a not-hand class.**" in text and "21 classes" in text
    none = json.loads((out / "summary.json").read_text())["table2"]["none"]["per_pixel"]
    assert f"restoration with eq. 2 beats no restoration: {integrate['per_pixel'] - none:+.2f} points per pixel " \
           "(95 % CI +" in text
    assert f"by {53.0 - none:+.2f} points (paper +6.15)" in text  # no counts for semi_weak: no interval
    lower = 100 * (1 - joints["full"].mean_3d_mm / joints["direct"].mean_3d_mm)
    assert f"{lower:.1f}% lower mean 3D error than direct regression (a)" in text
    assert re.search(r"\| CRF, Potts-like pairwise term \| not run \|", text)
    assert "| 93.50 |" in text  # the hand IoU column
    # The method of the intervals, once; every checked verdict with its interval.
    assert text.count("paired bootstrap over the test frames (2,000 resamples") == 1
    claims = [line for line in text.split("## Tables")[0].splitlines() if line.startswith("- **")]
    assert len(claims) == len(VERDICTS)
    assert all("95 % CI" in line for line in claims if not line.startswith(f"- **{NOT_CHECKED}"))
    assert "![fig5](../fig5.png)" in text and "![fig8](fig8_success_curves.png)" in text
    assert "| **total** | **3612.5** | **1:00:12** |" in text
    assert "<details><summary>configuration</summary>" in text and '"out": "runs/x"' in text
    assert '"domain": "sensor"' in text
    assert f"| cpu_count | {machine_info()['cpu_count']} |" in text
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (out / link).is_file(), link  # every link resolves from the README's folder


def test_csv_files_and_curves(report):
    _, out, joints, _ = report
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


def test_every_figure_not_given_says_so(report):
    readme, out, _, _ = report
    text = readme.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["not_run"] == {name: NOT_GIVEN for name in ("fig6", "fig7", "fig9")}
    assert f"### Fig. 7: restoration failures\n\n*Not run: {NOT_GIVEN}.*" in text
    assert "### Fig. 5: segmentation examples\n\n![fig5](../fig5.png)" in text


def test_a_table_not_run_shows_its_heading_and_why(tmp_path):
    reason = "the NYU Hand Pose Dataset has no part labels, so segmentation accuracy cannot be measured"
    joints = {"direct": _joint_errors(6.0, 0), "full": _joint_errors(4.0, 1)}
    readme = write_report(tmp_path, table4={variant: errors.to_dict() for variant, errors in joints.items()},
                          table4_errors_mm={variant: errors.errors_mm for variant, errors in joints.items()},
                          curves=joints, seconds={}, manifests={}, config={}, machine={}, figures={},
                          not_run={"table2": reason, "table3": reason + ".", "fig5": reason})
    text = readme.read_text()
    for title in ("Table 2: restoration of the real evaluation split's segmentations",
                  "Table 3: semi/weakly-supervised training of the segmentation network"):
        section = text.split(f"### {title}")[1].split("\n### ")[0]
        assert section.strip().splitlines()[-1] == f"*Not run: {reason}.*"  # one line, no table body
        assert "| method |" not in section
    assert text.count("| method |") == 1  # Table 4's
    assert f"### Fig. 5: segmentation examples\n\n*Not run: {reason}.*" in text
    assert "### Fig. 8: success curves\n\n![fig8](fig8_success_curves.png)" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["not_run"] == {"table2": reason, "table3": reason, "fig5": reason, "fig6": NOT_GIVEN,
                                  "fig7": NOT_GIVEN, "fig9": NOT_GIVEN}
    with pytest.raises(UserError, match="not_run: table5 is not a table, row or figure of the paper"):
        write_report(tmp_path / "a", seconds={}, manifests={}, config={}, machine={}, figures={},
                     not_run={"table5": reason})


def test_nyu_manifest_changes_the_data_statement(tmp_path):
    readme = write_report(tmp_path, seconds={}, manifests={"test": {**MANIFEST, "domain": "nyu"}},
                          config={}, machine={"platform": "test"}, figures={})
    text = readme.read_text()
    assert "NYU Hand Pose Dataset" in text and "simulated benchmark" not in text
    assert "| platform | test |" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(value is None for row in summary["table3"].values() for value in row.values())


@pytest.mark.parametrize("correct_pixels, status", [
    (9.6, "Meets the paper's claim"),
    (6.2, "Contradicts the paper's claim"),
    (9.0, "Inconclusive"),
    (None, "Not checked"),
])
def test_stage1_accuracy_is_checked_against_its_target(tmp_path, correct_pixels, status):
    stage1, counts = (None, None) if correct_pixels is None else _segmentation(correct_pixels, 2)
    readme = write_report(tmp_path, stage1=stage1, stage1_counts=counts, seconds={}, manifests={}, config={},
                          machine={}, figures={})
    line = next(line for line in readme.read_text().splitlines() if "held-out synthetic frames" in line)
    assert line.startswith(f"- **{status}:**") and "90%" in line
    if stage1 is not None:
        assert f"{stage1['per_pixel']:.2f}% (95 % CI " in line and f"of the hand pixels of {FRAMES} held-out" in line
        assert ("points short" in line) == (status == "Contradicts the paper's claim")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdicts"]["stage1"]["status"] == status


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
