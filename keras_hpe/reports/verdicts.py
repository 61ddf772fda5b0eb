"""The report's verdicts and tables: a claim judged on a 95 % interval, in words and Markdown.

A verdict meets the paper's claim only when the paired bootstrap interval of
the difference (`evaluation.statistics`) lies on the paper's side of 0,
contradicts it when it lies on the other side, and is inconclusive when it
includes 0; a project target stricter than the paper's sign is met only when
the whole interval clears it. `Table` holds one paper table's numbers (the
CSV), its Markdown and its verdicts. Tables 2-3 and stage 1 are in
`reports.tables`, Table 4 in `reports.table4`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from keras_hpe.outputs import atomic_path
from keras_hpe.errors import UserError
from keras_hpe.evaluation.segmentation import FrameCounts
from keras_hpe.evaluation.statistics import Bootstrap, Interval

NOT_RUN = "not run"
MEETS = "Meets the paper's claim"
CONTRADICTS = "Contradicts the paper's claim"
INCONCLUSIVE = "Inconclusive"
NOT_CHECKED = "Not checked"


# Whether a project target stricter than the paper's sign is reached, judged on the whole interval too.
TARGET_MET, TARGET_NOT_MET, TARGET_INCONCLUSIVE = "met", "not met", "inconclusive"
NO_FRAMES = "no interval: the per-frame results are missing"


# Numbers and the per-frame results they are said to come from must agree to this (%, mm).
AGREEMENT = 1e-6


@dataclass
class Verdict:
    """Whether one of the paper's claims holds for our numbers, judged on a 95 % interval.

    key: the comparison's name in summary.json.
    status: MEETS, CONTRADICTS, INCONCLUSIVE, or NOT_CHECKED (a stage it needs
        did not run, or its per-frame results are missing).
    measure: what `interval` bounds (the figure the status is decided on);
        `others` holds further intervals the text quotes.
    target, target_status: a project target stricter than the paper's sign and
        whether the whole interval clears it (TARGET_MET, TARGET_NOT_MET, TARGET_INCONCLUSIVE).
    """

    key: str
    text: str
    status: str
    measure: str = ""
    interval: Interval | None = None
    others: dict[str, Interval] = field(default_factory=dict)
    target: float | None = None
    target_status: str | None = None

    def to_markdown(self) -> str:
        return f"- **{self.status}:** {self.text}"

    def to_dict(self) -> dict:
        """The status, the text and the intervals, JSON-ready (None where not checked)."""
        interval = self.interval.to_dict() if self.interval is not None else {
            name: None for name in ("estimate", "low", "high", "resamples", "seed", "frames", "confidence")}
        values = {"status": self.status, "text": self.text, "measure": self.measure, **interval,
                  "others": {name: other.to_dict() for name, other in self.others.items()}}
        if self.target is not None:
            values.update(target=self.target, target_status=self.target_status)
        return values


@dataclass
class Table:
    """One paper table: numbers per row (NaN where not run), its Markdown body and verdicts.

    frame: indexed by row key, numeric columns plus `method` and `status`
        ("run" / "not run"); this is what the CSV holds.
    summary: {row key: {field: number or None}}, for summary.json.
    intervals: {row key: {column: Interval}}, the differences' 95 % intervals.
    """

    name: str
    title: str
    frame: pd.DataFrame
    body: str
    verdicts: list[Verdict]
    summary: dict[str, dict[str, float | None]]
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        """Whether any row ran (a table with none is not run: the report says why instead of showing it)."""
        return bool((self.frame["status"] != NOT_RUN).any())

    def to_markdown(self, heading: str = "###") -> str:
        """The title, the table, then the verdicts and notes in plain words."""
        parts = [f"{heading} {self.title}", self.body, "\n".join(v.to_markdown() for v in self.verdicts)]
        parts += self.notes
        return "\n\n".join(parts) + "\n"

    def intervals_dict(self) -> dict[str, dict[str, dict]]:
        """`intervals` as JSON-ready values, for summary.json."""
        return {row: {column: interval.to_dict() for column, interval in columns.items()}
                for row, columns in self.intervals.items()}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write `frame` as CSV (index column `key`), atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self.frame.to_csv(tmp, index_label="key")
        return path


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; `align` has one of 'l', 'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("markdown_table: every row and the alignment need one entry per column")
    rule = ["---:" if a == "r" else ":---" for a in align]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def paired_bootstrap(per_frame: Iterable[FrameCounts | np.ndarray], table_name: str) -> Bootstrap | None:
    """One bootstrap for the rows' per-frame results (None without any): a paired comparison needs the same frames."""
    frames = {value.frames if isinstance(value, FrameCounts) else len(value) for value in per_frame}
    if len(frames) > 1:
        raise UserError(f"{table_name}: the rows' per-frame results have different frame counts "
                        f"({', '.join(map(str, sorted(frames)))}); paired intervals need the same test frames")
    return Bootstrap(frames.pop()) if frames else None


