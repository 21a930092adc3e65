"""Searcher registry: ``create_searcher(name, **kw)``; unknown names or options raise.

``random`` and ``grid`` are Ray's own variant generator over the Tuner's ``param_space``; the
others take our ``SearchSpace``: ``UnitCubeSearcher`` subclasses (our algorithms) and thin
adapters over HpBandSter (``bohb``) and Optuna (``bayesopt``, ``tpe``, ``nsga2``).

Several objectives or constraints: the searchers that learn them take ``objectives`` (the
sweep's ``raytune_hpo.objectives.Objectives``, filled in by the runner like ``metric``); which
searchers run with them: ``raytune_hpo.objectives.MULTI_OBJECTIVE_SEARCHERS`` and, for a
plug-in, its class attribute ``supports_multi_objective = True`` (``takes_objectives``).

Plug-ins: a name ``FILE.py:Class`` (relative to the sweep file) or ``package.module:Class``,
or a name an installed package registers in the entry-point group ``raytune_hpo.searchers``,
is any ``ray.tune.search.Searcher`` subclass. One whose
constructor takes ``space`` gets our ``SearchSpace``; others get Tune domains through the
Tuner's ``param_space``; ``seed``, ``metric`` and ``mode`` reach it when it takes them.
"""

from __future__ import annotations

from typing import Any

from raytune_hpo._lazy import lazy_names
from raytune_hpo._registry import Entry, build
from raytune_hpo.errors import UserError, did_you_mean

# The public classes, imported when first named (a sweep imports the searcher it runs only).
_CLASSES = {
    "ApproxGradientSearch": "raytune_hpo.searchers._approx_gradient",
    "AutoSearch": "raytune_hpo.searchers._auto",
    "BOHBSearch": "raytune_hpo.searchers._bohb",
    "GPSearch": "raytune_hpo.searchers._optuna",
    "HypertilingSearch": "raytune_hpo.searchers._hypertiling",
    "LatinHypercubeSearch": "raytune_hpo.searchers._lhs",
    "NSGA2Search": "raytune_hpo.searchers._nsga2",
    "NevergradSearch": "raytune_hpo.searchers._nevergrad",
    "PSOSearch": "raytune_hpo.searchers._pso",
    "RSASearch": "raytune_hpo.searchers._rsa",
    "SMACSearch": "raytune_hpo.searchers._smac",
    "SobolSearch": "raytune_hpo.searchers._sobol",
    "TPESearch": "raytune_hpo.searchers._optuna",
    "UnitCubeSearcher": "raytune_hpo.searchers._base",
}

__getattr__ = lazy_names(__name__, _CLASSES)


def _lazy(cls: str) -> str:
    return f"{_CLASSES[cls]}:{cls}"


def _variant_generator(
    space=None, metric=None, mode=None, *, seed=None, points_to_evaluate=None, max_concurrent=None
):
    """Ray's own ``BasicVariantGenerator`` (``random``, ``grid``); the space reaches it as the
    Tuner's param_space. Over a conditional space, its trials leave out the parameters that
    do not apply (``_variants.ConditionalVariants``).

    Args:
        space: the sweep's SearchSpace (used only when it is conditional).
        metric, mode: unused (the Tuner's param_space, metric and mode).
        seed: Ray's ``random_state``.
        points_to_evaluate: configurations suggested first.
        max_concurrent: trials at once (None: no limit); it limits its own concurrency, since
            Ray ignores the Tuner's max_concurrent_trials for it.
    """
    return _generator(space, seed, points_to_evaluate, max_concurrent, grid=False)


def _generator(space, seed, points_to_evaluate, max_concurrent, *, grid: bool):
    from ray.tune.search import BasicVariantGenerator

    from raytune_hpo.sweep.space import SearchSpace

    options = {
        "points_to_evaluate": points_to_evaluate,
        "random_state": seed,
        "max_concurrent": max_concurrent or 0,
    }
    if isinstance(space, dict):
        space = SearchSpace.from_dict(space)
    # Ray's generator reads the Tuner's param_space; the space matters only with conditions
    # (one without parameters too: a sweep of the trainable's fixed settings).
    if isinstance(space, SearchSpace) and space.conditional:
        from raytune_hpo.searchers._variants import ConditionalVariants

        return ConditionalVariants(space, grid=grid, **options)
    return BasicVariantGenerator(**options)


