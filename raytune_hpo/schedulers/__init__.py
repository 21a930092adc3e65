"""Scheduler registry: ``create_scheduler(name, **kw)`` for fifo, asha, median, hyperband, bohb,
pbt, pb2.

The budget (``time_attr``) is ``training_iteration``: one reported result (an epoch for the
built-in CNN). ``max_t`` is the sweep's budget; which searcher may pair with ``bohb`` is decided
in ``raytune_hpo.plan.bohb``. With ``objectives`` (several, or constraints:
``raytune_hpo.objectives``) ``asha`` is MO-ASHA (``_moasha``); which schedulers take them is
decided in ``raytune_hpo.plan.assemble``.
"""

from __future__ import annotations

from typing import Any

from raytune_hpo._registry import Entry, create, lookup
from raytune_hpo.errors import UserError
from raytune_hpo.names import BUDGET_ATTR

TIME_ATTR = BUDGET_ATTR  # the budget of a trial for every scheduler
LOSS_METRICS = ("val_loss", "train_loss")


def _fifo(metric=None, mode=None):
    from raytune_hpo.schedulers._start_order import FIFO

    return FIFO()


def _asha(
    metric=None,
    mode=None,
    *,
    objectives=None,
    seed=None,
    grace_period=1,
    reduction_factor=2,
    brackets=1,
    max_t=None,
    tie_break=None,
):
    """Asynchronous successive halving (Li et al., 2020); with ``objectives``, MO-ASHA
    (Schmucker et al., 2021), whose ``tie_break`` within a front is ``epsnet`` or ``crowding``."""
    from raytune_hpo.schedulers._start_order import ASHA

    _positive("grace_period", grace_period)
    _reduction("reduction_factor", reduction_factor)
    _budget(max_t)
    if max_t is not None and grace_period > max_t:
        raise UserError(
            f"{grace_period} is more than max_t {max_t} (the epochs a trial runs); lower it, "
            "or raise the epochs",
            field="grace_period",
        )
    if objectives is not None:
        return _mo_asha(
            objectives, seed, grace_period, reduction_factor, brackets, max_t, tie_break
        )
    if tie_break is not None:
        raise UserError(
            "ranks a front of several objectives (or of constrained trials); this sweep has one "
            "objective and no constraints",
            field="tie_break",
        )
    return ASHA(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max_t or 100,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        brackets=brackets,
    )


def _mo_asha(objectives, seed, grace_period, reduction_factor, brackets, max_t, tie_break):
    from raytune_hpo.schedulers._moasha import TIE_BREAKS, MultiObjectiveASHA

    if tie_break is not None and tie_break not in TIE_BREAKS:
        raise UserError(f"got {tie_break!r}; allowed: {', '.join(TIE_BREAKS)}", field="tie_break")
    _positive("brackets", brackets)
    return MultiObjectiveASHA(
        objectives=objectives,
        time_attr=TIME_ATTR,
        max_t=max_t or 100,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        brackets=brackets,
        tie_break=tie_break or TIE_BREAKS[0],
        seed=seed,
    )


def _median(
    metric=None,
    mode=None,
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
        raise UserError(f"must be a number, got {threshold!r}", field="threshold")
    if threshold_metric not in LOSS_METRICS:
        raise UserError(
            f"got {threshold_metric!r}; allowed: {', '.join(LOSS_METRICS)}",
            field="threshold_metric",
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
    from raytune_hpo.schedulers._median import MedianOrThreshold

    return MedianOrThreshold


def _hyperband(metric=None, mode=None, *, reduction_factor=3, stop_last_trials=True, max_t=None):
    """Synchronous HyperBand (Li et al., JMLR 2018); pauses trials at bracket milestones."""
    from raytune_hpo.schedulers._hyperband import RestorableHyperBand

    return _hyperband_like(
        RestorableHyperBand, metric, mode, max_t, reduction_factor, stop_last_trials
    )


def _bohb(metric=None, mode=None, *, reduction_factor=3, stop_last_trials=True, max_t=None):
    """HyperBand as BOHB runs it (Falkner et al., ICML 2018): ``HyperBandForBOHB``, largest
    bracket first, ``reduction_factor`` is BOHB's eta. Ray derives the smallest budget itself:
    ``max_t / eta**floor(log_eta(max_t))``."""
    from raytune_hpo.schedulers._hyperband import RestorableHyperBandForBOHB

    return _hyperband_like(
        RestorableHyperBandForBOHB, metric, mode, max_t, reduction_factor, stop_last_trials
    )


def _hyperband_like(cls, metric, mode, max_t, reduction_factor, stop_last_trials):
    """A HyperBand scheduler (``max_t`` 81 when the sweep gives none)."""
    _reduction("reduction_factor", reduction_factor)
    _budget(max_t)
    return cls(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max_t or 81,
        reduction_factor=reduction_factor,
        stop_last_trials=stop_last_trials,
    )


def _reduction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 1:
        raise UserError(f"must be > 1, got {value!r}", field=name)


def _budget(max_t: Any) -> None:
    if max_t is not None and (isinstance(max_t, bool) or not isinstance(max_t, int) or max_t < 1):
        raise UserError(
            f"must be an integer >= 1 (results per trial), got {max_t!r}", field="max_t"
        )


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        raise UserError(f"must be a number >= 1, got {value!r}", field=name)


def _pbt(
    metric=None,
    mode=None,
    *,
    space=None,
    mutable=None,
    seed=None,
    kept=None,
    perturbation_interval=4,
    quantile_fraction=0.25,
    resample_probability=0.25,
    burn_in_period=0,
    mutate=None,
):
    """Population-based training (Jaderberg et al., 2017) over the sweep's space."""
    from raytune_hpo.schedulers._pbt import population

    return population("pbt", **_arguments(locals()))


def _pb2(
    metric=None,
    mode=None,
    *,
    space=None,
    mutable=None,
    seed=None,
    kept=None,
    perturbation_interval=4,
    quantile_fraction=0.25,
    mutate=None,
):
    """PB2 (Parker-Holder et al., NeurIPS 2020): a GP bandit picks the new values."""
    from raytune_hpo.schedulers._pbt import population

    arguments = _arguments(locals())
    return population("pb2", resample_probability=0.0, burn_in_period=0, **arguments)


def _arguments(names: dict) -> dict:
    """A factory's own arguments (its locals less what it imported)."""
    return {k: v for k, v in names.items() if k != "population"}


# Arguments the run fills in; a factory that does not take one does not get it.
_RESERVED = ("metric", "mode", "space", "mutable", "seed", "objectives", "kept")
# Schedulers that change a trial's config while it runs: the searcher never sees those configs.
POPULATION = ("pbt", "pb2")

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
    "pbt": Entry(
        _pbt, "population-based training: bottom trials copy top ones and perturb", _RESERVED
    ),
    "pb2": Entry(_pb2, "population-based bandits: a GP chooses the perturbed values", _RESERVED),
}


def create_scheduler(name: str, *, max_t: int | None = None, **kw: Any):
    """Build the named scheduler; ``metric``/``mode`` may be left to the Tuner. ``max_t`` (the
    trainable's budget) reaches schedulers that take one unless their options set it."""
    entry = lookup("scheduler", SCHEDULERS, name)
    if max_t is not None and "max_t" in entry.option_names():
        kw.setdefault("max_t", max_t)
    return create("scheduler", SCHEDULERS, name, **kw)


__all__ = ["POPULATION", "SCHEDULERS", "TIME_ATTR", "create_scheduler"]
