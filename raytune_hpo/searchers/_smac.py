"""SMAC3's hyperparameter-optimization facade (Lindauer et al., "SMAC3: A versatile Bayesian
optimization package for hyperparameter optimization", JMLR 2022): a random forest over the
configurations tried, expected improvement maximised by local and random search, a Sobol'
initial design, driven through its ask-and-tell interface.

SMAC3 rather than HEBO: SMAC3 2.4 installs here beside what the project pins (pip adds dask,
pynisher, emcee and a few small packages), while HEBO 0.3.6 would downgrade numpy to 1.24,
pandas to 2.3 and scipy to 1.12.

- the space is our ``SearchSpace`` as a ConfigSpace under its library names (categoricals as
  the index of their choice), with its conditions: SMAC proposes the active parameters only;
- the forest is the facade's (10 trees, log-transformed costs, every feature per split), fitted
  on one thread and without a cap on its leaves: the facade's ``n_jobs=-1`` polls threads,
  and its cap of 2^20 leaves makes scikit-learn allocate for them, about 0.35 s per tree here;
- a failed trial is told as ``CRASHED`` with the worst finite cost so far (SMAC's forest takes
  no infinite cost; one that fails before any finite cost is told when the first arrives);
  NaN, inf or junk as the worst finite cost so far, a failure while there is none;
- ``budget`` (the sweep's trials) sizes the initial design as the facade does (10 per
  parameter, at most a quarter of the budget); batch suggestions are asks before the tells;
- SMAC's state holds generators and does not pickle: the saved state is the seed, the options
  and the sequence of asks and tells, which a restore replays into a new SMAC (it is
  deterministic given them), so a restore takes as long as the suggestions so far;
- SMAC writes its run to a folder when it starts: a temporary one, removed at once;
- several objectives or constraints are refused by the sweep's checks (one line).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from raytune_hpo.errors import UserError
from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._library import LibraryAdapter
from raytune_hpo.sweep.space import SearchSpace

INSTALL_HINT = "searcher 'smac' needs SMAC3: pip install -e '.[smac]' in the checkout"
DEFAULT_BUDGET = 100  # the trials SMAC plans for when the sweep does not say


def _smac():
    try:
        import smac
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    logging.getLogger("smac").setLevel(logging.WARNING)
    return smac


class SMACSearch(LibraryAdapter, Searcher):
    """SMAC3's random-forest Bayesian optimization (``HyperparameterOptimizationFacade``).

    Args:
        space, metric, mode, points_to_evaluate: as for ``UnitCubeSearcher``.
        seed: SMAC's seed (0 when None: SMAC needs one).
        budget: the trials SMAC plans for (the sweep's ``num_samples``; 100 when None).
    """

    _saved = ("_seed", "_budget", "_log")
    _derived = ("_facade", "_infos", "_cs", "_waiting", "_worst")

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        budget: int | None = None,
    ) -> None:
        _smac()
        if budget is not None:
            check.integer("budget", budget, 1)
        super().__init__(space, metric, mode, points_to_evaluate=points_to_evaluate)
        self._seed = int(seed or 0)
        self._budget = budget or DEFAULT_BUDGET
        # What SMAC was asked and told, in order: ("ask", id), ("given", id, library values),
        # ("tell", id, cost or None for a crash); a restore replays it.
        self._log: list[tuple] = []
        self._facade: Any = None
        self._infos: dict[str, Any] = {}  # trial id -> SMAC's TrialInfo
        self._cs: Any = None
        self._waiting: list[str] = []  # failed before any finite cost: told after the first
        self._worst: float | None = None  # the worst finite cost told
        self._maybe_setup()

    def _maybe_setup(self) -> None:
        if self._facade is None and self.space is not None:
            self._build()

    def _build(self) -> None:
        from smac import HyperparameterOptimizationFacade as HPO
        from smac import Scenario
        from smac.model.random_forest import RandomForest

        _smac()
        self._cs = self._space.to_configspace(seed=self._seed)
        where = tempfile.mkdtemp(prefix="raytune-hpo-smac-")
        try:
            scenario = Scenario(
                self._cs,
                deterministic=True,
                n_trials=self._budget,
                seed=self._seed,
                output_directory=Path(where) / "smac",  # SMAC joins a Path onto it
            )
            model = RandomForest(  # the facade's forest (get_model), one thread, no leaf cap
                self._cs,
                log_y=True,
                n_trees=10,
                ratio_features=1.0,
                min_samples_split=2,
                min_samples_leaf=1,
                max_depth=2**20,
                # SMAC annotates int; its forest (scikit-learn's) takes None: no cap.
                max_leaf_nodes=None,  # type: ignore[arg-type]
                bootstrapping=True,
                seed=self._seed,
                n_jobs=1,
            )
            self._facade = HPO(
                scenario, _never_called, model=model, overwrite=True, logging_level=False
            )
        finally:
            shutil.rmtree(where, ignore_errors=True)
        self._infos, self._waiting, self._worst = {}, [], None

    def _restored(self) -> None:
        """A new SMAC with the saved seed, asked and told what the saved one was."""
        self._facade = None
        if self.space is None:
            return
        self._build()
        for event in self._log:
            self._replay(event)

    def _replay(self, event: tuple) -> None:
        from smac.runhistory import TrialInfo, TrialValue
        from smac.runhistory.enumerations import StatusType

        kind, trial_id = event[0], event[1]
        if kind == "ask":
            self._infos[trial_id] = self._facade.ask()
        elif kind == "given":
            from ConfigSpace import Configuration

            config = Configuration(self._cs, values=event[2])
            self._infos[trial_id] = TrialInfo(config=config, seed=self._seed)
        elif event[2] is None:
            if self._worst is None:  # a crash, and no finite cost to score it with yet
                self._waiting.append(trial_id)
            else:
                self._tell(trial_id, TrialValue(cost=self._worst, status=StatusType.CRASHED))
        else:
            cost = float(event[2])
            self._worst = cost if self._worst is None else max(self._worst, cost)
            self._tell(trial_id, TrialValue(cost=cost))
            for waiting in self._waiting:
                self._tell(waiting, TrialValue(cost=self._worst, status=StatusType.CRASHED))
            self._waiting = []

    def _tell(self, trial_id: str, value: Any) -> None:
        self._facade.tell(self._infos.pop(trial_id), value, save=False)

    def suggest(self, trial_id: str) -> dict | None:
        self._ready()
        event: tuple[Any, ...]
        if self._user_points:
            event = ("given", trial_id, self._space.to_library(self._user_points.pop(0)))
        else:
            event = ("ask", trial_id)
        self._replay(event)
        self._log.append(event)
        info = self._infos[trial_id]
        flat = {k: _plain(v) for k, v in dict(info.config).items()}
        return self._decoded(trial_id, flat)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        worst = self._worst_finite()
        loss = self._finish(trial_id, result, error)
        if loss is None or trial_id not in self._infos:
            return  # unknown or repeated trial id
        if error or (not math.isfinite(loss) and worst is None):
            cost = None  # CRASHED
        else:
            cost = loss if math.isfinite(loss) else worst
        event: tuple = ("tell", trial_id, cost)
        self._replay(event)
        self._log.append(event)


def _never_called(config, seed: int = 0) -> float:
    """SMAC's facade wants a target function; ask and tell never call it."""
    raise RuntimeError("SMAC's target function is driven through ask and tell")


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


__all__ = ["SMACSearch"]
