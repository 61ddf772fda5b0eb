"""The paper's Table 4: the regression variants' joint errors beside the paper's, with intervals and verdicts.

`table4` takes a dict from row key to a `JointErrors` (or plain numbers
`{"mean_3d_mm": .., "mean_2d_px": ..}`; `None` or a missing key is a stage
that did not run) and the rows' per-frame joint errors in mm; every row's
change against direct regression (a) gets a paired bootstrap 95 % interval
(`reports.verdicts`). Published predictions of other methods (`--compare`)
are rows without a verdict; the oracle (e) is a diagnostic bound.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import JointErrors
from keras_hpe.evaluation.statistics import Bootstrap, Interval
from keras_hpe.reports.verdicts import (
    AGREEMENT,
    NOT_CHECKED,
    NOT_RUN,
    NO_FRAMES,
    Table,
    Verdict,
    ci_text,
    claim_status,
    collect_numbers,
    format_number,
    given_rows,
    judge_target,
    lower_or_higher,
    markdown_table,
    not_run_text,
    paired_bootstrap,
    plain_numbers,
    relative_percent,
    summary_numbers,
    with_interval,
)

# Table 4: the paper's per-method errors were lost in our copy of its text; only
# the full method's relative change of mean 3D error against direct regression is kept.
PAPER_FULL_VS_DIRECT_3D_PERCENT = -15.7
TABLE4_METHODS = {
    "direct": "(a) direct regression",
    "cascade": "(b) cascade direct regression (two steps)",
    "semi": "(c) semi-supervised network (segmentation trained on synthetic only)",
    "full": "(d) full method (semi/weakly supervised segmentation)",
    "oracle": "(e) oracle: the true part segmentation (a diagnostic, not part of the method)",
}


# Ours (issue 11): a regression that cannot gain this much from a perfect segmentation cannot
# reproduce the paper's -15.7% with a learned one.
ORACLE_TARGET_PERCENT = -25.0


# Table 4's rows of other methods' published predictions (`reproduce --compare`): scored here, not trained here.
PUBLISHED = "published"
PUBLISHED_MARK = "published predictions, not trained here; no verdict"
PUBLISHED_NOTE = (
    "Rows marked published are other methods' published predictions (`reproduce --compare`), scored on the same "
    "test frames by `keras-hpe evaluate-joints`' protocol (the community's NYU code and camera constants, which "
    "reproduce published numbers); they were not trained here, so no claim is checked on them."
)


JOINT_FIELDS = ("mean_3d_mm", "mean_2d_px")


def joint_numbers(result: JointErrors | Mapping[str, float], name: str) -> dict[str, float]:
    """Mean 3D error (mm) and mean 2D error (px) from `JointErrors` or plain numbers."""
    if isinstance(result, JointErrors):
        return {"mean_3d_mm": result.mean_3d_mm, "mean_2d_px": result.mean_2d_px}
    numbers = plain_numbers(result, JOINT_FIELDS, name)
    for key, value in numbers.items():
        if value < 0.0:
            raise UserError(f"{name}: {key} must be an error >= 0, got {value}")
    return numbers


def table4(
    results: Mapping[str, object] | None,
    errors_mm: Mapping[str, np.ndarray] | None = None,
    published: Mapping[str, JointErrors] | None = None,
) -> Table:
    """Table 4: joint errors of the regression variants (a)-(d), relative to direct regression.

    errors_mm: row key -> (N, 14) per-frame joint errors (`JointErrors.errors_mm`), for the intervals.
    published: method name -> the errors of its published predictions on the same test frames: rows
        "published/<name>" on top, as in the paper, marked as not trained here and given no verdict.
    """
    numbers = collect_numbers(results, TABLE4_METHODS, joint_numbers, "table 4")
    frame_errors = _frame_errors(results, errors_mm, numbers)
    methods = {f"{PUBLISHED}/{name}": f"{name} ({PUBLISHED_MARK})" for name in published or {}}
    for name, errors in (published or {}).items():
        numbers[f"{PUBLISHED}/{name}"] = joint_numbers(errors, f"table 4, published {name!r}")
        frame_errors[f"{PUBLISHED}/{name}"] = errors.errors_mm.mean(axis=1)
    methods.update(TABLE4_METHODS)
    bootstrap = paired_bootstrap(frame_errors.values(), "table 4")
    intervals = {key: {"change_3d_vs_direct_percent": bootstrap.error_change_percent(values, frame_errors["direct"]),
                       "difference_3d_vs_direct_mm": bootstrap.error_difference(values, frame_errors["direct"])}
                 for key, values in frame_errors.items() if key != "direct" and "direct" in frame_errors}
    rows = []
    for key, method in methods.items():
        interval = intervals.get(key, {}).get("change_3d_vs_direct_percent")
        status = PUBLISHED if key not in TABLE4_METHODS else "run" if key in numbers else NOT_RUN
        row = {"method": method, "status": status,
               "mean_2d_px": math.nan, "mean_3d_mm": math.nan, "change_3d_vs_direct_percent": math.nan,
               "change_3d_vs_direct_percent_low": math.nan if interval is None else interval.low,
               "change_3d_vs_direct_percent_high": math.nan if interval is None else interval.high}
        if key in numbers:
            row.update(numbers[key])
            if "direct" in numbers:
                row["change_3d_vs_direct_percent"] = relative_percent(numbers[key]["mean_3d_mm"],
                                                                       numbers["direct"]["mean_3d_mm"])
        row["paper_change_3d_vs_direct_percent"] = PAPER_FULL_VS_DIRECT_3D_PERCENT if key == "full" else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(list(methods), name="key"))
    markdown_rows = []
    for key, row in frame.iterrows():
        if row["status"] == NOT_RUN:
            ours = [NOT_RUN] * 3
        else:
            change = "reference" if key == "direct" else with_interval(
                row["change_3d_vs_direct_percent"], row["change_3d_vs_direct_percent_low"],
                row["change_3d_vs_direct_percent_high"], "{:+.1f}")
            ours = [f"{row['mean_2d_px']:.2f}", f"{row['mean_3d_mm']:.2f}", change]
        paper = "n/a" if row["status"] == PUBLISHED else format_number(
            row["paper_change_3d_vs_direct_percent"], "{:+.1f}", "lost")
        markdown_rows.append([row["method"], *ours, "reference" if key == "direct" else paper])
    body = markdown_table(
        ["method", "mean 2D error, px", "mean 3D error, mm", "3D error vs (a), % [95 % CI]",
         "paper: 3D error vs (a), %"],
        markdown_rows,
    )
    return Table(
        name="table4",
        title="Table 4: joint position error of the regression variants (test split)",
        frame=frame,
        body=body,
        verdicts=_table4_verdicts(numbers, frame_errors, bootstrap),
        summary=summary_numbers(numbers, methods, JOINT_FIELDS),
        intervals=intervals,
        notes=["The paper's per-method errors were lost in our copy of its text; the one figure kept is "
               f"the full method's {PAPER_FULL_VS_DIRECT_3D_PERCENT:+.1f}% mean 3D error against direct regression. "
               "The 95 % intervals (square brackets) are for the relative change of the mean 3D error.",
               *_oracle_note(numbers, intervals)]
        + [PUBLISHED_NOTE] * bool(published),
    )


def _oracle_note(numbers: dict[str, dict[str, float]], intervals: dict[str, dict[str, Interval]]) -> list[str]:
    """What the oracle row (e) says: how much a perfect segmentation could lower the error of (a)."""
    if "oracle" not in numbers or "direct" not in numbers:
        return []
    text = ("(e) is a diagnostic, not part of the method: the regression network of (c) and (d), trained and "
            "tested with the simulator's true part labels of the real frames instead of a segmentation network's "
            "(the method never sees those labels). It bounds what segmentation can add to the regression here")
    interval = intervals.get("oracle", {}).get("change_3d_vs_direct_percent")
    if interval is None:
        return [f"{text}; {NO_FRAMES}."]
    change = relative_percent(numbers["oracle"]["mean_3d_mm"], numbers["direct"]["mean_3d_mm"])
    _, target_text = judge_target(interval, ORACLE_TARGET_PERCENT, -1,
                             f"the project's target of {ORACLE_TARGET_PERCENT:+.0f}%")
    return [f"{text}: {lower_or_higher(change)} mean 3D error than (a) ({ci_text(interval, '{:+.1f}', '%')}); "
            f"{target_text}."]


def _frame_errors(
    results: Mapping[str, object] | None, errors_mm: Mapping[str, np.ndarray] | None, numbers: dict
) -> dict[str, np.ndarray]:
    """Row key -> per-frame mean joint error (N,) mm, checked against the row's mean 3D error."""
    given = {key: result.errors_mm for key, result in given_rows(results, TABLE4_METHODS, "table 4").items()
             if isinstance(result, JointErrors)}
    given.update(given_rows(errors_mm, TABLE4_METHODS, "table 4 errors"))
    frame_errors = {}
    for key, values in given.items():
        values = np.asarray(values, dtype=np.float64)
        if key not in numbers:
            raise UserError(f"table 4: per-frame errors for row {key!r}, which has no result")
        if values.ndim != 2 or values.shape[0] == 0:
            raise UserError(f"table 4, row {key!r}: expected per-frame joint errors (N, joints), got {values.shape}")
        if not abs(values.mean() - numbers[key]["mean_3d_mm"]) <= AGREEMENT:
            raise UserError(f"table 4, row {key!r}: the per-frame errors average {values.mean():.4f} mm, "
                            f"the result says {numbers[key]['mean_3d_mm']:.4f} mm")
        frame_errors[key] = values.mean(axis=1)
    return frame_errors


