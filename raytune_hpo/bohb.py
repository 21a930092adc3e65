"""BOHB (Falkner, Klein & Hutter, ICML 2018): HpBandSter's model through Ray's ``TuneBOHB``
(``BOHBSearch``) paired with ``HyperBandForBOHB``. The pair is built here and only here;
the budget is epochs (``training_iteration``), ``max_t`` the sweep's epochs and
``reduction_factor`` BOHB's eta. Ray's HyperBand derives the smallest budget itself:
``max_t / eta**floor(log_eta(max_t))``. The scheduler survives ``Tuner.restore``
(``raytune_hpo._hyperband``, ray-project/ray#39900).
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher

from raytune_hpo.searchers._bohb import BOHBSearch
from raytune_hpo.space import SearchSpace


def bohb_scheduler(
    metric=None, mode=None, max_t=None, *, reduction_factor=3, stop_last_trials=True
):
    """HyperBand as BOHB runs it (largest bracket first; pauses trials for the model)."""
    from raytune_hpo._hyperband import RestorableHyperBandForBOHB
    from raytune_hpo.schedulers import hyperband_like

    return hyperband_like(
        RestorableHyperBandForBOHB, metric, mode, max_t, reduction_factor, stop_last_trials
    )


def build_bohb(
    space: SearchSpace,
    *,
    metric: str,
    mode: str,
    max_t: int,
    seed: int | None = None,
    reduction_factor: float = 3,
    **searcher_options: Any,
) -> tuple[Searcher, Any]:
    """The pair the BOHB paper runs: ``BOHBSearch`` + ``HyperBandForBOHB`` (budget = epochs)."""
    searcher = BOHBSearch(space, metric, mode, seed=seed, **searcher_options)
    scheduler = bohb_scheduler(metric, mode, max_t, reduction_factor=reduction_factor)
    return searcher, scheduler


__all__ = ["BOHBSearch", "bohb_scheduler", "build_bohb"]
