"""Paper tables from hand-made numbers: differences, verdicts decided on 95 % intervals, CSV, "not run" rows."""

import math

import numpy as np
import pandas as pd
import pytest

from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import evaluate_joints
from keras_hpe.evaluation.segmentation import FrameCounts, evaluate_segmentation, pooled_accuracy
from keras_hpe.reports.table4 import PAPER_FULL_VS_DIRECT_3D_PERCENT, table4
from keras_hpe.reports.tables import PAPER_TABLE2, segmentation_percent, stage1_verdict, table2, table3
from keras_hpe.reports.verdicts import (
    CONTRADICTS,
    INCONCLUSIVE,
    MEETS,
    NO_FRAMES,
    NOT_CHECKED,
    NOT_RUN,
    TARGET_INCONCLUSIVE,
    TARGET_MET,
    TARGET_NOT_MET,
)

FRAMES = 80
FLIP = np.where(np.arange(FRAMES)[:, None] % 2 == 0, 1, -1)  # +1 on half of the frames, -1 on the others
BASE = np.random.default_rng(0).integers(3, 7, (FRAMES, 20))  # correct pixels of 10 per part and frame


def _seg(per_pixel, per_class):
    return {"per_pixel": per_pixel, "per_class": per_class}


def _joints(mean_3d_mm, mean_2d_px):
    return {"mean_3d_mm": mean_3d_mm, "mean_2d_px": mean_2d_px}


def _measured(correct):
    """Plain numbers and the per-frame counts (10 pixels per part and frame) they come from."""
    counts = FrameCounts(np.asarray(correct), np.full_like(correct, 10))
    pooled = pooled_accuracy(counts.correct.sum(0), counts.pixels.sum(0))
    return _seg(100 * pooled["per_pixel"], 100 * pooled["per_class"]), counts


def _measured_rows(rows):
    measured = {key: _measured(correct) for key, correct in rows.items()}
    return {key: numbers for key, (numbers, _) in measured.items()}, {key: c for key, (_, c) in measured.items()}


TABLE2_RESULTS = {
    "none": _seg(50.0, 40.0),
    "center": _seg(48.5, 41.0),
    "integrate": _seg(53.25, 44.5),
    "crf_potts": _seg(52.0, 43.0),
    "crf_overlap": _seg(51.0, 42.0),
}


def test_table2_differences_and_paper_numbers():
    table = table2(TABLE2_RESULTS)
    frame = table.frame
    assert list(frame.index) == ["none", "center", "integrate", "crf_potts", "crf_overlap"]
    assert frame.loc["integrate", "per_pixel_vs_none"] == pytest.approx(3.25)
    assert frame.loc["center", "per_class_vs_none"] == pytest.approx(1.0)
    assert frame.loc["none", "per_pixel_vs_none"] == 0.0
    assert frame.loc["integrate", "paper_per_pixel"] == 54.55
    assert frame.loc["integrate", "paper_per_pixel_vs_none"] == pytest.approx(3.52)
    markdown = table.to_markdown()
    assert "53.25 (+3.25)" in markdown and "54.55 (+3.52)" in markdown and "48.50 (-1.50)" in markdown
    # Numbers without their per-frame counts have no interval: no verdict either way.
    assert "restoration with eq. 2 vs. no restoration: +3.25 points per pixel (paper +3.52)" in markdown
    assert all(verdict.status == NOT_CHECKED and NO_FRAMES in verdict.text for verdict in table.verdicts)
    assert table.summary["integrate"] == {"per_pixel": 53.25, "per_class": 44.5, "hand_iou": None}
    assert table.intervals == {}


