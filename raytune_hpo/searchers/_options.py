"""Checks of searcher options: a bad value is a one-line ``UserError`` naming the option and
what it may be (``swarm_size: must be an integer >= 1, got 0``)."""

from __future__ import annotations

import numbers
from typing import Any

from raytune_hpo.errors import UserError


def integer(field: str, value: Any, low: int, high: int | None = None) -> None:
    """An int (not a bool) in [low, high] (no upper bound when ``high`` is None)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        want = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UserError(f"must be an integer {want}, got {value!r}", field=field)


def within(field: str, value: Any, low: float, high: float, ends: str = "[]") -> None:
    """A number in the interval ``ends`` writes: ``"[)"`` is low <= value < high."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    above = number and (value >= low if ends[0] == "[" else value > low)
    below = number and (value <= high if ends[1] == "]" else value < high)
    if not (above and below):
        raise UserError(f"must lie in {ends[0]}{low}, {high}{ends[1]}, got {value!r}", field=field)


def positive(field: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not float(value) > 0:
        raise UserError(f"must be > 0, got {value!r}", field=field)


def boolean(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise UserError(f"must be true or false, got {value!r}", field=field)


def one_of(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"got {value!r}; allowed: {', '.join(allowed)}", field=field)


__all__ = ["boolean", "integer", "one_of", "positive", "within"]
