"""Scheduler registry: ``create_scheduler(name, **kw)`` for fifo, asha, median, hyperband, bohb.

The budget (``time_attr``) is ``training_iteration``: one iteration is one epoch.
"""

from __future__ import annotations

from typing import Any

from raytune_hpo._registry import Entry, check, create

TIME_ATTR = "training_iteration"
LOSS_METRICS = ("val_loss", "train_loss")


def _fifo(metric=None, mode=None, max_t=None):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(metric=None, mode=None, max_t=None, *, grace_period=1, reduction_factor=2, brackets=1):
    """Asynchronous successive halving (Li et al., 2020)."""
    from ray.tune.schedulers import ASHAScheduler

    _positive("grace_period", grace_period)
    _reduction("reduction_factor", reduction_factor)
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max_t or 100,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        brackets=brackets,
    )


def _median(
    metric=None,
    mode=None,
    max_t=None,
    *,
    grace_period=2,
    min_samples_required=3,
    threshold=None,
    threshold_metric="val_loss",
    window=5,
):
    """Median stopping rule (Golovin et al., 2017). With ``threshold``, also the TinyVGG
    study's rule: stop a trial once the mean ``threshold_metric`` (a loss) of its last
    ``window`` epochs is above ``threshold``."""
    _positive("grace_period", grace_period)
    _positive("min_samples_required", min_samples_required)
    _positive("window", window)
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float))
    ):
        raise ValueError(f"threshold: must be a number, got {threshold!r}")
    if threshold_metric not in LOSS_METRICS:
        raise ValueError(
            f"threshold_metric: got {threshold_metric!r}; allowed: {', '.join(LOSS_METRICS)}"
        )
    return _median_class()(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        grace_period=grace_period,
        min_samples_required=min_samples_required,
        threshold=threshold,
        threshold_metric=threshold_metric,
        window=int(window),
    )


def _median_class():
    from raytune_hpo._median import MedianOrThreshold

    return MedianOrThreshold


def _hyperband(metric=None, mode=None, max_t=None, *, reduction_factor=3, stop_last_trials=True):
    """Synchronous HyperBand (Li et al., JMLR 2018); pauses trials at bracket milestones."""
    from raytune_hpo._hyperband import RestorableHyperBand

    return hyperband_like(
        RestorableHyperBand, metric, mode, max_t, reduction_factor, stop_last_trials
    )


def hyperband_like(cls, metric, mode, max_t, reduction_factor, stop_last_trials):
    """A HyperBand scheduler class built on epochs (``max_t`` 81 when the sweep gives none)."""
    _reduction("reduction_factor", reduction_factor)
    return cls(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max_t or 81,
        reduction_factor=reduction_factor,
        stop_last_trials=stop_last_trials,
    )


def _bohb(metric=None, mode=None, max_t=None, *, reduction_factor=3, stop_last_trials=True):
    from raytune_hpo.bohb import bohb_scheduler

    return bohb_scheduler(
        metric, mode, max_t, reduction_factor=reduction_factor, stop_last_trials=stop_last_trials
    )


def _reduction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 1:
        raise ValueError(f"{name}: must be > 1, got {value!r}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        raise ValueError(f"{name}: must be a number >= 1, got {value!r}")


_RESERVED = ("metric", "mode", "max_t")

SCHEDULERS: dict[str, Entry] = {
    "fifo": Entry(_fifo, "run every trial to the end", _RESERVED),
    "asha": Entry(_asha, "asynchronous successive halving: stop weak trials early", _RESERVED),
    "median": Entry(
        _median,
        "stop a trial below the running median (or, with threshold, over a windowed loss)",
        _RESERVED,
    ),
    "hyperband": Entry(
        _hyperband, "synchronous HyperBand: brackets of successive halving", _RESERVED
    ),
    "bohb": Entry(
        _bohb, "HyperBand as BOHB runs it (HyperBandForBOHB); needs searcher bohb", _RESERVED
    ),
}
# Schedulers that pause trials and resume them later from their checkpoints.
PAUSING_SCHEDULERS = frozenset({"hyperband", "bohb"})


def check_scheduler(name: str, options: dict[str, Any]) -> None:
    """Validate a scheduler name and its options without building anything."""
    check("scheduler", SCHEDULERS, name, options)


def create_scheduler(name: str, **kw: Any):
    """Build the named scheduler; ``metric``/``mode`` may be left to the Tuner."""
    return create("scheduler", SCHEDULERS, name, **kw)


__all__ = ["SCHEDULERS", "TIME_ATTR", "check_scheduler", "create_scheduler"]
