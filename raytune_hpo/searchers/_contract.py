"""The half of the searcher contract (ARCHITECTURE.md) that every searcher of ours shares,
whether it is our own algorithm (``UnitCubeSearcher``) or an adapter over a library (Optuna,
HpBandSter): metric and mode checked once, the space given or taken from the Tuner's
``param_space``, suggested-but-unfinished trials, NaN/inf/failed results scored as the worst
value, unknown or repeated trial ids ignored, ``points_to_evaluate`` kept, observations for
the contract tests, a searcher's own space kept across ``restore`` (its categorical values
stay the very objects the user gave), and earlier results told through Ray's
``add_evaluated_point`` (warm start) recorded as ``prior``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError
from raytune_hpo.space import SearchSpace

MODES = ("min", "max")


def check_mode(mode: Any) -> None:
    if mode not in (None, *MODES):
        raise UserError(f"got {mode!r}; allowed: {', '.join(MODES)}", field="mode")


def as_space(space: Any, *, where: str = "space") -> SearchSpace | None:
    """``space`` as a SearchSpace with at least one parameter (None stays None)."""
    if space is None:
        return None
    if isinstance(space, Mapping):
        space = SearchSpace.from_dict(space)
    if not isinstance(space, SearchSpace):
        raise UserError(
            f"expected a SearchSpace or a dict, got {type(space).__name__}", field=where
        )
    if space.dims == 0:
        raise UserError("has no parameter to search", field=where)
    return space


def loss_of(result: Mapping | None, metric: str | None, mode: str | None, error: bool) -> float:
    """The metric as a value to minimise; +inf for failed, missing, junk, NaN or inf results."""
    if error or not result or metric not in result:
        return math.inf
    try:
        value = float(result[metric])
    except (TypeError, ValueError):
        return math.inf
    if not math.isfinite(value):
        return math.inf  # NaN counts as the worst value
    return value if mode != "max" else -value


class Rows:
    """Append-only float matrix with amortised O(1) appends."""

    def __init__(self, cols: int) -> None:
        self._buf = np.empty((16, cols))
        self.n = 0

    def append(self, row: np.ndarray) -> None:
        if self.n == len(self._buf):
            self._buf = np.concatenate([self._buf, np.empty_like(self._buf)])
        self._buf[self.n] = row
        self.n += 1

    @property
    def rows(self) -> np.ndarray:
        return self._buf[: self.n]


class SearcherContract:
    """Mixin for ``ray.tune.search.Searcher`` subclasses; the space is ``self._ours``."""

    def _contract_init(
        self, space: Any, mode: str | None, points_to_evaluate: list[dict] | None
    ) -> SearchSpace | None:
        check_mode(mode)
        self._ours = as_space(space)
        self._own_space = self._ours is not None
        self._user_points = [dict(p) for p in (points_to_evaluate or [])]
        self._live_units: dict[str, np.ndarray] = {}
        self._obs_x: Rows | None = None
        self._obs_y: list[float] = []
        self._prior_x: Rows | None = None
        self._prior_y: list[float] = []
        return self._ours

    def _merge_properties(self, metric: str | None, mode: str | None, config: Mapping) -> bool:
        """``set_search_properties``' shared half: metric and mode fill what is unset; the
        space comes from ``config`` (the Tuner's param_space) unless the searcher has its own.
        Returns whether ``config`` was adopted (Ray's convention: False with an own space)."""
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            check_mode(mode)
            self._mode = mode
        if self._own_space:
            return False
        if config:
            self._ours = as_space(config, where="param_space")
        return True

    def _require_space(self) -> SearchSpace:
        if self._ours is None:
            raise RuntimeError(
                f"{type(self).__name__}: no search space (pass space= or a Tuner param_space)"
            )
        return self._ours

    def _track(self, trial_id: str, u: np.ndarray) -> None:
        self._live_units[trial_id] = u

    def _finish(self, trial_id: str, result: Mapping | None, error: bool) -> float | None:
        """Record a completed trial and return its loss; None for an unknown or repeated id."""
        u = self._live_units.pop(trial_id, None)
        if u is None:
            return None
        loss = loss_of(result, self._metric, self._mode, error)
        if self._obs_x is None:
            self._obs_x = Rows(len(u))
        self._obs_x.append(u)
        self._obs_y.append(loss)
        return loss

    def _prior_point(
        self, parameters: Mapping, value: float | None, error: bool
    ) -> tuple[np.ndarray, float]:
        """An earlier result (``add_evaluated_point``) as a unit point and a loss, recorded
        in ``prior``. Like Ray's own searchers, this needs the space, metric and mode."""
        space = self._require_space()
        if not self._metric or not self._mode:
            raise RuntimeError(
                f"{type(self).__name__}: metric and mode must be set before add_evaluated_point"
            )
        u = space.to_unit(parameters)
        result = None if value is None else {self._metric: value}
        loss = loss_of(result, self._metric, self._mode, error)
        if self._prior_x is None:
            self._prior_x = Rows(len(u))
        self._prior_x.append(u)
        self._prior_y.append(loss)
        return u, loss

    @property
    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit points and losses of earlier results told through ``add_evaluated_point``."""
        rows = getattr(self, "_prior_x", None)  # a state saved before warm start existed
        if rows is None:
            return np.empty((0, 0)), np.empty(0)
        return rows.rows, np.asarray(self._prior_y)

    def _worst_finite(self) -> float | None:
        seen = [*self._obs_y, *getattr(self, "_prior_y", ())]
        finite = [y for y in seen if math.isfinite(y)]
        return max(finite) if finite else None

    @property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit points and losses (minimised; +inf = failed) of completed trials."""
        if self._obs_x is None:
            return np.empty((0, 0)), np.empty(0)
        return self._obs_x.rows, np.asarray(self._obs_y)

    def _keep_own_space(self, restore) -> None:
        """Run ``restore()`` and keep a space given to the constructor (pickling would copy
        its categorical values)."""
        own = self._ours if self._own_space else None
        restore()
        if own is not None:
            self._ours = own


__all__ = ["Rows", "SearcherContract", "as_space", "check_mode", "loss_of"]
