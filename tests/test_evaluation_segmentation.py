"""Segmentation accuracy over hand pixels: hand-made maps with known answers, absent parts, bad input."""

import json

import numpy as np
import pytest

from keras_hpe.data.skeleton import NUM_PARTS, PART_NAMES
from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import evaluate_segmentation, plot_confusion, plot_per_part_accuracy

# One 4 x 4 frame: 3 background pixels, 6 palm (1), 4 thumb_distal (4), 3 index_distal (8).
GT = np.array([[[0, 0, 1, 1], [0, 1, 1, 1], [1, 4, 4, 8], [4, 4, 8, 8]]], dtype=np.uint8)
# Background pixels are predicted wrongly on purpose: they must not count.
PRED = np.array([[[5, 9, 1, 1], [3, 1, 1, 4], [1, 4, 1, 8], [4, 0, 8, 1]]], dtype=np.uint8)


def test_hand_made_map_known_scores():
    scores = evaluate_segmentation(PRED, GT)
    # palm 5/6 right (one -> 4); thumb_distal 2/4 (one -> palm, one -> background); index_distal 2/3.
    assert scores.hand_pixels == 13 and scores.frames == 1
    assert scores.per_pixel_accuracy == pytest.approx(9 / 13)
    assert scores.per_part_accuracy["palm"] == pytest.approx(5 / 6)
    assert scores.per_part_accuracy["thumb_distal"] == pytest.approx(2 / 4)
    assert scores.per_part_accuracy["index_distal"] == pytest.approx(2 / 3)
    assert scores.mean_class_accuracy == pytest.approx((5 / 6 + 2 / 4 + 2 / 3) / 3)
    expected = np.zeros((NUM_PARTS, NUM_PARTS), dtype=np.int64)
    expected[0, 0], expected[0, 3] = 5, 1
    expected[3, 3], expected[3, 0] = 2, 1
    expected[7, 7], expected[7, 0] = 2, 1
    assert np.array_equal(scores.confusion, expected)
    assert scores.part_pixels[[0, 3, 7]].tolist() == [6, 4, 3] and scores.part_pixels.sum() == 13


def test_absent_parts_are_nan_and_left_out_of_the_mean():
    scores = evaluate_segmentation(PRED, GT)
    absent = [name for name in PART_NAMES[1:] if name not in ("palm", "thumb_distal", "index_distal")]
    assert len(absent) == 17
    assert all(np.isnan(scores.per_part_accuracy[name]) for name in absent)
    summary = json.loads(json.dumps(scores.to_dict()))
    assert summary["per_part_accuracy"]["ring_distal"] is None
    assert summary["per_part_accuracy"]["palm"] == pytest.approx(5 / 6)
    assert np.array(summary["confusion"]).shape == (NUM_PARTS, NUM_PARTS)
    assert summary["part_pixels"]["thumb_distal"] == 4


def test_matches_a_pixel_count_reference_on_random_maps():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, (6, 32, 32))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 21, gt.shape))
    scores = evaluate_segmentation(pred, gt)
    hand = gt > 0
    reference = np.zeros((21, 21), dtype=np.int64)
    np.add.at(reference, (gt[hand], pred[hand]), 1)
    assert np.array_equal(scores.confusion, reference[1:, 1:])
    assert scores.per_pixel_accuracy == pytest.approx(np.mean(gt[hand] == pred[hand]))
    recall = [np.mean(pred[gt == part] == part) for part in range(1, 21)]
    assert list(scores.per_part_accuracy.values()) == pytest.approx(recall)
    assert scores.mean_class_accuracy == pytest.approx(np.mean(recall))


def test_perfect_prediction():
    gt = np.random.default_rng(1).integers(0, 21, (2, 32, 32))
    scores = evaluate_segmentation(gt, gt)
    assert scores.per_pixel_accuracy == 1.0 and scores.mean_class_accuracy == 1.0
    assert np.array_equal(np.diag(scores.confusion), scores.part_pixels)


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (PRED[:, :3], GT, "same shape"),
        (PRED[0], GT[0], r"same shape \(N, S, S\)"),
        (PRED.astype(np.float32), GT, "integer part labels"),
        (PRED, GT + 20, r"labels must be in 0\.\.20"),
        (PRED.astype(np.int64) - 1, GT, r"predicted labels: labels must be in 0\.\.20"),
        (PRED, np.zeros_like(GT), "no hand pixels"),
    ],
)
def test_bad_input(pred, gt, message):
    with pytest.raises(UserError, match=message):
        evaluate_segmentation(pred, gt)


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 21, (4, 32, 32))
    noisy = evaluate_segmentation(np.where(rng.random(gt.shape) < 0.5, gt, rng.integers(1, 21, gt.shape)), gt)
    better = evaluate_segmentation(np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(1, 21, gt.shape)), gt)
    confusion_png = plot_confusion(better, tmp_path / "confusion.png", title="test")
    parts_png = plot_per_part_accuracy({"supervised": noisy, "restored": better}, tmp_path / "parts.png")
    for path in (confusion_png, parts_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "parts.png"]
    with pytest.raises(UserError, match="no results"):
        plot_per_part_accuracy({}, tmp_path / "empty.png")