def claim_status(interval: Interval, paper_sign: int, threshold: float = 0.0) -> str:
    """MEETS if the whole interval is on the paper's side (`paper_sign`) of `threshold`, CONTRADICTS if on the other."""
    side = interval.side(threshold)
    return MEETS if side == paper_sign else CONTRADICTS if side == -paper_sign else INCONCLUSIVE


def judge_target(interval: Interval, target: float, good_sign: int, description: str) -> tuple[str, str]:
    """(status, sentence) of a project target that the whole interval must clear on the `good_sign` side."""
    side = interval.side(target)
    if side == good_sign:
        return TARGET_MET, f"{description} is met: the whole interval clears it"
    if side == -good_sign:
        return TARGET_NOT_MET, f"{description} is not met: the whole interval falls short of it"
    return TARGET_INCONCLUSIVE, f"whether {description} is met is inconclusive: the interval includes it"


def ci_text(interval: Interval, pattern: str, unit: str = "") -> str:
    return f"95 % CI {pattern.format(interval.low)} to {pattern.format(interval.high)}{unit}"


def with_interval(value: float, low: float, high: float, pattern: str, missing: str = "n/a") -> str:
    """A table cell: the difference, and its interval in square brackets when there is one (NaN: none)."""
    if math.isnan(value):
        return missing
    if math.isnan(low):
        return pattern.format(value)
    return f"{pattern.format(value)} [{pattern.format(low)}, {pattern.format(high)}]"


def plain_numbers(result: object, fields: tuple[str, ...], name: str) -> dict[str, float]:
    if not isinstance(result, Mapping):
        raise UserError(f"{name}: expected scores or a dict with {', '.join(fields)}, got {type(result).__name__}")
    missing = [key for key in fields if key not in result]
    if missing:
        raise UserError(f"{name}: missing {', '.join(missing)} (expected keys {', '.join(fields)})")
    numbers = {}
    for key in fields:
        try:
            numbers[key] = float(result[key])
        except (TypeError, ValueError):
            raise UserError(f"{name}: {key} must be a number, got {result[key]!r}") from None
        if not math.isfinite(numbers[key]):
            raise UserError(f"{name}: {key} must be finite, got {numbers[key]}")
    return numbers


def given_rows(values: Mapping[str, object] | None, methods: Mapping[str, str], table_name: str) -> dict[str, object]:
    """Row key -> value for the rows given (not None); restoration's "crf-potts" spelling is accepted."""
    rows = {}
    for key, value in (values or {}).items():
        row = str(key).replace("-", "_")
        if row not in methods:
            raise UserError(f"{table_name}: unknown row {key!r}; known: {', '.join(methods)}")
        if value is not None:
            rows[row] = value
    return rows


def collect_numbers(
    results: Mapping[str, object] | None,
    methods: Mapping[str, str],
    convert: Callable[[object, str], dict[str, float]],
    table_name: str,
) -> dict[str, dict[str, float]]:
    """Row key -> numbers for the rows that ran."""
    return {row: convert(result, f"{table_name}, row {row!r}")
            for row, result in given_rows(results, methods, table_name).items()}


def not_run_text(keys: list[str]) -> str:
    return " and ".join(f"`{key}`" for key in keys) + " not run"


def lower_or_higher(change_percent: float) -> str:
    return f"{abs(change_percent):.1f}% {'lower' if change_percent < 0 else 'higher'}"


def relative_percent(value: float, reference: float) -> float:
    return 100.0 * (value - reference) / reference if reference > 0 else math.nan


def summary_numbers(
    numbers: dict[str, dict[str, float]], methods: Mapping[str, str], fields: tuple[str, ...]
) -> dict[str, dict[str, float | None]]:
    def value(key: str, name: str) -> float | None:
        number = numbers.get(key, {}).get(name)
        return None if number is None or math.isnan(number) else number

    return {key: {name: value(key, name) for name in fields} for key in methods}


def format_number(value: float, pattern: str, missing: str = "n/a") -> str:
    return missing if math.isnan(value) else pattern.format(value)
