"""Model-based searchers from Optuna, driven through its ask-and-tell interface.

- ``GPSearch`` (``bayesopt``): Gaussian-process Bayesian optimization, Optuna's ``GPSampler``
  (a Matern-5/2 GP with log expected improvement that handles float, int and categorical
  parameters), after ``n_initial_points`` random points: 10, GPSampler's own default, so that
  ``bayesopt`` suggests exactly what GPSampler used directly suggests (same seed). The 5
  random points of 25 in Bartoli & Erpichini, "Hyperparameters tuning for CNN based on global
  optimization", remain an option; at 60 evaluations on Hartmann-6 they gave about 3x the
  regret (scripts/bench_searchers.py).
- ``TPESearch`` (``tpe``): the tree-structured Parzen estimator (Bergstra et al., NeurIPS 2011).
- ``NSGA2Search`` (``nsga2``): NSGA-II (Deb et al., 2002, "A fast and elitist multiobjective
  genetic algorithm: NSGA-II"), Optuna's ``NSGAIISampler``; one objective or several.

Several objectives and constraints (``objectives``, the sweep's ``Objectives``): the study has
one direction per objective and is told every objective's value (``tell(trial, [v1, v2])``);
its metric names are the objectives' (``set_metric_names``: the dashboard labels them).
Constraints reach the samplers as Optuna's constraint values (<= 0 feasible; one per bound,
named by it, ``params_m <= 1.5``, relative to the bound's size), set on the trial before it is
told (``Trial.set_constraint``: Optuna 5.0's successor of ``constraints_func``, which it
deprecates; the samplers read the same values, c-TPE, constrained logEI/logEHVI, NSGA-II's
constrained domination). A result without one of the objectives or constrained metrics, or
with a constrained metric not finite, is a ``FAIL`` trial; an objective NaN, inf or junk is
told as the worst finite value of that objective so far (as for one objective).

Each suggestion is ``Study.ask`` over the space's Optuna distributions, each result a
``Study.tell``. A trial that failed (``error=True``) is a ``FAIL`` trial of the study, as in
Ray's ``OptunaSearch``: the samplers leave it out rather than learn a crash as a score. A NaN,
inf or junk result of a trial that did not fail is told as the worst finite value seen so far
(as a failed trial while there is none), so the model learns to avoid it. Earlier results told
through ``add_evaluated_point`` (warm start) join the study the same way (``Study.add_trial``):
``error=True`` as ``FAIL``, ``pruned=True`` as ``PRUNED`` with its intermediate values (one per
step from 0, the finite ones), the others as ``COMPLETE``.

A conditional space is asked define-by-run: ``Study.ask()`` and then one ``suggest_*`` per
parameter that applies, parents first, so a trial holds exactly the active parameters and the
samplers see the real structure (TPE, multivariate, with ``group=True``: Optuna's
decomposition of the space into the groups of parameters that occur together; GPSampler models
the parameters every trial holds and draws the others independently, as Optuna does).

``storage`` (an RDB URL such as ``sqlite:///sweep.db``) keeps the study in a database, where
``optuna-dashboard sqlite:///sweep.db`` can watch it live; ``study_name`` names it (a sweep
names it after its run). A study of that name that exists already is continued: its trials
inform the sampler too.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from raytune_hpo.errors import UserError
from raytune_hpo.searchers._library import LibraryAdapter
from raytune_hpo.searchers._optuna_pickle import mend, picklable
from raytune_hpo.sweep.space import SearchSpace, library_name

if TYPE_CHECKING:
    from raytune_hpo.objectives import Objectives

DEFAULT_STUDY = "optuna"  # the study's name without study_name (Ray's OptunaSearch's too)


class _OptunaAdapter(LibraryAdapter, Searcher):
    """An Optuna study over our ``SearchSpace`` with the searcher contract on top."""

    _saved = ("_sampler", "_storage_url", "_study_name", "_study", "_asked", "_objectives")
    _derived = ("_distributions",)
    _state_version = 2  # 2: _objectives (several objectives and constraints)
    _added = {"_objectives": (2, None)}

    def __init__(
        self, space, metric, mode, sampler, points_to_evaluate, storage, study_name, objectives
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial else
        _check_storage(storage, study_name)
        super().__init__(space, metric, mode, points_to_evaluate=points_to_evaluate)
        self._sampler = picklable(sampler)
        self._storage_url = storage
        self._study_name = study_name
        # The study's direction is fixed when it is created, so it waits for the mode (which
        # the Tuner may only give through set_search_properties); so does the database.
        self._study: Any = None
        self._asked: dict[str, int] = {}  # trial id -> the number of its Optuna trial
        self._distributions: dict[str, Any] = {}
        # Several objectives or constraints (None: the one metric and mode).
        self._objectives: Objectives | None = (
            objectives if objectives is not None and objectives.ranked else None
        )
        self._maybe_setup()

    @property
    def study(self):
        """The ``optuna.Study`` (None until the space, metric and mode are known)."""
        return self._study

    def _maybe_setup(self) -> None:
        if self._study is not None or self.space is None or not self._mode:
            return
        import optuna

        self._distributions = self.space.to_optuna()
        storage = optuna.storages.RDBStorage(self._storage_url) if self._storage_url else None
        modes = self._objectives.modes if self._objectives else (self._mode,)
        self._study = optuna.create_study(
            storage=storage,
            sampler=self._sampler,
            pruner=optuna.pruners.NopPruner(),
            study_name=self._study_name or DEFAULT_STUDY,
            directions=["minimize" if m == "min" else "maximize" for m in modes],
            load_if_exists=True,
        )
        if self._objectives is not None:
            with warnings.catch_warnings():  # experimental in Optuna; used on purpose
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._study.set_metric_names(list(self._objectives.metrics))
        for point in self._encoded_points():
            self._study.enqueue_trial(point)

    def _restored(self) -> None:
        self._distributions = self.space.to_optuna() if self.space is not None else {}
        mend(self._sampler)

    def _library_value(self, loss: float, worst: float | None) -> float | None:
        """The value Optuna is told, in the study's direction: NaN/inf/failed count as the
        worst finite loss so far, or as a failed trial while there is none."""
        if not math.isfinite(loss):
            if worst is None:
                return None
            loss = worst
        return loss if self._mode != "max" else -loss

    def suggest(self, trial_id: str) -> dict | None:
        self._ready()
        if self._space.conditional:  # define-by-run: the parameters that apply, parents first
            trial = self._study.ask()
            self._space.walk(lambda path, p: p.from_library(self._suggest(trial, path)))
        else:
            trial = self._study.ask(self._distributions)
        self._asked[trial_id] = trial.number
        return self._decoded(trial_id, trial.params)

    def _suggest(self, trial: Any, path: tuple[str, ...]) -> Any:
        """``trial``'s value of one parameter, through Optuna's ``suggest_*``."""
        import optuna.distributions as od

        name = library_name(path)
        d = self._distributions[name]
        if isinstance(d, od.CategoricalDistribution):
            return trial.suggest_categorical(name, d.choices)
        if isinstance(d, od.IntDistribution):
            return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        from optuna.trial import TrialState

        worst = self._worst_finite()
        loss = self._finish(trial_id, result, error)
        number = self._asked.pop(trial_id, None)
        if loss is None or number is None:
            return  # unknown or repeated trial id
        if self._objectives is not None:
            self._tell_all(number, result, error)
            return
        value = None if error else self._library_value(loss, worst)
        if value is None:
            self._study.tell(number, state=TrialState.FAIL)
        else:
            self._study.tell(number, value)

    def _told(self, result: dict | None, error: bool) -> tuple[list[float], dict] | None:
        """Every objective's value (in its own direction) and the constraint values of a
        result; None for a failed trial (one of them missing, a constraint value not finite)."""
        if error or not result:
            return None
        objectives = self._ranked()
        values = []
        for metric, worst in zip(objectives.metrics, self._worst_values(), strict=True):
            if metric not in result:
                return None
            v = _number(result[metric])
            if not math.isfinite(v):
                if worst is None:
                    return None
                v = worst
            values.append(v)
        bounds: dict[str, float] = {}
        for c in objectives.constraints:
            bounds.update(c.signed(result.get(c.metric)))
        if not all(math.isfinite(v) for v in bounds.values()):
            return None
        return values, bounds

    def _ranked(self) -> Objectives:
        """The objectives and constraints (kept only when trials are ranked by them)."""
        if self._objectives is None:
            raise RuntimeError(f"{type(self).__name__}: one metric and mode, no objectives")
        return self._objectives

    def _worst_values(self) -> list[float | None]:
        """Each objective's worst finite value among the study's finished trials."""
        from optuna.trial import TrialState

        done = self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        out: list[float | None] = []
        for i, mode in enumerate(self._ranked().modes):
            seen = [t.values[i] for t in done if t.values and math.isfinite(t.values[i])]
            out.append(None if not seen else (max(seen) if mode == "min" else min(seen)))
        return out

    def _tell_all(self, number: int, result: dict | None, error: bool) -> None:
        """Tell trial ``number`` every objective, its constraint values set on it first."""
        import optuna
        from optuna.trial import TrialState

        told = self._told(result, error)
        if told is None:
            self._study.tell(number, state=TrialState.FAIL)
            return
        values, bounds = told
        # The trial of that number, as Study.tell itself finds it from a number.
        study = self._study
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        trial = optuna.trial.Trial(study, trial_id)
        for key, v in bounds.items():
            trial.set_constraint(key, v)
        study.tell(trial, values)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
        *,
        result: dict | None = None,
    ) -> None:
        """An earlier result (warm start) joins the study: failed (``error``) as a FAIL trial,
        ``pruned`` as a PRUNED one with its intermediate values, else finished; NaN counts as
        the worst finite value seen (a failed trial while there is none). With several
        objectives or constraints, ``result`` holds its reported metrics (every objective and
        constrained metric; only ``value``, the first objective's, when it is None); a pruned
        trial is then told as finished with them (Optuna prunes no multi-objective trial)."""
        import optuna
        from optuna.trial import TrialState

        self._maybe_setup()
        if self._objectives is not None:
            self._prior_point(parameters, value, error)
            if result is None:
                result = None if value is None else {self._metric: value}
            self._study.add_trial(self._earlier(parameters, self._told(result, error)))
            return
        worst = self._worst_finite()
        _, loss = self._prior_point(parameters, value, error)
        told = None if error else self._library_value(loss, worst)
        if pruned and not error:
            state = TrialState.PRUNED
        else:
            state = TrialState.FAIL if told is None else TrialState.COMPLETE
        steps = {i: float(v) for i, v in enumerate(intermediate_values or []) if _finite(v)}
        params = self._space.to_library(parameters)  # the active ones
        trial = optuna.trial.create_trial(
            state=state,
            value=told,
            params=params,
            distributions={name: self._distributions[name] for name in params},
            intermediate_values=steps or None,
        )
        self._study.add_trial(trial)

    def _earlier(self, parameters: dict, told: tuple[list[float], dict] | None) -> Any:
        """An earlier trial of several objectives as a finished (or failed) Optuna trial."""
        import optuna
        from optuna.trial import TrialState

        params = self._space.to_library(parameters)  # the active ones
        return optuna.trial.create_trial(
            state=TrialState.FAIL if told is None else TrialState.COMPLETE,
            values=None if told is None else told[0],
            constraints=None if told is None else told[1] or None,
            params=params,
            distributions={name: self._distributions[name] for name in params},
        )


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


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


def _conditional(space: Any) -> bool:
    """Whether the constructor's space (a SearchSpace or its dict form) has conditions."""
    from raytune_hpo.searchers._contract import as_space

    given = as_space(space)
    return given is not None and given.conditional


def _check_initial(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise UserError(f"must be an integer, got {n!r}", field="n_initial_points")
    if n < 1:
        raise UserError(f"must be >= 1, got {n}", field="n_initial_points")


class GPSearch(_OptunaAdapter):
    """GP Bayesian optimization (Optuna's GPSampler) after ``n_initial_points`` random ones.

    Args:
        space, metric, mode, points_to_evaluate: as for ``UnitCubeSearcher``.
        seed: the sampler's seed.
        n_initial_points: random points before the GP proposes (10, GPSampler's own).
        storage: an RDB URL (``sqlite:///studies.db``) that keeps the study; None: in memory.
        study_name: the study's name in ``storage`` (an existing one is continued).
        objectives: several objectives or constraints (``raytune_hpo.objectives.Objectives``;
            the sweep gives them): one direction per objective, constraints as Optuna's.
    """

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
        objectives: Objectives | None = None,
    ) -> None:
        import optuna

        _check_initial(n_initial_points)
        options: dict[str, Any] = (
            {"warn_independent_sampling": False} if _conditional(space) else {}
        )
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_initial_points, **options)
        super().__init__(
            space, metric, mode, sampler, points_to_evaluate, storage, study_name, objectives
        )