def test_table2_verdicts_meet_contradict_or_are_inconclusive_by_their_interval():
    integrate = BASE + 2
    numbers, counts = _measured_rows({"none": BASE, "center": integrate + 1, "integrate": integrate,
                                      "crf_potts": integrate + FLIP})
    table = table2({**numbers, "crf_overlap": None}, counts)
    assert [verdict.status for verdict in table.verdicts] == [MEETS, CONTRADICTS, INCONCLUSIVE, NOT_CHECKED]
    meets, contradicts, inconclusive, _ = table.verdicts
    assert meets.text.startswith("restoration with eq. 2 beats no restoration: +20.00 points per pixel "
                                 "(95 % CI +20.00 to +20.00; paper +3.52)")
    assert contradicts.text.startswith("integration (eq. 2) does worse than NN search without integration: "
                                       "-10.00 points per pixel")
    assert inconclusive.text.startswith("integration (eq. 2) cannot be told apart from the CRF with a Potts-like "
                                        "term: +0.00 points per pixel (95 % CI -")
    assert inconclusive.interval.low < 0 < inconclusive.interval.high
    assert inconclusive.to_markdown().startswith("- **Inconclusive:** ")
    # Each difference against "none" is shown with its interval; the CSV frame holds the bounds.
    shown = numbers["integrate"]["per_pixel"]
    assert f"| NN search + integration (eq. 2) | {shown:.2f} (+20.00 [+20.00, +20.00]) |" in table.body
    assert table.frame.loc["crf_potts", "per_pixel_vs_none_low"] < 20 < table.frame.loc["crf_potts",
                                                                                        "per_pixel_vs_none_high"]
    assert math.isnan(table.frame.loc["crf_overlap", "per_pixel_vs_none_low"])
    assert set(table.intervals) == {"center", "integrate", "crf_potts"}
    interval = table.intervals["integrate"]["per_pixel_vs_none"]
    assert interval.estimate == pytest.approx(table.frame.loc["integrate", "per_pixel_vs_none"])
    summary = meets.to_dict()
    assert summary["status"] == MEETS and summary["low"] == interval.low and summary["resamples"] == 2000
    assert set(summary) >= {"estimate", "low", "high", "resamples", "seed", "frames", "status", "text"}


def test_missing_rows_are_not_run_not_dropped():
    table = table2({"none": _seg(50.0, 40.0), "integrate": _seg(55.0, 45.0), "crf_potts": None})
    frame = table.frame
    assert len(frame) == 5
    assert frame.loc["center", "status"] == NOT_RUN and frame.loc["crf_potts", "status"] == NOT_RUN
    assert math.isnan(frame.loc["center", "per_pixel"])
    assert frame.loc["center", "paper_per_pixel"] == PAPER_TABLE2["center"]["per_pixel"]
    rows = [line for line in table.body.splitlines() if "centre label" in line]
    assert rows and NOT_RUN in rows[0]
    assert [verdict.status for verdict in table.verdicts] == [NOT_CHECKED] * 4
    assert "`center` not run" in table.verdicts[1].text
    assert table.summary["center"] == {"per_pixel": None, "per_class": None, "hand_iou": None}
    # Nothing at all: every row still there, every claim unchecked.
    empty = table2(None)
    assert (empty.frame["status"] == NOT_RUN).all() and all(v.status == NOT_CHECKED for v in empty.verdicts)


def test_table2_without_the_reference_row_keeps_the_others():
    table = table2({"integrate": _seg(55.0, 45.0)})
    assert "55.00 (none not run)" in table.body
    assert math.isnan(table.frame.loc["integrate", "per_pixel_vs_none"])


def test_csv_round_trips_through_pandas(tmp_path):
    numbers, counts = _measured_rows({"none": BASE, "integrate": BASE + FLIP + 1})
    table = table2({**numbers, "crf_overlap": None}, counts)
    path = table.write_csv(tmp_path / "out" / "table2.csv")
    assert [p.name for p in path.parent.iterdir()] == ["table2.csv"]  # nothing temporary left
    back = pd.read_csv(path, index_col="key")
    pd.testing.assert_frame_equal(back, table.frame)
    assert back.loc["crf_overlap", "status"] == NOT_RUN and np.isnan(back.loc["crf_overlap", "per_pixel"])
    assert back.loc["integrate", "per_pixel_vs_none_low"] < 10 < back.loc["integrate", "per_pixel_vs_none_high"]


