"""The reproduction report: README.md, the tables' CSVs and summary.json in one folder.

`write_report` takes results as plain objects (see `reports.tables` and `reports.table4`), the
wall time of each stage, the configuration and the data manifests, and the
figures already drawn; every file is written atomically.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

import keras_hpe
from keras_hpe.outputs import atomic_path, write_text
from keras_hpe.errors import UserError
from keras_hpe.evaluation.joints import JointErrors, plot_success_curves
from keras_hpe.evaluation.segmentation import FrameCounts
from keras_hpe.evaluation.statistics import CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED
from keras_hpe.reports.table4 import table4 as build_table4
from keras_hpe.reports.tables import stage1_verdict, table2 as build_table2, table3 as build_table3
from keras_hpe.reports.verdicts import Table, Verdict, markdown_table

TITLE = (
    "Reproduction of Neverova et al., \"Hand Pose Estimation through Semi-Supervised and "
    "Weakly-Supervised Learning\" (CVIU 2017)"
)
# The paper's figures, in its order: each has a section in the README, drawn or with the reason it is not.
FIGURE_TITLES = {
    "fig5": "Fig. 5: segmentation examples",
    "fig6": "Fig. 6: accuracy per hand part",
    "fig7": "Fig. 7: restoration failures",
    "fig8": "Fig. 8: success curves",
    "fig9": "Fig. 9: predicted skeletons",
}
FIGURE_CAPTIONS = {
    "fig5": "On the real evaluation split: depth, prediction after synthetic training only, restored (eq. 2), "
            "prediction after semi/weakly-supervised fine-tuning, ground truth; the percentage is the frame's "
            "per-pixel accuracy.",
    "fig6": "Accuracy per hand part, before and after semi/weakly-supervised training.",
    "fig7": "Real training frames whose restoration the barycenter quality gate rejected (drawn with the run's seed, "
            "predicted and restored again as the restore stage did): depth with the annotated joints, the stage-1 "
            "prediction, its restoration. A map's quality, in its corner, is the mean over the joints whose parts it "
            "shows of the distance from the barycenter of the joint's part(s) to the joint (mm); white lines join "
            "the barycenters that moved farthest away to their joints, and the text names them and the parts "
            "the restoration removed.",
    "fig8": "Fraction of test frames whose maximum joint error is within D.",
    "fig9": "Predicted skeletons of the full method on randomly drawn test frames.",
}
# Why a table or figure is missing when the caller does not say.
NOT_GIVEN = "the report was given no results for it"
CURVES_FIGURE = "fig8_success_curves.png"
UNCERTAINTY = (
    f"Every difference comes with its {100 * CONFIDENCE:.0f} % confidence interval: a paired bootstrap over the "
    f"test frames ({DEFAULT_RESAMPLES:,} resamples of the frames with replacement, the same frames for both methods, "
    f"seed {DEFAULT_SEED}, percentile interval), recomputing the statistic the tables show (accuracy pooled over "
    "the hand pixels of the drawn frames; mean joint error over the drawn frames). A claim is met only when the "
    "whole interval lies on the paper's side of zero (or of a target), contradicted when it lies on the other "
    "side, and inconclusive when it includes zero."
)


def machine_info() -> dict[str, object]:
    """The machine and software the report was made on (no TensorFlow import needed)."""
    return {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": _package_version("tensorflow", "tensorflow-cpu"),
        "keras": _package_version("keras"),
        "numpy": _package_version("numpy"),
        "keras_hpe": keras_hpe.__version__,
    }


def write_report(
    out_dir: str | os.PathLike,
    *,
    stage1: Mapping[str, float] | None = None,
    table2: Mapping[str, object] | None = None,
    table3: Mapping[str, object] | None = None,
    table4: Mapping[str, object] | None = None,
    stage1_counts: FrameCounts | None = None,
    table2_counts: Mapping[str, FrameCounts] | None = None,
    table3_counts: Mapping[str, FrameCounts] | None = None,
    table4_errors_mm: Mapping[str, np.ndarray] | None = None,
    table4_published: Mapping[str, JointErrors] | None = None,
    curves: Mapping[str, JointErrors] | None = None,
    seconds: Mapping[str, float],
    manifests: Mapping[str, Mapping],
    config: Mapping | object,
    machine: Mapping[str, object] | None = None,
    figures: Mapping[str, str | os.PathLike],
    not_run: Mapping[str, str] | None = None,
) -> Path:
    """Write README.md, table2/3/4.csv and summary.json (and the Fig. 8 curves) into `out_dir`.

    stage1: stage 1 on held-out synthetic frames, {"per_pixel", "per_class"} (%)
        and optionally "frames" (None: not measured).
    table2/3/4: row key -> result, as taken by `tables.table2`, `tables.table3` and
        `table4.table4` (None: stage not run).
    stage1_counts, table2_counts, table3_counts, table4_errors_mm: the per-frame
        results behind them (`FrameCounts`, (N, 14) joint errors in mm), for the
        verdicts' 95 % intervals; result objects carry their own. Without them a
        verdict is "Not checked".
    table4_published: method -> errors of its published predictions on the same
        test frames: Table 4's rows on top, marked, without a verdict.
    curves: method -> `JointErrors`; written as success_curves.csv (max-error
        curve, %) and drawn as Fig. 8 unless `figures` already has "fig8".
    seconds: wall time per stage. manifests: name -> data set manifest dict
        (a "domain" of "nyu" marks results on NYU). figures: key ("fig5",
        "fig6", "fig7", "fig8", "fig9" or any name) -> PNG, linked relative to `out_dir`.
    not_run: table ("table2", "table3", "table4"), a table's row ("table4/oracle")
        or paper figure key -> why it was not run; the README shows it under the
        table's or figure's heading (a row's below its table) and summary.json's
        "not_run" keeps it (`NOT_GIVEN` where no reason is given).
    Returns the README's path.
    """
    out_dir = Path(out_dir)
    seconds = _check_seconds(seconds)
    machine = dict(machine_info() if machine is None else machine)
    figures = {name: Path(path) for name, path in figures.items()}
    for name, path in figures.items():
        if not path.is_file():
            raise UserError(f"figure {name!r}: no such file {path}")
    tables = [build_table2(table2, table2_counts), build_table3(table3, table3_counts),
              build_table4(table4, table4_errors_mm, table4_published)]
    rows = {f"{table.name}/{row}": (table, row) for table in tables for row in table.frame.index}
    unknown = set(not_run or {}) - {table.name for table in tables} - set(rows) - set(FIGURE_TITLES)
    if unknown:
        raise UserError(f"not_run: {', '.join(sorted(unknown))} is not a table, row or figure of the paper")
    not_run_rows = [key for key in (not_run or {}) if key in rows]
    for key in not_run_rows:
        table, row = rows[key]
        table.notes.append(f"*{table.frame.loc[row, 'method']}: not run: {str(not_run[key]).rstrip('.')}.*")
    verdicts = [stage1_verdict(stage1, stage1_counts)] + [verdict for table in tables for verdict in table.verdicts]
    for table in tables:
        table.write_csv(out_dir / f"{table.name}.csv")
    if curves:
        _write_curves_csv(curves, out_dir / "success_curves.csv")
        if "fig8" not in figures:
            figures["fig8"] = plot_success_curves(curves, out_dir / CURVES_FIGURE, mode="max")
    missing = [table.name for table in tables if not table.ran] + [name for name in FIGURE_TITLES if name not in figures]
    missing += not_run_rows
    reasons = {name: str((not_run or {}).get(name, NOT_GIVEN)).rstrip(".") for name in missing}
    summary = {table.name: table.summary for table in tables}
    summary["not_run"] = reasons
    summary["seconds"] = seconds
    summary["verdicts"] = {verdict.key: verdict.to_dict() for verdict in verdicts}
    summary["intervals"] = {table.name: table.intervals_dict() for table in tables}
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    readme = out_dir / "README.md"
    write_text(readme, _readme(out_dir, verdicts, tables, figures, reasons, seconds, manifests, config, machine,
                               bool(curves)))
    return readme


def _readme(
    out_dir: Path,
    verdicts: list[Verdict],
    tables: list[Table],
    figures: dict[str, Path],
    not_run: dict[str, str],
    seconds: dict[str, float],
    manifests: Mapping[str, Mapping],
    config: Mapping | object,
    machine: Mapping[str, object],
    has_curves: bool,
) -> str:
    sections = [f"# {TITLE}", _data_statement(manifests), NOT_HAND_DEVIATION]
    sections.append("## The paper's claims, checked\n\n" + "\n".join(v.to_markdown() for v in verdicts)
                    + "\n\n" + UNCERTAINTY)
    csv_files = ", ".join(f"[{t.name}.csv]({t.name}.csv)" for t in tables)
    sections.append(f"## Tables\n\nNumbers are also in {csv_files} and [summary.json](summary.json).")
    sections += [_not_run_section(f"### {table.title}", not_run[table.name]) if table.name in not_run
                 else table.to_markdown().rstrip() for table in tables]
    sections.append("## Figures")
    # The paper's figures in its order, then any others as given.
    for name in [*FIGURE_TITLES, *(name for name in figures if name not in FIGURE_TITLES)]:
        heading = f"### {FIGURE_TITLES.get(name, name)}"
        if name in not_run:
            sections.append(_not_run_section(heading, not_run[name]))
            continue
        link = Path(os.path.relpath(figures[name].resolve(), out_dir.resolve())).as_posix()
        caption = f"\n\n*{FIGURE_CAPTIONS[name]}*" if name in FIGURE_CAPTIONS else ""
        if name == "fig8" and has_curves:
            caption += " The curves are in [success_curves.csv](success_curves.csv)."
        sections.append(f"{heading}\n\n![{name}]({link}){caption}")
    sections.append("## Wall time\n\n" + _seconds_table(seconds))
    sections.append("## Machine\n\n" + markdown_table(
        ["", "value"], [[str(key), str(value)] for key, value in machine.items()], align="ll"))
    sections.append("## Configuration and data\n\n" + _details("configuration", config))
    sections += [_details(f"data: {name}", manifest) for name, manifest in manifests.items()]
    return "\n\n".join(sections) + "\n"


def _not_run_section(heading: str, reason: str) -> str:
    return f"{heading}\n\n*Not run: {reason}.*"


NOT_HAND_DEVIATION = (
    "**Deviation: a not-hand class.** The paper segments frames after background subtraction, into 20 hand "
    "parts. Real crops also hold the forearm, so here the synthetic renders carry a forearm labelled not hand "
    "and the segmentation network predicts 21 classes (not hand + the 20 parts) on every pixel with depth. "
    "Accuracies are over hand pixels, as in the paper (a hand pixel predicted not hand is wrong); the hand IoU "
    "scores the hand / not-hand split itself."
)


def _data_statement(manifests: Mapping[str, Mapping]) -> str:
    domains = {manifest.get("domain") for manifest in manifests.values() if isinstance(manifest, Mapping)}
    if "nyu" in domains:
        return (
            "**Data.** The real-domain results are on the NYU Hand Pose Dataset (Kinect depth). The synthetic "
            "training frames are this project's own renders, not the paper's Poser renders, so numbers still "
            "differ from the paper's for that reason."
        )
    return (
        "**Data.** These results are on the project's **simulated benchmark**, not on NYU: synthetic renders of "
        "a parametric hand, and a simulated structured-light \"real\" domain (a different hand shape and pose "
        "distribution seen through a depth-sensor model) standing in for NYU. Absolute numbers are therefore not "
        "comparable with the paper's; what carries over is whether each step helps, and by how much, which the "
        "verdicts below check."
    )


def _seconds_table(seconds: dict[str, float]) -> str:
    rows = [[stage, f"{value:.1f}", _clock(value)] for stage, value in seconds.items()]
    total = sum(seconds.values())
    rows.append(["**total**", f"**{total:.1f}**", f"**{_clock(total)}**"])
    return markdown_table(["stage", "seconds", "h:mm:ss"], rows)


def _clock(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


def _details(summary: str, values: Mapping | object) -> str:
    text = json.dumps(values, indent=2, default=_json_default)
    return f"<details><summary>{summary}</summary>\n\n```json\n{text}\n```\n\n</details>"


def _json_default(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _write_curves_csv(curves: Mapping[str, JointErrors], path: Path) -> None:
    """Success rate (%, maximum joint error <= D) per method, one row per threshold D."""
    thresholds = {tuple(errors.thresholds_mm) for errors in curves.values()}
    if len(thresholds) != 1:
        raise UserError("success curves: all methods must use the same thresholds")
    first = next(iter(curves.values()))
    frame = pd.DataFrame({name: 100.0 * errors.curves["max"] for name, errors in curves.items()},
                         index=pd.Index(first.thresholds_mm, name="threshold_mm"))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp)


def _check_seconds(seconds: Mapping[str, float]) -> dict[str, float]:
    checked = {}
    for stage, value in seconds.items():
        try:
            checked[str(stage)] = number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"wall time of stage {stage!r} must be a number of seconds, got {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise UserError(f"wall time of stage {stage!r} must be finite and >= 0 s, got {value}")
    return checked


def _package_version(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
