"""Model-based searchers from Optuna, through Ray's ``OptunaSearch``.

- ``GPSearch`` (``bayesopt``): Gaussian-process Bayesian optimization, Optuna's ``GPSampler``
  (a Matern-5/2 GP with log expected improvement that handles float, int and categorical
  parameters), after ``n_initial_points`` random points: 10, GPSampler's own default, so that
  ``bayesopt`` suggests exactly what GPSampler used directly suggests (same seed). The
  Bayesian-vs-Sobol paper's 5 random points of 25 remain an option; at 60 evaluations on
  Hartmann-6 they gave about 3x the regret (scripts/bench_searchers.py).
- ``TPESearch`` (``tpe``): the tree-structured Parzen estimator (Bergstra et al., NeurIPS 2011).

NaN, failed and junk results are told to Optuna as the worst finite value seen so far (as a
failed trial while there is none), so the model learns to avoid them; so are earlier results
told through ``add_evaluated_point`` (warm start), which join the study as finished trials.

``storage`` (an RDB URL such as ``sqlite:///sweep.db``) keeps the study in a database, where
``optuna-dashboard sqlite:///sweep.db`` can watch it live; ``study_name`` names it (a sweep
names it after its run). A study of that name that exists already is continued: its trials
inform the sampler too.
"""

from __future__ import annotations

import math

from ray.tune.search.optuna import OptunaSearch

from raytune_hpo.errors import UserError
from raytune_hpo.searchers._library import LibraryAdapter
from raytune_hpo.space import SearchSpace


class _OptunaAdapter(LibraryAdapter, OptunaSearch):
    """``OptunaSearch`` over our ``SearchSpace`` with the searcher contract on top."""

    def __init__(
        self, space, metric, mode, *, points_to_evaluate, sampler, storage, study_name
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial else
        _check_storage(storage, study_name)
        self._contract_init(space, mode, points_to_evaluate)
        # The study's direction is fixed when it is created, so it waits for the mode (which
        # the Tuner may only give through set_search_properties); so does the database.
        OptunaSearch.__init__(
            self, space=None, metric=metric, mode=mode, sampler=sampler, study_name=study_name
        )
        self._storage_url = storage
        self._maybe_setup()

    def _maybe_setup(self) -> None:
        if self._ot_study is None and self._ours is not None and self._mode:
            self._space = self._ours.to_optuna()
            self._points_to_evaluate = self._encoded_points()
            if self._storage_url and self._storage is None:
                from optuna.storages import RDBStorage

                self._storage = RDBStorage(self._storage_url)
            self._setup_study(self._mode)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """An earlier result (warm start) joins the study as a finished trial; NaN or a
        failed one counts as the worst value seen (a failed trial while there is none)."""
        self._maybe_setup()
        worst = self._worst_finite()
        _, loss = self._prior_point(parameters, value, error)
        if self._ot_study is None:
            raise RuntimeError(f"{type(self).__name__}: the study needs space, metric and mode")
        value = self._library_value(loss, worst)
        OptunaSearch.add_evaluated_point(
            self,
            self._ours.to_library(parameters),
            value,
            error=value is None,
            pruned=pruned and value is not None,
            intermediate_values=intermediate_values,
        )

    def _library_value(self, loss: float, worst: float | None) -> float | None:
        """The value Optuna is told, in the study's direction: NaN/inf/failed count as the
        worst finite loss so far, or as a failed trial while there is none."""
        if not math.isfinite(loss):
            if worst is None:
                return None
            loss = worst
        return loss if self._mode != "max" else -loss

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        adopted = self._merge_properties(metric, mode, config)
        self._maybe_setup()
        return adopted

    def suggest(self, trial_id: str) -> dict | None:
        self._require_space()
        self._maybe_setup()
        flat = OptunaSearch.suggest(self, trial_id)
        return self._decoded(trial_id, flat)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # Optuna learns from final results only (no pruner here)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        worst = self._worst_finite()
        loss = self._finish(trial_id, result, error)
        if loss is None or trial_id in self._completed_trials:
            return  # unknown or repeated trial id
        value = self._library_value(loss, worst)
        OptunaSearch.on_trial_complete(
            self, trial_id, None if value is None else {self._metric: value}, error=value is None
        )

    def restore(self, checkpoint_path: str) -> None:
        self._keep_own_space(lambda: OptunaSearch.restore(self, checkpoint_path))


def _check_storage(storage: object, study_name: object) -> None:
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise UserError(
            f"an RDB URL such as sqlite:///sweep.db or postgresql://host/db, got {storage!r}",
            field="storage",
        )
    if study_name is not None and (not isinstance(study_name, str) or not study_name.strip()):
        raise UserError(f"must be a non-empty string, got {study_name!r}", field="study_name")
    if study_name is not None and storage is None:
        raise UserError("names a study kept in a database; give storage too", field="study_name")


def _check_initial(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise UserError(f"must be an integer, got {n!r}", field="n_initial_points")
    if n < 1:
        raise UserError(f"must be >= 1, got {n}", field="n_initial_points")


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
        storage: str | None = None,
        study_name: str | None = None,
    ) -> None:
        import optuna

        _check_initial(n_initial_points)
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_initial_points)
        super().__init__(
            space,
            metric,
            mode,
            points_to_evaluate=points_to_evaluate,
            sampler=sampler,
            storage=storage,
            study_name=study_name,
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
        storage: str | None = None,
        study_name: str | None = None,
    ) -> None:
        import optuna

        _check_initial(n_initial_points)
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_initial_points, multivariate=bool(multivariate)
        )
        super().__init__(
            space,
            metric,
            mode,
            points_to_evaluate=points_to_evaluate,
            sampler=sampler,
            storage=storage,
            study_name=study_name,
        )


__all__ = ["GPSearch", "TPESearch"]