def test_table3_verdict_and_the_target_each_on_the_interval():
    # +6 points per pixel on average: +14 of 200 hand pixels on half of the frames, +10 on the others.
    near_target = BASE + np.where(FLIP > 0, np.arange(20) < 14, np.arange(20) < 10)
    cases = {"above": (BASE + 1, MEETS, TARGET_MET, "is met: the whole interval clears it"),
             "short": (BASE + (np.arange(20) < 4), MEETS, TARGET_NOT_MET, "is not met: the whole interval falls"),
             "near": (near_target, MEETS, TARGET_INCONCLUSIVE, "is inconclusive: the interval includes it"),
             "worse": (BASE - 1, CONTRADICTS, TARGET_NOT_MET, "is not met")}
    for name, (semi_weak, status, target_status, phrase) in cases.items():
        numbers, counts = _measured_rows({"synthetic_only": BASE, "semi_weak": semi_weak})
        verdict = table3(numbers, counts).verdicts[0]
        assert (verdict.status, verdict.target_status) == (status, target_status), name
        assert phrase in verdict.text and "the project's target of +6.00 points per pixel" in verdict.text, name
    numbers, counts = _measured_rows({"synthetic_only": BASE, "semi_weak": near_target})
    verdict = table3(numbers, counts).verdicts[0]
    assert "by +6.00 points (95 % CI +" in verdict.text and "; paper +6.15)" in verdict.text
    assert verdict.interval.low < 6 < verdict.interval.high
    missing = table3({"semi_weak": _seg(48.0, 41.0)}).verdicts[0]
    assert missing.status == NOT_CHECKED and "`synthetic_only` not run" in missing.text


def test_table4_relative_change_with_its_interval():
    rng = np.random.default_rng(5)
    direct = rng.uniform(15, 30, (FRAMES, 14))
    errors = {"direct": direct, "semi": 0.9 * direct, "full": 0.8 * direct * rng.uniform(0.95, 1.05, direct.shape)}
    results = {key: _joints(values.mean(), 5.0) for key, values in errors.items()}
    table = table4(results, errors)
    frame = table.frame
    change = 100 * (errors["full"].mean() / direct.mean() - 1)
    assert frame.loc["full", "change_3d_vs_direct_percent"] == pytest.approx(change)
    assert frame.loc["semi", "change_3d_vs_direct_percent"] == pytest.approx(-10.0)
    assert frame.loc["full", "paper_change_3d_vs_direct_percent"] == PAPER_FULL_VS_DIRECT_3D_PERCENT
    assert frame.loc["cascade", "status"] == NOT_RUN
    low, high = frame.loc["full", ["change_3d_vs_direct_percent_low", "change_3d_vs_direct_percent_high"]]
    assert f"| {change:+.1f} [{low:+.1f}, {high:+.1f}] | -15.7 |" in table.body
    full_vs_direct, full_vs_semi = table.verdicts
    assert (full_vs_direct.status, full_vs_direct.target_status) == (MEETS, TARGET_MET)
    assert full_vs_direct.interval.high < PAPER_FULL_VS_DIRECT_3D_PERCENT
    assert f"{-change:.1f}% lower mean 3D error than direct regression (a)" in full_vs_direct.text
    assert f"(95 % CI {low:+.1f} to {high:+.1f}%; paper -15.7%)" in full_vs_direct.text
    assert full_vs_direct.others["difference_mm"].high < 0
    assert full_vs_semi.status == MEETS and full_vs_semi.target is None
    # 10% lower on every frame: the claim holds, the paper's 15.7% does not; (d) = (c) is a difference of 0.
    short = table4({**results, "full": results["semi"]}, {**errors, "full": errors["semi"]})
    assert (short.verdicts[0].status, short.verdicts[0].target_status) == (MEETS, TARGET_NOT_MET)
    assert short.verdicts[1].status == INCONCLUSIVE
    # 10% higher on half of the frames and lower on the others: inconclusive.
    flipped = direct * (1 + 0.1 * FLIP)
    mixed = table4({**results, "full": _joints(flipped.mean(), 5.0)}, {**errors, "full": flipped})
    assert mixed.verdicts[0].status == INCONCLUSIVE and mixed.verdicts[0].target_status == TARGET_NOT_MET
    worse = table4({**results, "full": _joints(1.1 * direct.mean(), 5.0)}, {**errors, "full": 1.1 * direct})
    assert worse.verdicts[0].status == CONTRADICTS and "10.0% higher" in worse.verdicts[0].text
    assert table.summary["cascade"] == {"mean_3d_mm": None, "mean_2d_px": None}
    assert table4(results).verdicts[0].status == NOT_CHECKED


