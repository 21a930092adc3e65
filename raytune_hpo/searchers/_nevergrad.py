"""Nevergrad's optimizers (Rapin & Teytaud, "Nevergrad - A gradient-free optimization
platform", 2018), driven through its ask-and-tell interface: ``ngopt`` is ``NGOpt``, Nevergrad's
algorithm selector (Meunier et al., "Black-box optimization revisited: improving algorithm
selection wizards through massive benchmarking", IEEE TEVC 2022), which picks an optimizer
from the dimension, the budget, the number of workers and the variable types; ``optimizer``
names any other optimizer of ``nevergrad.optimizers.registry`` (``CMA``, ``TwoPointsDE``,
``PSO``, ``Cobyla``, ``DiscreteLenglerOnePlusOne``, ...).

- the space is our ``SearchSpace`` under its library names: floats as ``Scalar`` (``Log`` for
  log ranges), integers with integer casting, categoricals as the index of their choice, an
  unordered ``Choice`` for names (optimizers, activations: their list order means nothing),
  a ``TransitionChoice`` (ordered) where every choice is a number;
- seeded through the parametrization's ``RandomState``; the saved state is the optimizer
  itself (it pickles), with the candidates of the trials still running;
- ``budget`` (the sweep's trials) and ``max_concurrent`` (Nevergrad's ``num_workers``) reach
  the optimizer, so NGOpt chooses for the run it is in (without ``max_concurrent`` it plans for
  ``WORKERS``); batch suggestions are asks made before the tells, up to ``num_workers`` at
  once, then "nothing now" until a result returns (a sequential optimizer, NGOpt's COBYLA,
  would wait forever for a tell in its second ask);
- Nevergrad has no failed state: a failed trial, NaN, inf or junk is told as the worst finite
  loss so far (Nevergrad's own ceiling, 5e20, while there is none);
- a conditional space is searched flat: each trial holds the parameters that apply, the
  optimizer moves the others too, with no effect until they apply;
- several objectives or constraints are refused by the sweep's checks (one line): Nevergrad's
  multi-objective mode is not wired here.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.errors import UserError
from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._kinds import ordered
from raytune_hpo.searchers._library import LibraryAdapter
from raytune_hpo.sweep.space import CategoricalParam, FloatParam, IntParam, SearchSpace

INSTALL_HINT = "searcher 'ngopt' needs Nevergrad: pip install -e '.[nevergrad]' in the checkout"
DEFAULT = "NGOpt"
WORKERS = 8  # trials at once Nevergrad plans for when the sweep sets no max_concurrent
BUDGET = 100  # trials it plans for without a budget (NGOpt needs one with several workers)


def _nevergrad():
    try:
        import nevergrad
        from nevergrad.optimization import metamodel
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    if "float" not in vars(metamodel):
        metamodel.float = _scalar  # see _scalar
    return nevergrad


def _scalar(x: Any) -> float:
    """``float`` for Nevergrad 1.0.12's meta-models, which call it on a model's prediction of
    shape (1,): NumPy 2 refuses that (TypeError), so NGOpt failed with 4 workers in 5-D. Set as
    the name ``float`` in ``nevergrad.optimization.metamodel`` on first use; the same value
    wherever the built-in took the argument."""
    if isinstance(x, np.ndarray) and x.size == 1:
        return float(x.reshape(-1)[0])
    return float(x)


def parametrization(space: SearchSpace, seed: int | None):
    """A Nevergrad ``Dict`` of the space's parameters, by library name, seeded."""
    ng = _nevergrad()
    out = {}
    for name, p in zip(space.library_names, space.params.values(), strict=True):
        if isinstance(p, CategoricalParam):
            kind = ng.p.TransitionChoice if ordered(p) else ng.p.Choice
            out[name] = kind(list(range(len(p.choices))))
            continue
        if not isinstance(p, (FloatParam, IntParam)):
            raise TypeError(f"no Nevergrad parameter for {type(p).__name__}")
        low, high = float(p.low), float(p.high)
        scalar = ng.p.Log(lower=low, upper=high) if p.log else ng.p.Scalar(lower=low, upper=high)
        out[name] = scalar.set_integer_casting() if isinstance(p, IntParam) else scalar
    param = ng.p.Dict(**out)
    param.random_state = np.random.RandomState(seed)
    return param


