"""Fault injection, for the tests that prove every long job resumes exactly.

Long jobs call `crash_point(name, where)` where an interruption would hurt
most: after a data shard, a training batch, an epoch's checkpoint, a
restoration chunk, a finished stage, a prediction batch's lines (before
its state records them). With the environment variable

    KERAS_HPE_CRASH_AT="fit.batch/seg:3,dataset.shard:1"

the process kills itself with SIGKILL the n-th time (counted from 1) it
reaches a named point, as an out-of-memory kill or a pulled plug would: no
handler runs, nothing is cleaned up. `name/where` counts only the visits
whose `where` (a fit's name, a stage's name, a folder) is `where` or has it
as a path component. Unset, which it always is outside the tests, a crash
point costs one environment lookup.
"""

from __future__ import annotations

import collections
import os
import signal
from pathlib import PurePath

ENV = "KERAS_HPE_CRASH_AT"
POINTS = ("dataset.shard", "fit.batch", "fit.epoch", "predict.batch", "restore.chunk", "stage.done")

_reached: collections.Counter[str] = collections.Counter()


def crash_point(name: str, where: str | os.PathLike = "") -> None:
    """Kill this process if `KERAS_HPE_CRASH_AT` asks for a crash at this visit of `name` (at `where`)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    where = str(where)
    for item in spec.split(","):
        point, _, count = item.strip().partition(":")
        point, _, place = point.partition("/")
        if point != name or (place and place != where and place not in PurePath(where).parts):
            continue
        _reached[item] += 1
        if _reached[item] == int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)
