"""Fitting that resumes exactly where it was interrupted, shared by every training stage.

`fit_resumable` trains one epoch per `model.fit` call, on `data_for_epoch(epoch)`:
a data set that is a function of the run's seed and the epoch alone (see
`training.inputs`). After every epoch it writes a checkpoint, `OUT/backup/<name>/`:
the weights with the optimiser's state, and `state.json` with the epochs done,
their history and the run's identity (every setting the result depends on).
A rerun with the same identity continues at the next epoch and ends with the
weights, bit for bit, of a run that was never interrupted; a rerun with another
identity is refused, naming the settings that differ. A stage removes the
checkpoint (`remove_checkpoint`) once it has written its results, so a run
killed in between resumes with every epoch done and only writes them again.

Why not `keras.callbacks.BackupAndRestore`: it restores the weights and the
optimiser at the last finished epoch, but not the position in the data. A
tf.data pipeline that reshuffles (and re-augments) at each pass draws its
epochs from how often this process iterated it, so a resumed run trained on
other batches than an uninterrupted one and ended elsewhere. Nor does it
record what the backup was made with, so it continued a run of other settings.

Where and how precisely it trains is the stage's `devices.Placement`: the
fit runs on a copy of the model (`training_copy`) built in the placement's
strategy scope, computing in its precision, with batch normalisation
synchronised across replicas; the stage's model gets the copy's weights at
the end, so what a stage saves is the same float32 model on any devices.
A checkpoint holds weights only, so a run interrupted on some devices
resumes on others (the strategy is not part of the identity; the
precision is, as it changes the result). Resumed under the strategy it was
made with, a run ends bit for bit where an uninterrupted one does
(tests/test_multi_device.py).

`make_optimizer` turns a stage's optimiser settings into a Keras optimiser
with its learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence, TypeVar

import keras
import tensorflow as tf

from keras_hpe.data.dataset import MANIFEST_NAME
from keras_hpe.errors import UserError
from keras_hpe.faults import crash_point
from keras_hpe.models.cloning import clone_with
from keras_hpe.outputs import atomic_path, write_text
from keras_hpe.training.devices import Placement

BACKUP_DIR = "backup"
LOG_DIR = "logs"
STATE_NAME = "state.json"
STATE_FORMAT = "keras_hpe.fit_checkpoint/1"

Config = TypeVar("Config")
History = dict[str, list[float]]


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
    if config.batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {config.batch_size}")
    return config


def check_seed(seed: int) -> int:
    """`seed`, or UserError unless it is an integer >= 0 (the data order is drawn from `default_rng([seed, epoch])`)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be an integer >= 0, got {seed!r}")
    return seed


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file (a model), or of a data set folder's manifest.json: an input in a run's identity."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path / MANIFEST_NAME if path.is_dir() else path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_copy(model: keras.Model, placement: Placement) -> keras.Model:
    """A copy of `model`, with its weights, made in the placement's strategy scope to fit there in its precision.

    A mixed policy ("mixed_bfloat16", "mixed_float16") computes in 16 bits
    and keeps float32 weights; the output layers stay float32, so the
    softmax and the loss are exact. The copy's own policy is the mixed one,
    so that `compile` wraps a float16 optimiser in a `LossScaleOptimizer`.
    With several replicas, batch normalisation is synchronised: its
    statistics are the global batch's, as on one device, not each replica's
    share of it. With one, it keeps Keras's unsynchronised statistics, whose
    variance is computed in two passes (the synchronised one is E[x^2] -
    E[x]^2, which loses digits in float32).
    """
    synchronized = placement.strategy.num_replicas_in_sync > 1

    def edit(layer: keras.Operation, config: dict) -> tuple[type, dict]:
        # Operations of the graph that are not layers (`ops.less`) take no policy: they keep their inputs' dtypes.
        if isinstance(layer, keras.layers.Layer) and layer.name not in model.output_names:
            config["dtype"] = placement.precision
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = synchronized
        return layer.__class__, config

    with placement.strategy.scope():
        copy = clone_with(model, edit)
    copy.dtype_policy = placement.precision
    return copy


