"""Paired bootstrap over frames: intervals that must or must not hold 0, the pooled statistic, determinism."""

import numpy as np
import pytest

from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import FrameCounts, evaluate_segmentation
from keras_hpe.evaluation.statistics import Bootstrap, Interval

FRAMES = 120


def _counts(correct):
    """Counts of 10 pixels per part and frame, `correct` of them right."""
    correct = np.asarray(correct)
    return FrameCounts(correct, np.full_like(correct, 10))


@pytest.fixture(scope="module")
def base():
    return np.random.default_rng(0).integers(2, 8, (FRAMES, 20))


def test_a_method_better_on_every_frame_has_an_interval_above_zero(base):
    better = Bootstrap(FRAMES).accuracy_difference(_counts(base + 1), _counts(base))
    # One more pixel of 10 in every part of every frame: +10 points, whatever frames are drawn.
    for interval in better.values():
        assert interval.estimate == pytest.approx(10.0)
        assert interval.low == pytest.approx(10.0) and interval.high == pytest.approx(10.0)
        assert interval.side() == 1
    worse = Bootstrap(FRAMES).accuracy_difference(_counts(base), _counts(base + 1))
    assert worse["per_pixel"].side() == -1


def test_a_sign_flip_on_half_of_the_frames_gives_an_interval_around_zero(base):
    flip = np.where(np.arange(FRAMES)[:, None] % 2 == 0, 1, -1)
    interval = Bootstrap(FRAMES).accuracy_difference(_counts(base + flip), _counts(base))["per_pixel"]
    assert interval.estimate == pytest.approx(0.0, abs=1e-12)
    assert interval.low < 0 < interval.high and interval.side() == 0
    # The same on per-frame errors.
    rng = np.random.default_rng(1)
    error_mm = rng.uniform(10, 40, FRAMES)
    shifted = error_mm + 2.0 * flip[:, 0]
    difference = Bootstrap(FRAMES).error_difference(shifted, error_mm)
    assert difference.estimate == pytest.approx(0.0, abs=1e-12) and difference.side() == 0
    assert Bootstrap(FRAMES).error_change_percent(shifted, error_mm).side() == 0


def test_the_interval_is_for_the_pooled_statistic():
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 21, (40, 12, 12))
    gt[:20, 6:] = 0  # frames of two sizes: pooled accuracy and the mean of per-frame accuracies differ
    pred = np.where(rng.random(gt.shape) < np.linspace(0.2, 0.9, 40)[:, None, None], gt, 1)
    scores = evaluate_segmentation(pred, gt)
    frame_accuracy = scores.frame_counts.correct.sum(1) / scores.frame_counts.pixels.sum(1)
    assert abs(frame_accuracy.mean() - scores.per_pixel_accuracy) > 1e-3
    intervals = Bootstrap(40).accuracy(scores.frame_counts)
    assert intervals["per_pixel"].estimate == pytest.approx(100 * scores.per_pixel_accuracy, abs=1e-12)
    assert intervals["per_class"].estimate == pytest.approx(100 * scores.mean_class_accuracy, abs=1e-12)
    for interval in intervals.values():
        assert interval.low < interval.estimate < interval.high


def test_a_mean_error_interval_has_the_width_of_the_normal_theory():
    rng = np.random.default_rng(3)
    error_mm = rng.normal(30.0, 10.0, 400)
    interval = Bootstrap(400).error_difference(error_mm, np.zeros(400))
    half_width = 1.96 * error_mm.std() / np.sqrt(400)
    assert interval.estimate == pytest.approx(error_mm.mean())
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.15)


def test_the_relative_change_is_a_ratio_of_means():
    rng = np.random.default_rng(4)
    direct = rng.uniform(20, 40, FRAMES)
    full = 0.8 * direct * rng.uniform(0.9, 1.1, FRAMES)
    change = Bootstrap(FRAMES).error_change_percent(full, direct)
    assert change.estimate == pytest.approx(100 * (full.mean() / direct.mean() - 1))
    assert change.high < -15.7 and change.side(-15.7) == -1


def test_the_same_seed_draws_the_same_resamples(base):
    flip = np.where(np.arange(FRAMES)[:, None] % 3 == 0, 2, -1)
    a, b = _counts(base + flip), _counts(base)
    first = Bootstrap(FRAMES, seed=7).accuracy_difference(a, b)
    assert Bootstrap(FRAMES, seed=7).accuracy_difference(a, b) == first
    other = Bootstrap(FRAMES, seed=8).accuracy_difference(a, b)["per_pixel"]
    assert (other.low, other.high) != (first["per_pixel"].low, first["per_pixel"].high)
    assert other.estimate == first["per_pixel"].estimate
    interval = Bootstrap(FRAMES, resamples=1000, seed=7).accuracy(a)["per_pixel"]
    assert (interval.resamples, interval.seed, interval.frames, interval.confidence) == (1000, 7, FRAMES, 0.95)
    assert Interval(**interval.to_dict()) == interval


def test_inputs_of_other_frames_are_refused(base):
    bootstrap = Bootstrap(FRAMES)
    with pytest.raises(UserError, match="counts of 60 frames, expected 120"):
        bootstrap.accuracy(_counts(base[:60]))
    with pytest.raises(UserError, match=r"one value per frame, shape \(120,\)"):
        bootstrap.error_difference(np.ones((FRAMES, 14)), np.ones((FRAMES, 14)))
    with pytest.raises(UserError, match=">= 1 frame"):
        Bootstrap(0)