def _grid_generator(
    space=None, metric=None, mode=None, *, seed=None, points_to_evaluate=None, max_concurrent=None
):
    """``grid``: Ray's ``BasicVariantGenerator`` over ``tune.grid_search`` domains; over a
    conditional space every combination of the active parameters' values, once.

    Args:
        space, metric, mode, seed, points_to_evaluate, max_concurrent: as for ``random``.
    """
    return _generator(space, seed, points_to_evaluate, max_concurrent, grid=True)


# Arguments the runner fills in; a factory that does not take one does not get it.
_RESERVED = ("space", "metric", "mode", "seed", "max_concurrent", "objectives", "scheduler")

SEARCHERS: dict[str, Entry] = {
    "random": Entry(
        _variant_generator,
        "uniform / log-uniform random sampling (Ray's BasicVariantGenerator)",
        _RESERVED,
    ),
    "grid": Entry(
        _grid_generator,
        "every combination of the grid values, once (Ray's grid_search)",
        _RESERVED,
    ),
    "sobol": Entry(
        _lazy("SobolSearch"),
        "scrambled Sobol' quasi-random points (scipy.stats.qmc)",
        _RESERVED,
        owns_space=True,
    ),
    "lhs": Entry(
        _lazy("LatinHypercubeSearch"),
        "Latin hypercube design of `budget` points, then done",
        _RESERVED,
        owns_space=True,
    ),
    "rsa": Entry(
        _lazy("RSASearch"),
        "random sequential addition: random points kept a radius apart",
        _RESERVED,
        owns_space=True,
    ),
    "hypertiling": Entry(
        _lazy("HypertilingSearch"),
        "vertices of an aperiodic (Penrose-type) tiling, `budget` points, then done",
        _RESERVED,
        owns_space=True,
    ),
    "pso": Entry(
        _lazy("PSOSearch"),
        "asynchronous particle swarm; done when the swarm stops moving",
        _RESERVED,
        owns_space=True,
    ),
    "approx_gradient": Entry(
        _lazy("ApproxGradientSearch"),
        "grid neighbourhood search along finite-difference slopes, with restarts",
        _RESERVED,
        owns_space=True,
    ),
    "bohb": Entry(
        _lazy("BOHBSearch"),
        "BOHB's model (HpBandSter, via Ray's TuneBOHB); pairs with scheduler bohb",
        _RESERVED,
        owns_space=True,
    ),
    "bayesopt": Entry(
        _lazy("GPSearch"),
        "GP Bayesian optimization after `n_initial_points` random points (Optuna GPSampler)",
        _RESERVED,
        owns_space=True,
    ),
    "tpe": Entry(
        _lazy("TPESearch"),
        "tree-structured Parzen estimator (Optuna TPESampler)",
        _RESERVED,
        owns_space=True,
    ),
    "nsga2": Entry(
        _lazy("NSGA2Search"),
        "NSGA-II genetic algorithm, one objective or several (Optuna NSGAIISampler)",
        _RESERVED,
        owns_space=True,
    ),
    "ngopt": Entry(
        _lazy("NevergradSearch"),
        "Nevergrad's NGOpt, which picks an optimizer for the space, budget and workers "
        "(`optimizer`: any other of Nevergrad's by name)",
        _RESERVED,
        owns_space=True,
    ),
    "auto": Entry(
        _lazy("AutoSearch"),
        "chooses a searcher from the space, budget, concurrency, objectives and scheduler, by "
        "rules from the compare studies in specs/studies",
        _RESERVED,
        owns_space=True,
    ),
    "smac": Entry(
        _lazy("SMACSearch"),
        "SMAC3's random-forest Bayesian optimization (HyperparameterOptimizationFacade)",
        _RESERVED,
        owns_space=True,
    ),
}

# Searchers that run over `tune.grid_search` domains instead of sampled ones.
GRID_SEARCHERS = frozenset({"grid"})


