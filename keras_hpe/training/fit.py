"""Fitting that survives interruptions, shared by every training stage.

`fit_resumable` wraps `model.fit` with `keras.callbacks.BackupAndRestore`, so
a killed run resumes at the epoch it was in when re-run with the same
arguments, a CSV log of every epoch (continued on resume) and TensorBoard
event files. `make_optimizer` turns a stage's optimiser settings into a Keras
optimiser with its learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol, Sequence, TypeVar

import keras
import tensorflow as tf

from keras_hpe.errors import UserError

BACKUP_DIR = "backup"
LOG_DIR = "logs"

Config = TypeVar("Config")


class OptimizerSettings(Protocol):
    """The optimiser fields every stage's training config has."""

    optimizer: str  # "sgd" or "adam"
    learning_rate: float
    lr_decay: float  # Torch7-style decay per step; 0 = none
    cosine_decay: bool  # cosine decay to 0 over the run, instead of lr_decay


def with_run_length(config: Config, epochs: int | None, batch_size: int | None) -> Config:
    """A training config (a dataclass with `epochs` and `batch_size`) with those overridden where given."""
    config = replace(
        config,
        epochs=config.epochs if epochs is None else epochs,
        batch_size=config.batch_size if batch_size is None else batch_size,
    )
    if config.epochs < 1:
        raise UserError(f"epochs must be >= 1, got {config.epochs}")
    return config


def make_optimizer(config: OptimizerSettings, total_steps: int) -> keras.optimizers.Optimizer:
    """The configured optimiser with its learning-rate schedule over `total_steps` steps."""
    if config.cosine_decay:
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(total_steps, 1))
    elif config.lr_decay > 0:
        # Torch7's learningRateDecay: lr / (1 + t * decay).
        rate = keras.optimizers.schedules.InverseTimeDecay(config.learning_rate, 1, config.lr_decay)
    else:
        rate = config.learning_rate
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate)
    return keras.optimizers.Adam(rate)


def fit_resumable(
    model: keras.Model,
    train: tf.data.Dataset,
    *,
    epochs: int,
    out_dir: Path,
    name: str,
    val: tf.data.Dataset | None = None,
    progress: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[dict[str, list[float | None]], float]:
    """`model.fit` that resumes after an interruption; returns (history of all epochs, seconds of this run).

    `OUT/backup/<name>` holds the BackupAndRestore state (removed when the fit
    ends), `OUT/logs/<name>.csv` the per-epoch figures (continued on resume,
    so the history also holds the epochs before an interruption) and
    `OUT/logs/<name>/` TensorBoard events.
    """
    log_dir = out_dir / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = out_dir / BACKUP_DIR / name
    history_csv = log_dir / f"{name}.csv"
    if not backup_dir.exists():
        history_csv.unlink(missing_ok=True)  # a fresh run, not a resumed one
    logs = [keras.callbacks.CSVLogger(str(history_csv), append=True)]
    if importlib.util.find_spec("tensorboard") is not None:
        logs.append(keras.callbacks.TensorBoard(str(log_dir / name)))
    backup = keras.callbacks.BackupAndRestore(str(backup_dir))
    started = time.perf_counter()
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        verbose=1 if progress else 0,
        shuffle=False,  # the tf.data pipelines shuffle
        callbacks=[backup, *logs, *callbacks],
    )
    seconds = time.perf_counter() - started
    # BackupAndRestore deletes its folder when the fit ends; the parent goes too unless another fit uses it.
    with contextlib.suppress(OSError):
        backup_dir.parent.rmdir()
    return read_history(history_csv), seconds


def read_history(path: Path) -> dict[str, list[float | None]]:
    """{metric: per-epoch values} from a Keras CSVLogger file ("NA" -> None; all-NA columns dropped)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = [name for name in rows[0] if name != "epoch" and any(row[name] != "NA" for row in rows)] if rows else []
    return {name: [None if row[name] == "NA" else float(row[name]) for row in rows] for name in names}