def test_table4_oracle_row_is_a_bound_judged_against_its_target_not_a_claim():
    rng = np.random.default_rng(6)
    direct = rng.uniform(15, 30, (FRAMES, 14))
    errors = {"direct": direct, "full": 0.95 * direct, "oracle": 0.7 * direct}
    table = table4({key: _joints(values.mean(), 5.0) for key, values in errors.items()}, errors)
    assert table.frame.loc["oracle", "change_3d_vs_direct_percent"] == pytest.approx(-30.0)
    assert "(e) oracle" in table.body and "| -30.0 [-30.0, -30.0] | lost |" in table.body
    assert not any("oracle" in verdict.key for verdict in table.verdicts)  # a diagnostic: no claim of the paper
    note = next(note for note in table.notes if note.startswith("(e) is a diagnostic"))
    assert "30.0% lower mean 3D error than (a)" in note and "target of -25% is met" in note
    errors["oracle"] = 0.9 * direct
    short = table4({key: _joints(values.mean(), 5.0) for key, values in errors.items()}, errors)
    assert "target of -25% is not met" in next(note for note in short.notes if note.startswith("(e)"))


def test_stage1_verdict_against_its_target():
    # 95%, 45.5% and 90% of the hand pixels, the last with 100% and 80% on alternate frames.
    for correct, status in ((9 + (FLIP > 0), MEETS), (BASE, CONTRADICTS), (9 + FLIP, INCONCLUSIVE)):
        numbers, counts = _measured(np.broadcast_to(correct, BASE.shape))
        verdict = stage1_verdict({**numbers, "frames": FRAMES}, counts)
        assert verdict.status == status and verdict.target == 90.0
        assert f"of the hand pixels of {FRAMES} held-out synthetic frames" in verdict.text
        assert "95 % CI" in verdict.text
    assert "IoU" not in verdict.text  # these counts hold no IoU terms
    assert stage1_verdict({**numbers, "frames": FRAMES}).status == NOT_CHECKED
    assert stage1_verdict(None).status == NOT_CHECKED


def test_stage1_verdict_states_the_hand_iou_with_its_interval():
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 21, (FRAMES, 12, 12))
    pred = np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(0, 21, gt.shape))
    scores = evaluate_segmentation(pred, gt)
    verdict = stage1_verdict(scores)
    iou = verdict.others["hand_iou"]
    assert iou.estimate == pytest.approx(100 * scores.hand_iou) and iou.low < iou.estimate < iou.high
    assert (f"hand / not-hand IoU over foreground pixels {100 * scores.hand_iou:.2f}% (95 % CI {iou.low:.2f} to"
            in verdict.text)
    assert verdict.interval.estimate == pytest.approx(100 * scores.per_pixel_accuracy)  # the verdict is on accuracy
    plain = stage1_verdict({"per_pixel": 60.0, "per_class": 50.0, "hand_iou": 81.25})
    assert "IoU over foreground pixels 81.25%" in plain.text and plain.status == NOT_CHECKED
    with pytest.raises(UserError, match="the per-frame counts give hand_iou"):
        stage1_verdict({**segmentation_percent(scores, "s"), "hand_iou": 1.0}, scores.frame_counts)


def test_result_objects_are_accepted():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, (4, 8, 8))
    scores = evaluate_segmentation(np.where(rng.random(gt.shape) < 0.7, gt, 1), gt)
    better = evaluate_segmentation(np.where(rng.random(gt.shape) < 0.9, gt, 1), gt)
    table = table3({"synthetic_only": scores, "semi_weak": better})
    assert table.summary["synthetic_only"]["per_pixel"] == pytest.approx(100 * scores.per_pixel_accuracy)
    assert table.summary["synthetic_only"]["hand_iou"] == pytest.approx(100 * scores.hand_iou)
    assert "| hand IoU |" in table.body.splitlines()[0]
    assert table.verdicts[0].interval is not None  # the scores carry their per-frame counts
    gt_uvd = np.stack([rng.uniform(200, 400, (3, 14)), rng.uniform(150, 300, (3, 14)),
                       rng.uniform(600, 800, (3, 14))], axis=-1)
    errors = evaluate_joints(gt_uvd + rng.normal(0, 3, gt_uvd.shape), gt_uvd)
    full = evaluate_joints(gt_uvd + rng.normal(0, 2, gt_uvd.shape), gt_uvd)
    table = table4({"direct": errors, "full": full})
    assert table.summary["direct"] == {"mean_3d_mm": errors.mean_3d_mm, "mean_2d_px": errors.mean_2d_px}
    assert table.verdicts[0].interval is not None