def _table4_verdicts(numbers: dict[str, dict[str, float]], frame_errors: dict[str, np.ndarray],
                     bootstrap: Bootstrap | None) -> list[Verdict]:
    """Paper's claims: the full method (d) has lower mean 3D error than (a), by 15.7%, and than (c)."""
    target = PAPER_FULL_VS_DIRECT_3D_PERCENT
    verdicts = []
    for other, label, paper, key_target in (
        ("direct", "direct regression (a)", f"paper {target:+.1f}%", target),
        ("semi", "the semi-supervised network (c)", "paper: lower, its number was lost", None),
    ):
        key = f"table4_full_vs_{other}"
        missing = [row for row in (other, "full") if row not in numbers]
        if missing:
            verdicts.append(Verdict(key, f"the full method (d) cannot be compared with {label}: "
                                    f"{not_run_text(missing)} ({paper}).", NOT_CHECKED, target=key_target))
            continue
        full_mm, other_mm = numbers["full"]["mean_3d_mm"], numbers[other]["mean_3d_mm"]
        change = relative_percent(full_mm, other_mm)
        text = (f"the full method (d) has {lower_or_higher(change)} mean 3D error than {label}: "
                f"{full_mm:.2f} vs. {other_mm:.2f} mm, a change of {change:+.1f}%")
        if "full" not in frame_errors or other not in frame_errors:
            verdicts.append(Verdict(key, f"{text} ({paper}); {NO_FRAMES}.", NOT_CHECKED, target=key_target))
            continue
        relative = bootstrap.error_change_percent(frame_errors["full"], frame_errors[other])
        difference = bootstrap.error_difference(frame_errors["full"], frame_errors[other])
        text += (f" ({ci_text(relative, '{:+.1f}', '%')}; {paper}), {full_mm - other_mm:+.2f} mm "
                 f"({ci_text(difference, '{:+.2f}', ' mm')})")
        target_status = None
        if key_target is not None:
            target_status, target_text = judge_target(relative, key_target, -1,
                                                 f"the paper's {key_target:+.1f}% (the project's target)")
            text += f"; {target_text}"
        verdicts.append(Verdict(key, text + ".", claim_status(relative, -1),
                                measure="relative change of the mean 3D error, %", interval=relative,
                                others={"difference_mm": difference}, target=key_target, target_status=target_status))
    return verdicts
