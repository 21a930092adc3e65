"""Searcher registry: ``create_searcher(name, **kw)``; unknown names or options raise."""

from __future__ import annotations

from typing import Any

from raytune_hpo._registry import Entry, check_options, lookup


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
        "every combination of the grid values (Ray's grid_search); num_samples repeats it",
        _RESERVED,
    ),
}

# Searchers that run over `tune.grid_search` domains instead of sampled ones.
GRID_SEARCHERS = frozenset({"grid"})


def check_searcher(name: str, options: dict[str, Any]) -> None:
    """Validate a searcher name and its options without building anything."""
    check_options("searcher", name, lookup("searcher", SEARCHERS, name), options)


def create_searcher(name: str, **kw: Any):
    """Build the named searcher; ``kw`` are the constructor's arguments."""
    entry = lookup("searcher", SEARCHERS, name)
    check_options("searcher", name, entry, set(kw) - set(entry.reserved))
    return entry.factory(**kw)


__all__ = ["SEARCHERS", "GRID_SEARCHERS", "check_searcher", "create_searcher"]
