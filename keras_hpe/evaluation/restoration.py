"""The measurements behind the paper's Tables 2 and 3, on the real evaluation split.

Table 2 scores the restored maps themselves (restoration uses no joints):
the stage-1 model's raw predictions ("none") and their restorations by each
method, against the split's part labels. Table 3 scores the synthetic-only
model and the semi/weakly-supervised (stage 2) model on the same split. Only
evaluation reads the real domain's labels.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import keras

from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import SegmentationScores, evaluate_segmentation
from keras_hpe.restoration.index import PatchIndex
from keras_hpe.restoration.restore import METHODS, RestorationPool, restore_frames

TABLE2_METHODS = ("none", "center", "integrate", "crf-potts", "crf-overlap")


def _model(model: keras.Model | str | Path) -> keras.Model:
    from keras_hpe.training.seg import load_segmentation_model

    return model if isinstance(model, keras.Model) else load_segmentation_model(model)


def table2_scores(
    seg_model: keras.Model | str | Path,
    index: PatchIndex | str | Path,
    eval_dir: str | Path,
    methods: Sequence[str] = TABLE2_METHODS,
    *,
    patch: int = 7,
    window: int = 5,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, SegmentationScores]:
    """{method: accuracy of the restored maps} on the labelled real split `eval_dir` ("none" = raw predictions).

    The keys are `restore.METHODS` names; `reports.tables.table2` accepts them as they are.
    """
    from keras_hpe.training.seg import evaluate_model

    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise UserError(f"unknown restoration method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if not isinstance(index, PatchIndex):
        index = PatchIndex.load(index, patch)
    raw_scores, arrays = evaluate_model(_model(seg_model), eval_dir)
    scores = {}
    with contextlib.ExitStack() as workers_open:
        pool = workers_open.enter_context(RestorationPool(index, workers)) if workers > 1 else None  # one for all
        for method in methods:
            if method == "none":
                scores[method] = raw_scores
                continue
            restored = restore_frames(arrays["pred_labels"], index, method=method, window=window, workers=workers,
                                      progress=progress, pool=pool)
            scores[method] = evaluate_segmentation(restored, arrays["labels"], arrays["depth_mm"])
    return scores


def table3_scores(
    synth_model: keras.Model | str | Path,
    weak_model: keras.Model | str | Path,
    eval_dir: str | Path,
) -> dict[str, SegmentationScores]:
    """{"synthetic_only": stage-1 model's accuracy, "semi_weak": stage-2 model's} on the labelled real split."""
    from keras_hpe.training.seg import evaluate_model

    return {
        "synthetic_only": evaluate_model(_model(synth_model), eval_dir)[0],
        "semi_weak": evaluate_model(_model(weak_model), eval_dir)[0],
    }
