"""BOHB's sampler (Falkner, Klein & Hutter, ICML 2018): HpBandSter through Ray's ``TuneBOHB``.
Paired with ``HyperBandForBOHB`` in ``raytune_hpo.bohb``. ``BOHBSearch`` is ``TuneBOHB``
with our contract on top:

- the space is our ``SearchSpace`` (log, int, categorical as choice index, constants, nesting);
- metric and mode are passed explicitly (given its own space, TuneBOHB ignores the Tuner's);
- HpBandSter draws from numpy's global RNG: each call into it runs on the searcher's own,
  seeded state that is swapped in and out, so a seed fixes the sequence and save/restore
  continues it, and the caller's global RNG is left untouched;
- unknown or repeated trial ids are ignored (TuneBOHB raises ``KeyError``);
- without ``HyperBandForBOHB`` (under ``asha``, ``median`` or ``fifo``) the model learns from
  each trial's final result at the epoch it reached, instead of from bracket milestones;
- earlier results (warm start; TuneBOHB has no ``add_evaluated_point``) are told to the model
  at the budget they reached (``budget``, else one result per epoch of
  ``intermediate_values``, else budget 1), so its model of that budget starts with them.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from ray.tune.search.bohb import TuneBOHB
from ray.tune.search.bohb.bohb_search import _BOHBJobWrapper

from raytune_hpo.errors import UserError
from raytune_hpo.names import BUDGET_ATTR
from raytune_hpo.searchers._contract import loss_of
from raytune_hpo.searchers._library import LibraryAdapter
from raytune_hpo.space import SearchSpace

INSTALL_HINT = "searcher 'bohb' needs HpBandSter: pip install -e '.[bohb]' in the checkout"


class BOHBSearch(LibraryAdapter, TuneBOHB):
    """BOHB's TPE-style multi-fidelity model (HpBandSter) as a Ray Tune searcher."""

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
        for name, v in (("num_samples", num_samples), ("bandwidth_factor", bandwidth_factor)):
            if v <= 0:
                raise UserError(f"must be > 0, got {v}", field=name)
        ours = self._contract_init(space, mode, points_to_evaluate)
        self._time_attr = time_attr
        self._np_state = np.random.RandomState(seed).get_state()
        self._budget_seen: set[str] = set()
        self._last_budget: dict[str, float] = {}
        config = {
            "min_points_in_model": min_points_in_model,
            "top_n_percent": top_n_percent,
            "num_samples": num_samples,
            "random_fraction": random_fraction,
            "bandwidth_factor": bandwidth_factor,
            "min_bandwidth": min_bandwidth,
        }
        cs = ours.to_configspace(seed=seed) if ours is not None else None
        TuneBOHB.__init__(self, space=cs, bohb_config=config, metric=metric, mode=mode, seed=seed)

    @contextlib.contextmanager
    def _own_rng(self):
        saved = np.random.get_state()
        np.random.set_state(self._np_state)
        try:
            yield
        finally:
            self._np_state = np.random.get_state()
            np.random.set_state(saved)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self._space:  # built with a space (ours, or adopted before)
            self._merge_properties(metric, mode, {})
            return False
        self._merge_properties(metric, mode, config)
        self._space = self._require_space().to_configspace(seed=self._seed)
        self._setup_bohb()
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if not self._space:
            self._require_space()
        if not self._metric or not self._mode:
            raise RuntimeError("BOHBSearch: metric and mode must be set")
        limit = self._max_concurrent if self._max_concurrent > 0 else math.inf
        if len(self.running) >= limit:
            return None
        if self._user_points:
            flat = self._ours.to_library(self._user_points.pop(0))
        else:
            with self._own_rng():
                flat, _ = self.bohber.get_config(None)
        self.trial_to_params[trial_id] = dict(flat)
        self.running.add(trial_id)
        return self._decoded(trial_id, flat)

    def _tell(self, trial_id: str, loss: float, budget: float) -> None:
        params = self.trial_to_params.get(trial_id)
        if params is not None:
            with self._own_rng():
                self.bohber.new_result(_BOHBJobWrapper(loss, budget, params))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.trial_to_params:
            return
        if trial_id not in self.paused:
            self.running.add(trial_id)
        self._last_budget[trial_id] = float(result.get(self._time_attr, 1))
        budget = (result.get("hyperband_info") or {}).get("budget")
        if budget is not None:  # a HyperBandForBOHB milestone
            self._budget_seen.add(trial_id)
            self._tell(trial_id, loss_of(result, self._metric, self._mode, False), budget)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        loss = self._finish(trial_id, result, error)
        if loss is None:
            return  # unknown or repeated trial id
        if trial_id not in self._budget_seen:  # no HyperBand milestone: learn the final result
            budget = (result or {}).get(self._time_attr) or self._last_budget.get(trial_id, 1)
            self._tell(trial_id, loss, float(budget))
        self.trial_to_params.pop(trial_id, None)
        self._budget_seen.discard(trial_id)
        self._last_budget.pop(trial_id, None)
        self.paused.discard(trial_id)
        self.running.discard(trial_id)

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
        flat = self._ours.to_library(parameters)
        if budget is None and intermediate_values:
            told = [
                (loss_of({self._metric: v}, self._metric, self._mode, error), float(epoch))
                for epoch, v in enumerate(intermediate_values, start=1)
            ]
        else:
            told = [(loss, float(budget or 1))]
        with self._own_rng():
            for at_loss, at_budget in told:
                self.bohber.new_result(_BOHBJobWrapper(at_loss, at_budget, flat))

    def restore(self, checkpoint_path: str) -> None:
        self._keep_own_space(lambda: TuneBOHB.restore(self, checkpoint_path))


__all__ = ["BOHBSearch"]