def test_restoration_spelling_is_accepted():
    assert table2({"crf-potts": _seg(52.0, 43.0)}).summary["crf_potts"]["per_pixel"] == 52.0


def test_counts_must_match_the_numbers_and_share_the_frames():
    numbers, counts = _measured_rows({"none": BASE, "integrate": BASE + 1})
    shown = numbers["none"]["per_pixel"]
    with pytest.raises(UserError, match=f"the per-frame counts give per_pixel {shown:.4f}%, the result says"):
        table2({**numbers, "none": _seg(shown + 1, numbers["none"]["per_class"])}, counts)
    fewer_numbers, fewer = _measured(BASE[:40] + 1)
    with pytest.raises(UserError, match=r"different frame counts \(40, 80\)"):
        table2({**numbers, "integrate": fewer_numbers}, {**counts, "integrate": fewer})
    with pytest.raises(UserError, match="per-frame counts for row 'center', which has no result"):
        table2(numbers, {**counts, "center": counts["none"]})
    with pytest.raises(UserError, match="the per-frame errors average 21.0000 mm"):
        table4({"direct": _joints(20.0, 5.0)}, {"direct": np.full((FRAMES, 14), 21.0)})


@pytest.mark.parametrize(
    "results, message",
    [
        ({"nothing": _seg(1.0, 1.0)}, "unknown row 'nothing'"),
        ({"none": {"per_pixel": 50.0}}, "missing per_class"),
        ({"none": _seg(0.5, 140.0)}, "per_class must be an accuracy in percent"),
        ({"none": _seg("high", 1.0)}, "per_pixel must be a number"),
        ({"none": [50.0, 40.0]}, "expected scores or a dict"),
        ({"none": {**_seg(50.0, 40.0), "hand_iou": 101.0}}, "hand_iou must be an accuracy in percent"),
    ],
)
def test_bad_rows_raise_user_errors(results, message):
    with pytest.raises(UserError, match=message):
        table2(results)


def test_bad_joint_numbers_raise_user_errors():
    with pytest.raises(UserError, match="mean_3d_mm must be finite"):
        table4({"full": _joints(float("nan"), 3.0)})
    with pytest.raises(UserError, match="mean_2d_px must be an error >= 0"):
        table4({"full": _joints(12.0, -1.0)})


def test_table4_published_rows_are_marked_and_get_no_verdict():
    rng = np.random.default_rng(6)
    direct = rng.uniform(15, 30, (FRAMES, 14))
    errors = {"direct": direct, "full": 0.8 * direct}
    results = {key: _joints(values.mean(), 5.0) for key, values in errors.items()}
    gt = rng.uniform(300, 700, (FRAMES, 14, 3))
    published = {"DeepPrior": evaluate_joints(gt + [0.0, 0.0, 12.0], gt)}
    table = table4(results, errors, published)
    assert list(table.frame.index[:2]) == ["published/DeepPrior", "direct"]  # the literature on top, as in the paper
    row = table.frame.loc["published/DeepPrior"]
    assert row["status"] == "published" and row["mean_3d_mm"] == pytest.approx(published["DeepPrior"].mean_3d_mm)
    assert table.ran and len(table.verdicts) == len(table4(results, errors).verdicts)
    assert "| DeepPrior (published predictions, not trained here; no verdict) | " in table.body
    assert table.body.splitlines()[2].endswith("| n/a |")
    assert table.summary["published/DeepPrior"]["mean_3d_mm"] == pytest.approx(row["mean_3d_mm"])
    assert table.intervals["published/DeepPrior"]["change_3d_vs_direct_percent"].frames == FRAMES
    assert any("published predictions (`reproduce --compare`)" in note for note in table.notes)
    assert not any("--compare" in note for note in table4(results, errors).notes)