class NevergradSearch(LibraryAdapter, Searcher):
    """A Nevergrad optimizer (``NGOpt``, or one named by ``optimizer``) as a Ray Tune searcher.

    Args:
        space, metric, mode, points_to_evaluate: as for ``UnitCubeSearcher``.
        seed: seeds the parametrization's random state.
        optimizer: a name of ``nevergrad.optimizers.registry`` (``NGOpt``).
        budget: the trials the optimizer plans for (the sweep's ``num_samples``; None:
            ``BUDGET``).
        max_concurrent: trials at once (Nevergrad's ``num_workers``; None: ``WORKERS``).
    """

    _saved = ("_name", "_seed", "_budget", "_workers", "_optimizer", "_asked")

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        optimizer: str = DEFAULT,
        budget: int | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        ng = _nevergrad()
        if not isinstance(optimizer, str) or optimizer not in ng.optimizers.registry:
            some = "NGOpt, CMA, TwoPointsDE, PSO, Cobyla, DiscreteLenglerOnePlusOne, RandomSearch"
            raise UserError(
                f"unknown Nevergrad optimizer {optimizer!r}; allowed: a name of "
                f"nevergrad.optimizers.registry ({some}, ...)",
                field="optimizer",
            )
        if budget is not None:
            check.integer("budget", budget, 1)
        if max_concurrent is not None:
            check.integer("max_concurrent", max_concurrent, 1)
        super().__init__(space, metric, mode, points_to_evaluate=points_to_evaluate)
        self._name, self._seed, self._budget = optimizer, seed, budget or BUDGET
        self._workers = max_concurrent or WORKERS
        self._optimizer: Any = None  # built once the space is known
        self._asked: dict[str, Any] = {}  # trial id -> its Nevergrad candidate
        self._maybe_setup()

    @property
    def optimizer(self):
        """Nevergrad's optimizer (None until the space is known)."""
        return self._optimizer

    def _maybe_setup(self) -> None:
        if self._optimizer is not None or self.space is None:
            return
        ng = _nevergrad()
        param = parametrization(self.space, self._seed)
        cls = ng.optimizers.registry[self._name]
        self._optimizer = cls(parametrization=param, budget=self._budget, num_workers=self._workers)

    def chosen(self) -> str:
        """The optimizer NGOpt (or another selector) runs, else the one named."""
        opt = self._optimizer
        select = getattr(opt, "_select_optimizer_cls", None)
        if select is None:
            return self._name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = getattr(opt, "optim", None)
        return type(inner).__name__ if inner is not None else self._name

    def suggest(self, trial_id: str) -> dict | None:
        self._ready()
        if len(self._asked) >= self._workers:
            return None  # as many out as the optimizer plans for: wait for a result
        point = self._user_points.pop(0) if self._user_points else None
        with warnings.catch_warnings():  # Nevergrad warns about its own choices per call
            warnings.simplefilter("ignore")
            if point is not None:
                self._optimizer.suggest(self._full(point))
            candidate = self._optimizer.ask()
        self._asked[trial_id] = candidate
        if point is not None:  # the values as given (Nevergrad's log transform rounds them)
            self._track(trial_id, self._space.to_unit(point))
            return self._space.nest(self._space.path_values(point))
        return self._decoded(trial_id, self._flat(candidate.value))

    def _full(self, config: dict[str, Any]) -> dict[str, Any]:
        """A configuration as Nevergrad's value: every parameter by library name, one that
        does not apply at the centre of its range (Nevergrad's Dict wants them all)."""
        values = self._space.path_values(config)
        return {
            name: p.to_library(values[path] if path in values else p.from_unit(0.5))
            for name, (path, p) in zip(
                self._space.library_names, self._space.params.items(), strict=True
            )
        }

    def _flat(self, value: dict[str, Any]) -> dict[str, Any]:
        """Nevergrad's values as library values (numpy scalars as Python numbers)."""
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in value.items()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        worst = self._worst_finite()
        loss = self._finish(trial_id, result, error)
        candidate = self._asked.pop(trial_id, None)
        if loss is None or candidate is None:
            return  # unknown or repeated trial id
        if not math.isfinite(loss):
            loss = worst if worst is not None else math.inf  # Nevergrad clips inf to 5e20
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._optimizer.tell(candidate, loss)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """An earlier result (warm start) told to the optimizer as a candidate it did not ask
        (failed or NaN: the worst finite loss so far)."""
        worst = self._worst_finite()
        _, loss = self._prior_point(parameters, value, error)
        self._maybe_setup()
        if not math.isfinite(loss):
            loss = worst if worst is not None else math.inf
        param = self._optimizer.parametrization
        candidate = param.spawn_child(new_value=self._full(parameters))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._optimizer.tell(candidate, loss)


__all__ = ["NevergradSearch", "parametrization"]
