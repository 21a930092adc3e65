"""Scheduler registry: ``create_scheduler(name, **kw)`` for fifo, asha and median.

The budget (``time_attr``) is ``training_iteration``: one iteration is one epoch.
"""

from __future__ import annotations

from typing import Any

from raytune_hpo._registry import Entry, check, create

TIME_ATTR = "training_iteration"


def _fifo(metric=None, mode=None, max_t=None):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(metric=None, mode=None, max_t=None, *, grace_period=1, reduction_factor=2, brackets=1):
    """Asynchronous successive halving (Li et al., 2020)."""
    from ray.tune.schedulers import ASHAScheduler

    _positive("grace_period", grace_period)
    if reduction_factor is None or reduction_factor <= 1:
        raise ValueError(f"reduction_factor: must be > 1, got {reduction_factor}")
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max_t or 100,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        brackets=brackets,
    )


def _median(metric=None, mode=None, max_t=None, *, grace_period=2, min_samples_required=3):
    """Median stopping rule (Golovin et al., 2017), as the TinyVGG study used it."""
    from ray.tune.schedulers import MedianStoppingRule

    _positive("grace_period", grace_period)
    _positive("min_samples_required", min_samples_required)
    return MedianStoppingRule(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        grace_period=grace_period,
        min_samples_required=min_samples_required,
    )


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        raise ValueError(f"{name}: must be a number >= 1, got {value!r}")


_RESERVED = ("metric", "mode", "max_t")

SCHEDULERS: dict[str, Entry] = {
    "fifo": Entry(_fifo, "run every trial to the end", _RESERVED),
    "asha": Entry(_asha, "asynchronous successive halving: stop weak trials early", _RESERVED),
    "median": Entry(_median, "stop a trial whose result falls below the running median", _RESERVED),
}


def check_scheduler(name: str, options: dict[str, Any]) -> None:
    """Validate a scheduler name and its options without building anything."""
    check("scheduler", SCHEDULERS, name, options)


def create_scheduler(name: str, **kw: Any):
    """Build the named scheduler; ``metric``/``mode`` may be left to the Tuner."""
    return create("scheduler", SCHEDULERS, name, **kw)


__all__ = ["SCHEDULERS", "TIME_ATTR", "check_scheduler", "create_scheduler"]
