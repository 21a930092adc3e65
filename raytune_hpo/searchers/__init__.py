"""Searcher registry: ``create_searcher(name, **kw)``; unknown names or options raise.

``random`` and ``grid`` are Ray's own variant generator over the Tuner's ``param_space``; the
others take our ``SearchSpace``: ``UnitCubeSearcher`` subclasses (our algorithms) and thin
adapters over HpBandSter (``bohb``) and Optuna (``bayesopt``, ``tpe``).
"""

from __future__ import annotations

from typing import Any

from raytune_hpo._registry import Entry, check, create, lookup
from raytune_hpo.searchers._approx_gradient import ApproxGradientSearch
from raytune_hpo.searchers._base import UnitCubeSearcher
from raytune_hpo.searchers._bohb import BOHBSearch
from raytune_hpo.searchers._hypertiling import HypertilingSearch
from raytune_hpo.searchers._lhs import LatinHypercubeSearch
from raytune_hpo.searchers._optuna import GPSearch, TPESearch
from raytune_hpo.searchers._pso import PSOSearch
from raytune_hpo.searchers._rsa import RSASearch
from raytune_hpo.searchers._sobol import SobolSearch


def _variant_generator(space=None, metric=None, mode=None, *, seed=None, points_to_evaluate=None):
    # Ray's own generator; the space reaches it as the Tuner's param_space.
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=points_to_evaluate, random_state=seed)


_RESERVED = ("space", "metric", "mode", "seed")

SEARCHERS: dict[str, Entry] = {
    "random": Entry(
        _variant_generator,
        "uniform / log-uniform random sampling (Ray's BasicVariantGenerator)",
        _RESERVED,
    ),
    "grid": Entry(
        _variant_generator,
        "every combination of the grid values, once (Ray's grid_search)",
        _RESERVED,
    ),
    "sobol": Entry(
        SobolSearch,
        "scrambled Sobol' quasi-random points (scipy.stats.qmc)",
        _RESERVED,
        owns_space=True,
    ),
    "lhs": Entry(
        LatinHypercubeSearch,
        "Latin hypercube design of `budget` points, then done",
        _RESERVED,
        owns_space=True,
    ),
    "rsa": Entry(
        RSASearch,
        "random sequential addition: random points kept a radius apart",
        _RESERVED,
        owns_space=True,
    ),
    "hypertiling": Entry(
        HypertilingSearch,
        "vertices of an aperiodic (Penrose-type) tiling, `budget` points, then done",
        _RESERVED,
        owns_space=True,
    ),
    "pso": Entry(
        PSOSearch,
        "asynchronous particle swarm; done when the swarm stops moving",
        _RESERVED,
        owns_space=True,
    ),
    "approx_gradient": Entry(
        ApproxGradientSearch,
        "grid neighbourhood search along finite-difference slopes, with restarts",
        _RESERVED,
        owns_space=True,
    ),
    "bohb": Entry(
        BOHBSearch,
        "BOHB's model (HpBandSter, via Ray's TuneBOHB); pairs with scheduler bohb",
        _RESERVED,
        owns_space=True,
    ),
    "bayesopt": Entry(
        GPSearch,
        "GP Bayesian optimization after `n_initial_points` random points (Optuna GPSampler)",
        _RESERVED,
        owns_space=True,
    ),
    "tpe": Entry(
        TPESearch,
        "tree-structured Parzen estimator (Optuna TPESampler)",
        _RESERVED,
        owns_space=True,
    ),
}

# Searchers that run over `tune.grid_search` domains instead of sampled ones.
GRID_SEARCHERS = frozenset({"grid"})


def check_searcher(name: str, options: dict[str, Any]) -> None:
    """Validate a searcher name and its options without building anything."""
    check("searcher", SEARCHERS, name, options)


def create_searcher(name: str, **kw: Any):
    """Build the named searcher; ``kw`` are the constructor's arguments."""
    return create("searcher", SEARCHERS, name, **kw)


def owns_space(name: str) -> bool:
    return lookup("searcher", SEARCHERS, name).owns_space


__all__ = [
    "GRID_SEARCHERS",
    "SEARCHERS",
    "ApproxGradientSearch",
    "BOHBSearch",
    "GPSearch",
    "HypertilingSearch",
    "LatinHypercubeSearch",
    "PSOSearch",
    "RSASearch",
    "SobolSearch",
    "TPESearch",
    "UnitCubeSearcher",
    "check_searcher",
    "create_searcher",
    "owns_space",
]
