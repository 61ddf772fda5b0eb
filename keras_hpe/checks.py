"""Checks of values read from an artefact's JSON: a one-line UserError naming the file and the key."""

from __future__ import annotations

import math

from keras_hpe.errors import UserError


def require(ok: bool, source: str, key: str, expected: str, value) -> None:
    """UserError "`source`: 'key' must be `expected`, got `value`" unless `ok`."""
    if not ok:
        raise UserError(f"{source}: {key!r} must be {expected}, got {shown(value)}")


def shown(value) -> str:
    """`value` for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value) -> bool:
    """A JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite(value) -> bool:
    """A JSON number (not a bool) that is finite as a float."""
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def is_file_name(value) -> bool:
    """A plain file name (no folder part), so that it names a file inside the artefact's folder."""
    return isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\\" not in value