def searcher_entry(name: str, *, base_dir: str | None = None) -> Entry:
    """The registry entry of a built-in name, a ``FILE.py:Class`` / ``module:Class`` reference
    or an entry-point name; a UserError (its field relative to the ``searcher`` section) when
    there is none."""
    import raytune_hpo.sweep.load as load

    if isinstance(name, str) and name in SEARCHERS:
        return SEARCHERS[name]
    if isinstance(name, str) and load.is_reference(name):
        obj = load.resolve(name, base_dir=base_dir or ".", field="name")
        return plugin_entry(obj, name)
    plugins = load.entry_points()
    if isinstance(name, str) and name in plugins:
        return plugin_entry(load.load_entry_point(name, field="name"), name)
    allowed = ", ".join([*SEARCHERS, *plugins])
    raise UserError(
        f"unknown searcher {name!r}; allowed: {allowed}, or a plug-in FILE.py:Class / "
        f"package.module:Class{did_you_mean(name, [*SEARCHERS, *plugins])}"
    )


def plugin_entry(obj: Any, name: str) -> Entry:
    """A plug-in searcher class (or factory) as a registry entry."""
    import inspect

    from ray.tune.search import Searcher

    if not (isinstance(obj, type) and issubclass(obj, Searcher)):
        raise UserError(f"{name} is not a ray.tune.search.Searcher subclass", field="name")
    doc = (inspect.getdoc(obj) or f"plug-in {name}").splitlines()[0]
    takes_space = "space" in inspect.signature(obj).parameters
    return Entry(obj, doc, _RESERVED, owns_space=takes_space)


def create_searcher(
    name: str, *, budget: int | None = None, base_dir: str | None = None, **kw: Any
):
    """Build the named searcher (a built-in name or a plug-in); ``kw`` are the constructor's
    arguments. ``budget`` (the sweep's trials) reaches searchers that plan a number of points
    (``lhs``, ``rsa``) unless their options set it."""
    entry = searcher_entry(name, base_dir=base_dir)
    if budget is not None and "budget" in entry.option_names():
        kw.setdefault("budget", budget)
    _check_conditions(name, entry, kw.get("space"))
    return build("searcher", name, entry, **kw)


def _check_conditions(name: str, entry: Entry, space: Any) -> None:
    """A plug-in given Tune domains (no ``space`` parameter) cannot know when a parameter
    applies: Tune domains have no conditions, so it would propose every parameter always."""
    from raytune_hpo.searchers.plugin_guard import proposes_own_values

    if name in SEARCHERS or space is None or entry.accepts("space"):
        return
    from raytune_hpo.searchers._contract import as_space

    given = as_space(space)
    if given is not None and given.conditional and not proposes_own_values(entry.factory):
        raise UserError(
            f"{name} takes Ray Tune domains, which cannot say when a parameter applies, and "
            "this space has conditions (when:); give its constructor a `space` parameter (it "
            "then gets the SearchSpace with its conditions) or drop the conditions",
            field="name",
        )


def takes_objectives(name: str, entry: Entry) -> bool:
    """Whether the searcher runs under several objectives or constraints: a built-in of
    ``MULTI_OBJECTIVE_SEARCHERS``, or a plug-in whose class declares it takes them
    (``supports_multi_objective = True``)."""
    from raytune_hpo.objectives import MULTI_OBJECTIVE_ATTR, MULTI_OBJECTIVE_SEARCHERS

    if name in SEARCHERS:
        return name in MULTI_OBJECTIVE_SEARCHERS
    return getattr(entry.factory, MULTI_OBJECTIVE_ATTR, False) is True


def owns_space(name: str, *, base_dir: str | None = None) -> bool:
    return searcher_entry(name, base_dir=base_dir).owns_space


__all__ = [
    "GRID_SEARCHERS",
    "SEARCHERS",
    "ApproxGradientSearch",
    "AutoSearch",
    "BOHBSearch",
    "GPSearch",
    "HypertilingSearch",
    "LatinHypercubeSearch",
    "NSGA2Search",
    "NevergradSearch",
    "PSOSearch",
    "RSASearch",
    "SMACSearch",
    "SobolSearch",
    "TPESearch",
    "UnitCubeSearcher",
    "create_searcher",
    "owns_space",
    "plugin_entry",
    "searcher_entry",
    "takes_objectives",
]
