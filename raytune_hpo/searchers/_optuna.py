"""Model-based searchers from Optuna, through Ray's ``OptunaSearch``.

- ``GPSearch`` (``bayesopt``): Gaussian-process Bayesian optimization, Optuna's ``GPSampler``
  (a Matern-5/2 GP with log expected improvement that handles float, int and categorical
  parameters), after ``n_initial_points`` random points: 10, GPSampler's own default, so that
  ``bayesopt`` suggests exactly what GPSampler used directly suggests (same seed). The
  Bayesian-vs-Sobol paper's 5 random points of 25 remain an option; at 60 evaluations on
  Hartmann-6 they gave about 3x the regret (scripts/bench_searchers.py).
- ``TPESearch`` (``tpe``): the tree-structured Parzen estimator (Bergstra et al., NeurIPS 2011).

NaN, failed and junk results are told to Optuna as the worst finite value seen so far (as a
failed trial while there is none), so the model learns to avoid them.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from raytune_hpo.searchers._library import LibraryAdapter, decode, flat_name
from raytune_hpo.space import CategoricalParam, IntParam, SearchSpace


def distributions(space: SearchSpace) -> dict[str, Any]:
    """Our space as Optuna distributions (categoricals as the index of the choice)."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for path, p in space.params.items():
        if isinstance(p, CategoricalParam):
            out[flat_name(path)] = od.CategoricalDistribution(list(range(len(p.choices))))
        elif isinstance(p, IntParam):
            out[flat_name(path)] = od.IntDistribution(p.low, p.high, log=p.log)
        else:
            out[flat_name(path)] = od.FloatDistribution(p.low, p.high, log=p.log)
    return out


class _OptunaAdapter(LibraryAdapter, OptunaSearch):
    """``OptunaSearch`` over our ``SearchSpace`` with the searcher contract on top."""

    def __init__(self, space, metric, mode, *, points_to_evaluate, sampler) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial else
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode: got {mode!r}; allowed: min, max")
        self._adapter_init(space, points_to_evaluate)
        # The study's direction is fixed when it is created, so it waits for the mode (which
        # the Tuner may only give through set_search_properties).
        OptunaSearch.__init__(self, space=None, metric=metric, mode=mode, sampler=sampler)
        self._maybe_setup()

    def _maybe_setup(self) -> None:
        if self._ot_study is None and self._ours is not None and self._mode:
            self._space = distributions(self._ours)
            self._points_to_evaluate = self._encoded_points()
            self._setup_study(self._mode)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        if self._own_space:
            self._maybe_setup()
            return False
        self._adopt(config)
        self._maybe_setup()
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if self._ours is None:
            raise RuntimeError(f"{type(self).__name__}: no search space (space= or param_space)")
        self._maybe_setup()
        flat = OptunaSearch.suggest(self, trial_id)
        return self._track(trial_id, decode(self._ours, flat))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # Optuna learns from final results only (no pruner here)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        worst = self._worst_finite()
        loss = self._finish(trial_id, result, error)
        if loss is None or trial_id in self._completed_trials:
            return  # unknown or repeated trial id
        if math.isfinite(loss):
            value = loss if self._mode != "max" else -loss
        elif worst is not None:
            value = worst if self._mode != "max" else -worst
        else:
            value = None
        OptunaSearch.on_trial_complete(
            self, trial_id, None if value is None else {self._metric: value}, error=value is None
        )

    def restore(self, checkpoint_path: str) -> None:
        self._keep_own_space(lambda: OptunaSearch.restore(self, checkpoint_path))


def _check_initial(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"n_initial_points: must be an integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n_initial_points: must be >= 1, got {n}")


class GPSearch(_OptunaAdapter):
    """GP Bayesian optimization (Optuna's GPSampler) after ``n_initial_points`` random ones."""

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        n_initial_points: int = 10,
    ) -> None:
        import optuna

        _check_initial(n_initial_points)
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_initial_points)
        super().__init__(
            space, metric, mode, points_to_evaluate=points_to_evaluate, sampler=sampler
        )


class TPESearch(_OptunaAdapter):
    """Tree-structured Parzen estimator (Optuna's TPESampler)."""

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        n_initial_points: int = 10,
        multivariate: bool = True,
    ) -> None:
        import optuna

        _check_initial(n_initial_points)
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_initial_points, multivariate=bool(multivariate)
        )
        super().__init__(
            space, metric, mode, points_to_evaluate=points_to_evaluate, sampler=sampler
        )


__all__ = ["GPSearch", "TPESearch", "distributions"]