class TPESearch(_OptunaAdapter):
    """Tree-structured Parzen estimator (Optuna's TPESampler).

    Args:
        space, metric, mode, points_to_evaluate: as for ``UnitCubeSearcher``.
        seed: the sampler's seed.
        n_initial_points: random points before the model proposes (10).
        multivariate: one joint density over the parameters instead of one per parameter
            (True; Falkner et al.'s multivariate TPE; in a conditional space one per group of
            parameters that occur together).
        storage: an RDB URL (``sqlite:///studies.db``) that keeps the study; None: in memory.
        study_name: the study's name in ``storage`` (an existing one is continued).
        objectives: several objectives or constraints (``raytune_hpo.objectives.Objectives``;
            the sweep gives them): one direction per objective, constraints as Optuna's.
    """

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
        objectives: Objectives | None = None,
    ) -> None:
        import optuna

        _check_initial(n_initial_points)
        # A conditional space: Optuna's grouped multivariate TPE (an experimental argument of
        # Optuna's, used on purpose: its warning is not the user's to act on).
        group = bool(multivariate) and _conditional(space)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=n_initial_points,
                multivariate=bool(multivariate),
                group=group,
            )
        super().__init__(
            space, metric, mode, sampler, points_to_evaluate, storage, study_name, objectives
        )


__all__ = ["GPSearch", "TPESearch"]