def seed_new_model(seed: int) -> None:
    """Reset Keras' global state, then seed it: call before building each model a stage trains.

    A model built after it gets the same initial weights and the same layer
    names (Keras numbers auto-named op layers per process: `less`, `less_1`)
    whatever the process built before, so a stage resumed in a new process
    saves the archive an uninterrupted `reproduce` does.
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def make_optimizer(config: OptimizerSettings, total_steps: int) -> keras.optimizers.Optimizer:
    """The configured optimiser with its learning-rate schedule over `total_steps` steps."""
    if config.cosine_decay:
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(total_steps, 1))
    elif config.lr_decay > 0:
        # Torch7's learningRateDecay: lr / (1 + t * decay).
        rate = keras.optimizers.schedules.InverseTimeDecay(config.learning_rate, 1, config.lr_decay)
    else:
        rate = config.learning_rate
    # Named, so a saved model's config does not depend on how many optimisers the process built before.
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, name="sgd")
    return keras.optimizers.Adam(rate, name="adam")


def fit_resumable(
    model: keras.Model,
    compile_model: Callable[[keras.Model], None],
    data_for_epoch: Callable[[int], tf.data.Dataset],
    *,
    placement: Placement,
    epochs: int,
    out_dir: Path,
    name: str,
    identity: Mapping,
    val: tf.data.Dataset | None = None,
    progress: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[History, float]:
    """Fit `model` for `epochs` epochs as `placement` says, resuming an interrupted fit; return (history, seconds).

    A copy of `model` (`training_copy`) is compiled by `compile_model(copy)`
    (which makes the optimiser) in the placement's strategy scope, fitted,
    and `model` gets its weights.
    `data_for_epoch(epoch)` builds epoch `epoch`'s training data: it must
    depend on nothing but the epoch and the settings in `identity` (a JSON-able
    mapping; the precision is added to it). `OUT/backup/<name>/` holds the
    checkpoint (for `remove_checkpoint` once the stage's results are written),
    `OUT/logs/<name>.csv` one row per epoch, `OUT/logs/<name>/` TensorBoard
    events. The history holds every epoch, also those before an interruption;
    the seconds are this run's. Callbacks see the copy as their `model`.
    Raises UserError if the checkpoint was made with another identity.
    """
    out_dir = Path(out_dir)
    backup_dir = out_dir / BACKUP_DIR / name
    log_dir = out_dir / LOG_DIR
    history_csv = log_dir / f"{name}.csv"
    # As it reads back from state.json.
    identity = json.loads(json.dumps({**identity, "precision": placement.precision}))
    trained = training_copy(model, placement)
    with placement.strategy.scope():
        compile_model(trained)
        rows = _restore(trained, backup_dir, identity, epochs)
    _write_csv(history_csv, rows)  # drops rows of an epoch that was interrupted before its checkpoint
    logs: list[keras.callbacks.Callback] = [_CrashPoints(name)]
    if progress:
        logs.append(_RunProgbar(epochs))
    if importlib.util.find_spec("tensorboard") is not None:
        logs.append(keras.callbacks.TensorBoard(str(log_dir / name)))
    started = time.perf_counter()
    for epoch in range(len(rows), epochs):
        fitted = trained.fit(
            data_for_epoch(epoch),
            validation_data=val,
            initial_epoch=epoch,
            epochs=epoch + 1,
            verbose=1 if progress else 0,
            shuffle=False,  # the tf.data pipelines shuffle
            callbacks=[*logs, *callbacks],
        )
        rows.append({key: float(values[-1]) for key, values in fitted.history.items()})
        _write_checkpoint(trained, backup_dir, identity, rows)
        _write_csv(history_csv, rows)
        crash_point("fit.epoch", name)
    seconds = time.perf_counter() - started
    model.set_weights(trained.get_weights())
    return {key: [row[key] for row in rows] for key in sorted(rows[0])}, seconds


def remove_checkpoint(out_dir: Path, name: str) -> None:
    """Remove the checkpoint of fit `name` in `out_dir`, and `OUT/backup` unless another fit's is in it."""
    backup_dir = Path(out_dir) / BACKUP_DIR / name
    shutil.rmtree(backup_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        backup_dir.parent.rmdir()


class _CrashPoints(keras.callbacks.Callback):
    """`faults.crash_point("fit.batch", name)` after every training batch (the fault-injection tests)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_train_batch_end(self, batch, logs=None):
        crash_point("fit.batch", self.name)


class _RunProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run ("Epoch 3/10") though each fit runs one."""

    def __init__(self, epochs: int):
        super().__init__()
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.run_epochs


def _restore(model: keras.Model, backup_dir: Path, identity: dict, epochs: int) -> list[dict[str, float]]:
    """Load the checkpoint in `backup_dir` into `model` and return its history rows; [] without one."""
    state_path = backup_dir / STATE_NAME
    if not state_path.is_file():
        # No checkpoint, or one killed before its first state.json: nothing to resume.
        shutil.rmtree(backup_dir, ignore_errors=True)
        return []
    start_over = f"delete {backup_dir} to start over"
    try:
        state = json.loads(state_path.read_text())
        saved, rows, weights = state["identity"], state["history"], backup_dir / state["weights"]
        if state["format"] != STATE_FORMAT or state["epochs_done"] != len(rows):
            raise ValueError(f"not a {STATE_FORMAT} checkpoint")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"cannot resume from {state_path}: {error}; {start_over}") from None
    if saved != identity:
        raise UserError(
            f"{backup_dir.parent.parent} holds an interrupted training ({backup_dir.name}) made with other "
            f"settings (different: {', '.join(_differences(saved, identity))}; see {state_path}); rerun with "
            f"those settings to resume it, or {start_over}"
        )
    if len(rows) > epochs:
        raise UserError(f"{state_path} has {len(rows)} epochs done, more than the {epochs} asked; {start_over}")
    # Keras loads an optimiser's variables only into a built optimiser; unbuilt, it skips them.
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(weights)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot resume from {weights}: {str(error).splitlines()[0]}; {start_over}") from None
    return rows


def _write_checkpoint(model: keras.Model, backup_dir: Path, identity: dict, rows: list[dict[str, float]]) -> None:
    """Write the weights (with the optimiser's state) under a new name, then state.json naming them.

    Each file is written atomically and state.json last, so a kill at any
    moment leaves the previous checkpoint or this one, whole.
    """
    weights = f"epoch-{len(rows):05d}.weights.h5"
    with atomic_path(backup_dir / weights) as tmp:
        model.save_weights(tmp)
    state = {"format": STATE_FORMAT, "epochs_done": len(rows), "weights": weights, "history": rows,
             "identity": identity}
    write_text(backup_dir / STATE_NAME, json.dumps(state, indent=2) + "\n")
    for stale in backup_dir.glob("epoch-*.weights.h5"):
        if stale.name != weights:
            stale.unlink()


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """One line per epoch, as `keras.callbacks.CSVLogger` writes them; no file without rows."""
    if not rows:
        path.unlink(missing_ok=True)
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["epoch", *sorted(rows[0])], lineterminator="\n")
    writer.writeheader()
    writer.writerows({"epoch": epoch, **row} for epoch, row in enumerate(rows))
    write_text(path, text.getvalue())


def _differences(old, new, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        names = sorted(set(old) | set(new))
        return [key for name in names for key in _differences(old.get(name), new.get(name), f"{prefix}{name}.")]
    return [prefix.rstrip(".")] if old != new else []
