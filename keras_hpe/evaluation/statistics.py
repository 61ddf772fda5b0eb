"""Paired bootstrap over test frames: the 95 % intervals of the report's comparisons.

Two methods of a comparison are scored on the same test frames, so their
difference is resampled frame by frame: each resample draws the test frames
with replacement, and both methods' statistics are recomputed on the same
drawn frames (paired). Frames, not pixels, are the units: the pixels of one
frame are far from independent. Segmentation accuracy is pooled over pixels
(and per part), so a resample sums the drawn frames' per-part counts and
recomputes the pooled figure (`segmentation.pooled_accuracy`): the interval
is for exactly the number the table shows; the hand IoU likewise sums the
drawn frames' intersections and unions (`segmentation.pooled_iou`).
Intervals are percentiles of the
resampled statistic, with a fixed seed.

Example:
    bootstrap = Bootstrap(frames=len(errors_direct_mm))
    change = bootstrap.error_change_percent(errors_full_mm, errors_direct_mm)
    change.low, change.high  # the 95 % interval of the full method's change in mean error, %
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import ACCURACY_MEASURES, FrameCounts, pooled_accuracy, pooled_iou

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
# Resamples drawn at once: bounds the frame indices held in memory (paper scale: 8,252 frames).
_BLOCK = 256


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap percentile interval.

    estimate: the statistic on the test frames themselves; low, high: the
    (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the resampled
    statistic; resamples, seed, frames: how it was drawn.
    """

    estimate: float
    low: float
    high: float
    resamples: int
    seed: int
    frames: int
    confidence: float = CONFIDENCE

    def side(self, value: float = 0.0) -> int:
        """+1 if the whole interval is above `value`, -1 if below, 0 if it includes it."""
        return 1 if self.low > value else -1 if self.high < value else 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class Bootstrap:
    """Resamples of `frames` test frames, drawn with replacement and shared by every statistic computed here.

    Args:
        frames: the number of test frames every per-frame input has.
        resamples: bootstrap resamples (at least 1,000 for a 95 % interval).
        seed: seed of the draws; the same (frames, resamples, seed) draw the same frames.
    """

    def __init__(self, frames: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
        if frames < 1 or resamples < 1:
            raise UserError(f"bootstrap: need >= 1 frame and >= 1 resample, got {frames} and {resamples}")
        self.frames, self.resamples, self.seed = int(frames), int(resamples), int(seed)
        rng = np.random.default_rng(self.seed)
        # weights[r, i]: how often frame i is drawn in resample r, so a resampled sum is one matrix product.
        self._weights = np.empty((self.resamples, self.frames))
        for start in range(0, self.resamples, _BLOCK):
            drawn = rng.integers(0, self.frames, size=(min(_BLOCK, self.resamples - start), self.frames))
            offsets = np.arange(len(drawn))[:, None] * self.frames
            self._weights[start:start + len(drawn)] = np.bincount(
                (drawn + offsets).ravel(), minlength=drawn.size).reshape(drawn.shape)

    def accuracy(self, counts: FrameCounts) -> dict[str, Interval]:
        """Per-pixel and mean per-class accuracy (%) of one method, by `ACCURACY_MEASURES` name."""
        estimate, resampled = self._accuracies(counts)
        return {name: self._interval(estimate[name], resampled[name]) for name in ACCURACY_MEASURES}

    def accuracy_difference(self, counts: FrameCounts, reference: FrameCounts) -> dict[str, Interval]:
        """`counts`'s accuracy minus `reference`'s (percentage points), paired, by measure."""
        estimate, resampled = self._accuracies(counts)
        reference_estimate, reference_resampled = self._accuracies(reference)
        return {name: self._interval(estimate[name] - reference_estimate[name],
                                     resampled[name] - reference_resampled[name]) for name in ACCURACY_MEASURES}

    def hand_iou(self, counts: FrameCounts) -> Interval:
        """The hand / not-hand IoU (%) of one method; UserError for counts without the IoU's terms."""
        if counts.union is None:
            raise UserError("bootstrap: these frame counts hold no hand intersection and union (saved before the IoU)")
        self._check_frames(counts)
        sums = self._weights @ np.stack([counts.intersection, counts.union], axis=1).astype(np.float64)
        return self._interval(100.0 * float(pooled_iou(counts.intersection.sum(), counts.union.sum())),
                              100.0 * pooled_iou(sums[:, 0], sums[:, 1]))

    def error_difference(self, error_mm: np.ndarray, reference_mm: np.ndarray) -> Interval:
        """Mean of the per-frame errors `error_mm` (N,) minus the reference's (mm), paired."""
        error_mm, reference_mm = self._frame_values(error_mm), self._frame_values(reference_mm)
        return self._interval(error_mm.mean() - reference_mm.mean(), self._means(error_mm - reference_mm))

    def error_change_percent(self, error_mm: np.ndarray, reference_mm: np.ndarray) -> Interval:
        """Relative change of the mean per-frame error against the reference's, 100 (mean / reference mean - 1), %."""
        error_mm, reference_mm = self._frame_values(error_mm), self._frame_values(reference_mm)
        both = self._means(np.stack([error_mm, reference_mm], axis=1))
        return self._interval(100.0 * (error_mm.mean() / reference_mm.mean() - 1.0),
                              100.0 * (both[:, 0] / both[:, 1] - 1.0))

    def _accuracies(self, counts: FrameCounts) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        self._check_frames(counts)
        parts = counts.correct.shape[1]
        sums = self._weights @ np.concatenate([counts.correct, counts.pixels], axis=1).astype(np.float64)
        resampled = pooled_accuracy(sums[:, :parts], sums[:, parts:])
        estimate = pooled_accuracy(counts.correct.sum(axis=0), counts.pixels.sum(axis=0))
        return ({name: 100.0 * float(estimate[name]) for name in ACCURACY_MEASURES},
                {name: 100.0 * resampled[name] for name in ACCURACY_MEASURES})

    def _check_frames(self, counts: FrameCounts) -> None:
        if counts.frames != self.frames:
            raise UserError(f"bootstrap: per-frame counts of {counts.frames} frames, expected {self.frames}")

    def _frame_values(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.frames,):
            raise UserError(f"bootstrap: expected one value per frame, shape ({self.frames},), got {values.shape}")
        return values

    def _means(self, values: np.ndarray) -> np.ndarray:
        """Mean over each resample's frames of (N,) or (N, K) per-frame values."""
        return self._weights @ values / self.frames

    def _interval(self, estimate: float, resampled: np.ndarray) -> Interval:
        tail = 50.0 * (1.0 - CONFIDENCE)
        low, high = np.percentile(resampled, [tail, 100.0 - tail])
        return Interval(float(estimate), float(low), float(high), self.resamples, self.seed, self.frames)
