"""Segmentation accuracy over hand pixels: hand-made maps with known answers, absent parts, bad input."""

import json

import numpy as np
import pytest

from keras_hpe.data.skeleton import NUM_PARTS, PART_NAMES
from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import (
    FrameCounts,
    evaluate_segmentation,
    load_frame_counts,
    plot_confusion,
    plot_per_part_accuracy,
    pooled_accuracy,
    pooled_iou,
    save_frame_counts,
)
from keras_hpe.evaluation.statistics import Bootstrap

# One 4 x 4 frame: 3 not-hand pixels, 6 palm (1), 4 thumb_distal (4), 3 index_distal (8).
GT = np.array([[[0, 0, 1, 1], [0, 1, 1, 1], [1, 4, 4, 8], [4, 4, 8, 8]]], dtype=np.uint8)
# Not-hand pixels are predicted wrongly on purpose: they must not count in the accuracies.
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


def test_hand_iou_over_the_foreground():
    # Without depth every pixel counts: predicted hand 15 pixels (all but the one predicted 0), true hand 13,
    # both 12: IoU 12 / 16.
    assert evaluate_segmentation(PRED, GT).hand_iou == pytest.approx(12 / 16)
    # Pixel (0, 0) is empty background (depth 0), (0, 1) and (1, 0) are arm: the hand labels predicted on
    # the background no longer count, those on the arm still do: 12 / 15.
    depth_mm = np.full(GT.shape, 500.0)
    depth_mm[0, 0, 0] = 0.0
    assert evaluate_segmentation(PRED, GT, depth_mm).hand_iou == pytest.approx(12 / 15)
    # A 20-class network labels every foreground pixel a part: the IoU is hand / foreground pixels.
    every_part = np.where(depth_mm > 0, np.maximum(GT, 1), 0).astype(np.uint8)
    assert evaluate_segmentation(every_part, GT, depth_mm).hand_iou == pytest.approx(13 / 15)
    assert evaluate_segmentation(GT, GT, depth_mm).hand_iou == 1.0
    assert evaluate_segmentation(PRED, GT).to_dict()["hand_iou"] == pytest.approx(0.75)
    with pytest.raises(UserError, match="depth_mm: expected the label maps' shape"):
        evaluate_segmentation(PRED, GT, depth_mm[:, :2])


def test_frame_counts_add_up_to_the_pooled_scores(tmp_path):
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 21, (5, 16, 16))
    gt[2] = np.where(gt[2] > 10, 0, gt[2])  # a frame without the parts 11-20
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 21, gt.shape))
    scores = evaluate_segmentation(pred, gt)
    counts = scores.frame_counts
    assert counts.frames == 5 and counts.correct.shape == (5, NUM_PARTS)
    for frame in range(5):
        true_part = gt[frame][gt[frame] > 0]
        right = true_part[pred[frame][gt[frame] > 0] == true_part]
        assert counts.pixels[frame].tolist() == np.bincount(true_part, minlength=21)[1:].tolist()
        assert counts.correct[frame].tolist() == np.bincount(right, minlength=21)[1:].tolist()
    assert counts.pixels[2, 10:].sum() == 0
    pooled = pooled_accuracy(counts.correct.sum(0), counts.pixels.sum(0))
    assert pooled["per_pixel"] == pytest.approx(scores.per_pixel_accuracy, abs=1e-15)
    assert pooled["per_class"] == pytest.approx(scores.mean_class_accuracy, abs=1e-15)
    path = save_frame_counts(tmp_path / "counts.npz", {"table2/none": counts, "synth": counts})
    back = load_frame_counts(path)
    assert list(back) == ["table2/none", "synth"]
    assert np.array_equal(back["synth"].correct, counts.correct) and np.array_equal(back["synth"].pixels, counts.pixels)
    with pytest.raises(UserError, match="between 0 and the part's pixels"):
        FrameCounts(counts.pixels + 1, counts.pixels)


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


def test_hand_iou_per_frame_counts_pool_and_resample(tmp_path):
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 21, (6, 12, 12))
    depth_mm = np.where(rng.random(gt.shape) < 0.8, 500.0, 0.0)
    gt = np.where(depth_mm > 0, gt, 0)
    pred = np.where(depth_mm > 0, np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 21, gt.shape)), 0)
    scores = evaluate_segmentation(pred, gt, depth_mm)
    counts = scores.frame_counts
    for frame in range(6):
        pred_hand, true_hand = pred[frame] > 0, gt[frame] > 0
        assert counts.intersection[frame] == np.count_nonzero(pred_hand & true_hand)
        assert counts.union[frame] == np.count_nonzero(pred_hand | true_hand)
    assert pooled_iou(counts.intersection.sum(), counts.union.sum()) == pytest.approx(scores.hand_iou, abs=1e-15)
    interval = Bootstrap(6, resamples=200).hand_iou(counts)
    assert interval.estimate == pytest.approx(100 * scores.hand_iou)
    assert interval.low < interval.estimate < interval.high
    back = load_frame_counts(save_frame_counts(tmp_path / "counts.npz", {"s": counts}))["s"]
    assert np.array_equal(back.intersection, counts.intersection) and np.array_equal(back.union, counts.union)
    # Counts saved before the IoU have neither term: they still load, and the bootstrap names what is missing.
    old = FrameCounts(counts.correct, counts.pixels)
    assert load_frame_counts(save_frame_counts(tmp_path / "old.npz", {"s": old}))["s"].union is None
    with pytest.raises(UserError, match="no hand intersection and union"):
        Bootstrap(6, resamples=10).hand_iou(old)
    with pytest.raises(UserError, match="between 0 and the union"):
        FrameCounts(counts.correct, counts.pixels, counts.union + 1, counts.union)
    with pytest.raises(UserError, match="both the hand intersection and union"):
        FrameCounts(counts.correct, counts.pixels, counts.intersection)
