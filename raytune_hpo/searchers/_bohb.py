"""BOHB's sampler (Falkner, Klein & Hutter, ICML 2018), as Goulas & Hocquette, "Deep Learning
Project Report" (PSO, BOHB) ran it: HpBandSter's BOHB config generator, driven through its
public interface (``get_config``, ``new_result`` with HpBandSter's ``Job``) the way Ray's
``TuneBOHB`` drives it. Paired with ``HyperBandForBOHB`` in ``raytune_hpo.plan.bohb``.

- the space is our ``SearchSpace`` (log, int, categorical as choice index, constants, nesting),
  as a ConfigSpace under the library names;
- HpBandSter draws from numpy's global RNG: each call into it runs on the searcher's own,
  seeded state that is swapped in and out, so a seed fixes the sequence and save/restore
  continues it, and the caller's global RNG is left untouched;
- unknown or repeated trial ids are ignored;
- concurrency is Ray's ``ConcurrencyLimiter``'s, as for every other searcher (``max_concurrent``
  of a sweep file, its ``batch`` mode, ``set_max_concurrency`` and a restored limiter state all
  hold). ``TuneBOHB`` limits itself instead, counting running trials only, so that trials
  ``HyperBandForBOHB`` pauses free their slot; under the limiter a paused trial keeps its slot,
  so with ``HyperBandForBOHB`` a ``max_concurrent`` below the largest bracket keeps brackets from
  filling (leave it out: the resources per trial bound the trials running at once);
- without ``HyperBandForBOHB`` (under ``asha``, ``median`` or ``fifo``) the model learns from
  each trial's final result at the epoch it reached, instead of from bracket milestones;
- earlier results (warm start) are told to the model at the budget they reached (``budget``,
  else one result per epoch of ``intermediate_values``, else budget 1), so its model of that
  budget starts with them.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.errors import UserError
from raytune_hpo.names import BUDGET_ATTR
from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._contract import loss_of
from raytune_hpo.searchers._library import LibraryAdapter
from raytune_hpo.sweep.space import SearchSpace

INSTALL_HINT = "searcher 'bohb' needs HpBandSter: pip install -e '.[bohb]' in the checkout"


class BOHBSearch(LibraryAdapter, Searcher):
    """BOHB's TPE-style multi-fidelity model (HpBandSter) as a Ray Tune searcher.

    Args:
        space, metric, mode, points_to_evaluate: as for ``UnitCubeSearcher``.
        seed: seeds the ConfigSpace and the numpy state HpBandSter draws from.
        time_attr: the result key that counts a trial's budget (``training_iteration``).
        min_points_in_model: results at a budget before BOHB models it (None: dims + 1).
        top_n_percent: the share of results the "good" density is fitted to (15, in (0, 100)).
        num_samples: candidates drawn from the model per suggestion (64).
        random_fraction: the share of suggestions drawn at random (1/3, in [0, 1]).
        bandwidth_factor: widens the density the candidates are drawn from (3).
        min_bandwidth: the smallest kernel bandwidth (1e-3).
    """

    _saved: ClassVar[tuple[str, ...]] = (
        *("_time_attr", "_seed", "_bohb_options", "_np_state", "model", "_params"),
        *("_budget_seen", "_last_budget"),
    )

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        time_attr: str = BUDGET_ATTR,
        min_points_in_model: int | None = None,
        top_n_percent: int = 15,
        num_samples: int = 64,
        random_fraction: float = 1 / 3,
        bandwidth_factor: float = 3.0,
        min_bandwidth: float = 1e-3,
    ) -> None:
        try:
            import hpbandster  # noqa: F401
        except ImportError:
            raise UserError(INSTALL_HINT) from None
        if not 0 < top_n_percent < 100:
            raise UserError(f"must be in (0, 100), got {top_n_percent}", field="top_n_percent")
        if not 0 <= random_fraction <= 1:
            raise UserError(f"must be in [0, 1], got {random_fraction}", field="random_fraction")
        check.positive("num_samples", num_samples)
        check.positive("bandwidth_factor", bandwidth_factor)
        super().__init__(space, metric, mode, points_to_evaluate=points_to_evaluate)
        self._time_attr = time_attr
        self._seed = seed
        self._np_state = np.random.RandomState(seed).get_state()
        self._bohb_options = {
            "min_points_in_model": min_points_in_model,
            "top_n_percent": top_n_percent,
            "num_samples": num_samples,
            "random_fraction": random_fraction,
            "bandwidth_factor": bandwidth_factor,
            "min_bandwidth": min_bandwidth,
        }
        self.model: Any = None  # HpBandSter's BOHB, once the space is known
        self._params: dict[str, dict[str, Any]] = {}  # trial id -> its library parameters
        self._budget_seen: set[str] = set()
        self._last_budget: dict[str, float] = {}
        self._maybe_setup()

    def _maybe_setup(self) -> None:
        if self.model is None and self.space is not None:
            from hpbandster.optimizers.config_generators.bohb import BOHB

            self.model = BOHB(self.space.to_configspace(seed=self._seed), **self._bohb_options)

    @contextlib.contextmanager
    def _own_rng(self):
        saved = np.random.get_state()
        np.random.set_state(self._np_state)
        try:
            yield
        finally:
            self._np_state = np.random.get_state()
            np.random.set_state(saved)

    def suggest(self, trial_id: str) -> dict | None:
        self._ready()
        if self._user_points:
            flat = self._space.to_library(self._user_points.pop(0))
        else:
            with self._own_rng():
                flat, _ = self.model.get_config(None)
        self._params[trial_id] = dict(flat)
        return self._decoded(trial_id, flat)

    def on_pause(self, trial_id: str) -> None:
        """HyperBandForBOHB tells a pause (through the limiter, if any): nothing to learn."""

    def on_unpause(self, trial_id: str) -> None:
        """HyperBandForBOHB tells a trial it resumes: nothing to learn."""

    def _tell(self, params: dict[str, Any], loss: float, budget: float) -> None:
        from hpbandster.core.dispatcher import Job

        job = Job(None, budget=budget, config=dict(params))
        job.result = {"loss": loss}  # a non-finite loss is HpBandSter's worst
        with self._own_rng():
            self.model.new_result(job)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        params = self._params.get(trial_id)
        if params is None:
            return
        self._last_budget[trial_id] = float(result.get(self._time_attr, 1))
        budget = (result.get("hyperband_info") or {}).get("budget")
        if budget is not None:  # a HyperBandForBOHB milestone
            self._budget_seen.add(trial_id)
            self._tell(params, loss_of(result, self._metric, self._mode, False), budget)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        loss = self._finish(trial_id, result, error)
        params = self._params.pop(trial_id, None)
        if loss is None or params is None:
            return  # unknown or repeated trial id
        if trial_id not in self._budget_seen:  # no HyperBand milestone: learn the final result
            budget = (result or {}).get(self._time_attr) or self._last_budget.get(trial_id, 1)
            self._tell(params, loss, float(budget))
        self._budget_seen.discard(trial_id)
        self._last_budget.pop(trial_id, None)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float | None,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
        *,
        budget: float | None = None,
    ) -> None:
        """An earlier result (warm start) for the model at ``budget`` (epochs trained)."""
        _, loss = self._prior_point(parameters, value, error)
        self._maybe_setup()
        flat = self._space.to_library(parameters)
        if budget is None and intermediate_values:
            told = [
                (loss_of({self._metric: v}, self._metric, self._mode, error), float(epoch))
                for epoch, v in enumerate(intermediate_values, start=1)
            ]
        else:
            told = [(loss, float(budget or 1))]
        for at_loss, at_budget in told:
            self._tell(flat, at_loss, at_budget)


__all__ = ["BOHBSearch"]
