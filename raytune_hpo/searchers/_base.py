"""``UnitCubeSearcher``: the base of our own algorithms.

A subclass proposes points of the unit cube [0, 1]^d (``_propose``) and learns from finished
trials (``_observe``); this base maps points to configurations through the ``SearchSpace``,
serves ``points_to_evaluate`` first, tells earlier results (``add_evaluated_point``, a warm
start) to the algorithm before its first proposal (``_warm``); its randomness is one seeded
``numpy.random.Generator`` (no global RNG). A subclass names the attributes it saves in
``_saved`` and those ``_rebuild`` makes again after a restore in ``_derived``. The rest of the
contract (metric/mode, the space, scoring, unknown ids, the versioned state) is
``SearcherContract``, shared with the library adapters.

Several objectives or constraints (``objectives``, for the subclasses that take them): each
result becomes a row of ``raytune_hpo.objectives.scalarise`` (every objective's loss and the
violation), kept with its unit point (``evaluations``) and handed to ``_observe``/``_warm`` as
``row``; the subclass scores rows with ``self._scal`` under the weights it chooses. The loss
recorded as the observation is the row scored with equal weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.names import BUDGET_ATTR
from raytune_hpo.searchers._contract import Rows, SearcherContract, as_space, loss_of, set_up
from raytune_hpo.sweep.space import SearchSpace

if TYPE_CHECKING:
    from raytune_hpo.objectives import Objectives
    from raytune_hpo.objectives.scalarise import Scalarisation

_Rows = Rows  # the name our algorithms import
# The trial id under which earlier results (warm start) reach ``_observe``.
WARM_TRIAL = "warm-start"


class UnitCubeSearcher(SearcherContract, Searcher):
    """Base of the unit-cube searchers. Constructor as the project fixes it:
    ``Cls(space=None, metric=None, mode=None, *, seed=None, points_to_evaluate=None, **opts)``.

    Args:
        space: a ``SearchSpace`` or its dict form; None: the Tuner's ``param_space``.
        metric, mode: what to optimise (``min`` or ``max``); None: the Tuner's.
        seed: seeds the one ``numpy.random.Generator`` the algorithm draws from.
        points_to_evaluate: configurations suggested first, in order.
    """

    _saved: ClassVar[tuple[str, ...]] = (
        *("_rng", "_ready", "_across_budgets", "_budget_losses", "_scal", "_rows"),
    )
    _state_version = 2  # 2: several objectives (_scal, _rows)
    _added = {"_scal": (2, None), "_rows": (2, None)}

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        objectives: Objectives | None = None,
    ) -> None:
        super().__init__(space, metric, mode, points_to_evaluate=points_to_evaluate)
        self._rng = np.random.default_rng(seed)
        self._ready = False
        self._across_budgets = False
        self._budget_losses: list[tuple[float, Any]] = []
        # Several objectives or constraints: their scalarisation.
        self._scal: Scalarisation | None = None
        if objectives is not None and objectives.ranked:
            from raytune_hpo.objectives.scalarise import Scalarisation

            self._scal = Scalarisation(objectives)
        # Several objectives: the rows of the earlier results, then of the completed trials.
        self._rows: dict[str, list[np.ndarray]] | None = None
        if self._scal is not None:
            self._rows = {"prior": [], "observed": []}

    # ------------------------------------------------------------------ Tune hooks
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self._merge_properties(metric, mode, config)

    # Ray annotates suggest as Optional[Dict] while its docstring (and Tune) take FINISHED, a str.
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        space = self._require_space()
        if not self._ready:
            self._setup()
            self._ready = True
            for k, (u, loss) in enumerate(zip(*self.prior, strict=True)):
                if self._scal is None:
                    self._warm(u, loss)
                else:
                    self._warm(u, loss, row=self._several()[1]["prior"][k])
        if self._user_points:
            point = self._user_points.pop(0)
            self._track(trial_id, space.to_unit(point))
            return space.nest(space.path_values(point))
        u = self._propose(trial_id)
        if u is None or isinstance(u, str):
            return u  # None: nothing to run right now; FINISHED: the algorithm is done
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        self._track(trial_id, u)
        return self._config_for(trial_id, u)

    def set_early_stopping(self, enabled: bool = True) -> None:
        """Under a scheduler that stops trials early (ASHA, median stopping, HyperBand), a
        trial's last result is measured at the budget it reached. Then a trial stopped at
        budget b is learnt as no better than the worst trial that went past b: the scheduler
        kept those because they were better at b, and their losses at more epochs are no
        measure to compare a short trial's with (Li et al., 2020, on ASHA's rungs)."""
        self._across_budgets = enabled

    def _comparable(self, result: dict | None, loss: float) -> float:
        if not self._across_budgets:
            return loss
        budget = float((result or {}).get(BUDGET_ATTR, 0))
        further = [x for b, x in self._budget_losses if b > budget and math.isfinite(x)]
        self._budget_losses.append((budget, loss))
        return max(loss, max(further)) if further else loss

    def _comparable_row(self, result: dict | None, row: np.ndarray) -> np.ndarray:
        """``_comparable`` for several objectives: each column no better than the worst of the
        trials that went past the budget this one reached."""
        from raytune_hpo.objectives.scalarise import no_better_than

        if not self._across_budgets:
            return row
        budget = float((result or {}).get(BUDGET_ATTR, 0))
        further = [r for b, r in self._budget_losses if b > budget]
        self._budget_losses.append((budget, row))
        return no_better_than(row, np.asarray(further)) if further else row

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        u = self._live_units.get(trial_id)
        loss = self._finish(trial_id, result, error)
        if u is None or loss is None:  # _finish: None for an unknown or repeated id
            return
        if self._scal is None:
            self._observe(trial_id, u, self._comparable(result, loss))
            return
        scal, rows = self._several()
        row = self._comparable_row(result, scal.row(result, error))
        rows["observed"].append(row)
        self._obs_y[-1] = loss = float(scal.loss(row, scal.even))
        self._observe(trial_id, u, loss, row=row)

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
        *,
        result: dict[str, Any] | None = None,
    ) -> None:
        """An earlier result (Ray's warm-start API): recorded in ``prior`` and told to the
        algorithm (``_warm``) before it proposes, or at once if it has started. A pruned
        trial's ``value`` counts as its result, as a trial stopped early by a scheduler does.
        With several objectives or constraints ``result`` holds its reported metrics (only
        ``value``, the first objective's, when it is None)."""
        u, loss = self._prior_point(parameters, value, error)
        if self._scal is None:
            if self._ready:
                self._warm(u, loss)
            return
        if result is None:
            metric, _ = self._require_metric_mode("add_evaluated_point")  # set: _prior_point
            result = None if value is None else {metric: value}
        scal, rows = self._several()
        row = scal.row(result, error)
        rows["prior"].append(row)
        self._prior_y[-1] = loss = float(scal.loss(row, scal.even))
        if self._ready:
            self._warm(u, loss, row=row)

    @property
    def evaluations(self) -> tuple[np.ndarray, np.ndarray]:
        """Several objectives: the unit points and rows of the earlier results, then of the
        completed trials."""
        (px, _), (ox, _) = self.prior, self.observations
        scal, kept = self._several()
        rows = [*kept["prior"], *kept["observed"]]
        points = [p for p in (px, ox) if len(p)]
        if not rows:
            return np.empty((0, self._space.dims)), np.empty((0, scal.width))
        return np.vstack(points), np.asarray(rows)

    def _several(self) -> tuple[Scalarisation, dict[str, list[np.ndarray]]]:
        """Several objectives: the scalarisation and the rows kept (an error with one)."""
        if self._scal is None or self._rows is None:
            raise RuntimeError(f"{type(self).__name__}: rows are kept for several objectives only")
        return self._scal, self._rows

    # ------------------------------------------------------------------ subclass API
    def _setup(self) -> None:
        """Called once the space is known, before the first proposal."""

    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        raise NotImplementedError

    def _observe(
        self, trial_id: str, u: np.ndarray, loss: float, row: np.ndarray | None = None
    ) -> None:
        """``loss``: the metric turned into a value to minimise; +inf for failed/NaN. With
        several objectives (given only to the subclasses that take them) also its ``row``."""

    def _warm(self, u: np.ndarray, loss: float, row: np.ndarray | None = None) -> None:
        """An earlier result, after ``_setup`` (``self.prior`` holds them all already then).
        By default it is observed as a finished trial the algorithm did not propose, as a
        ``points_to_evaluate`` trial is (PSO: it may become the swarm's best)."""
        if row is None:
            self._observe(WARM_TRIAL, u, loss)
        else:
            self._observe(WARM_TRIAL, u, loss, row=row)

    def _config_for(self, trial_id: str, u: np.ndarray) -> dict[str, Any]:
        return self._space.from_unit(u)

    def _rebuild(self) -> None:
        """Rebuild the ``_derived`` attributes (after ``set_state``, once set up)."""

    def _restored(self) -> None:
        if self._ready:
            self._rebuild()


class DesignSearcher(UnitCubeSearcher):
    """Base of the fixed designs (Latin hypercube, hypertiling): ``budget`` points made up
    front by ``_design_points(n)``, served in order, then ``FINISHED``. With m earlier results
    (warm start) the design has n + m points and each earlier point takes the place of the
    design point nearest to it (over the coordinates active in both), so the n left fill the
    space around what was already run."""

    _saved: ClassVar[tuple[str, ...]] = ("_budget", "_design", "_next")
    _budget: int
    _design: np.ndarray | None = None
    _next: int = 0

    def _design_points(self, n: int) -> np.ndarray:
        """``n`` points of the unit cube, in the order they are served."""
        raise NotImplementedError

    def _setup(self) -> None:
        self._design = self._placed_design()

    def _placed_design(self) -> np.ndarray:
        earlier = self.prior[0]
        design = self._design_points(self._budget + len(earlier))
        # Nearest by the active coordinates (SearchSpace.canonical): in a conditional space an
        # earlier point replaces a design point equal to it where both apply.
        placed = self._space.canonical(design)
        for u in earlier:  # each earlier point replaces the nearest design point
            i = np.argmin(((placed - self._space.canonical(u)) ** 2).sum(1))
            design, placed = np.delete(design, i, axis=0), np.delete(placed, i, axis=0)
        return design

    def _propose(self, trial_id: str) -> np.ndarray | str:
        if self._next >= self._budget:
            return Searcher.FINISHED
        self._next += 1
        return set_up(self._design, "_design")[self._next - 1]


__all__ = ["DesignSearcher", "UnitCubeSearcher", "as_space", "loss_of"]
