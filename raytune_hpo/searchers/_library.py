"""The half shared by our wrappers around library searchers (HpBandSter's BOHB, Optuna).

A library sees flat parameters named by dotted paths, categoricals as the index of the choice
(so any object can be a choice); ``LibraryAdapter`` maps those to our configurations and back,
scores results like ``UnitCubeSearcher`` (NaN/failed = worst), ignores unknown or repeated
trial ids, keeps ``observations`` for the contract, and keeps a searcher's own space across
``restore`` (its categorical values stay the very objects given).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from raytune_hpo.searchers._base import as_space, loss_of
from raytune_hpo.space import CategoricalParam, IntParam, SearchSpace


def flat_name(path: tuple[str, ...]) -> str:
    return ".".join(path)


def decode(space: SearchSpace, flat: Mapping[str, Any]) -> dict[str, Any]:
    """A library's flat parameters -> our nested configuration (constants included)."""
    out = {}
    for path, p in space.params.items():
        v = flat[flat_name(path)]
        if isinstance(p, CategoricalParam):
            out[path] = p.choices[int(v)]
        elif isinstance(p, IntParam):
            out[path] = int(min(max(round(float(v)), p.low), p.high))
        else:
            out[path] = float(min(max(float(v), p.low), p.high))
    return space.nest(out)


def encode(space: SearchSpace, config: Mapping[str, Any]) -> dict[str, Any]:
    """Our configuration (nested or dotted) -> the library's flat parameters."""
    flat = space.flat_config(config)
    out = {}
    for path, p in space.params.items():
        v = flat[flat_name(path)]
        if isinstance(p, CategoricalParam):
            out[flat_name(path)] = next(i for i, c in enumerate(p.choices) if c is v or c == v)
        else:
            out[flat_name(path)] = v
    return out


class LibraryAdapter:
    """Mixin for ``Searcher`` subclasses that drive a library in flat, encoded parameters."""

    def _adapter_init(
        self, space: Any, points_to_evaluate: list[dict] | None
    ) -> SearchSpace | None:
        ours = as_space(space)
        if ours is not None and ours.dims == 0:
            raise ValueError("space: has no parameter to search")
        self._ours = ours
        self._own_space = ours is not None
        self._user_points = [dict(p) for p in (points_to_evaluate or [])]
        self._obs_x: list[np.ndarray] = []
        self._obs_y: list[float] = []
        self._live_units: dict[str, np.ndarray] = {}
        return ours

    def _adopt(self, config: Mapping[str, Any]) -> SearchSpace:
        """The space from the Tuner's ``param_space`` (when none was given)."""
        ours = SearchSpace.from_dict(config)
        if ours.dims == 0:
            raise ValueError("param_space: has no parameter to search")
        self._ours = ours
        return ours

    def _encoded_points(self) -> list[dict[str, Any]]:
        return [encode(self._ours, p) for p in self._user_points]

    def _track(self, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
        self._live_units[trial_id] = self._ours.to_unit(config)
        return config

    def _finish(self, trial_id: str, result: dict | None, error: bool) -> float | None:
        """Record a completed trial; None for an unknown or repeated id (ignore it)."""
        u = self._live_units.pop(trial_id, None)
        if u is None:
            return None
        loss = loss_of(result, self._metric, self._mode, error)
        self._obs_x.append(u)
        self._obs_y.append(loss)
        return loss

    def _worst_finite(self) -> float | None:
        finite = [y for y in self._obs_y if math.isfinite(y)]
        return max(finite) if finite else None

    @property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit points and losses (minimised; +inf = failed) of completed trials."""
        if not self._obs_x:
            return np.empty((0, 0)), np.empty(0)
        return np.stack(self._obs_x), np.asarray(self._obs_y)

    def _keep_own_space(self, restore) -> None:
        own = self._ours if self._own_space else None
        restore()
        if own is not None:
            self._ours = own


__all__ = ["LibraryAdapter", "decode", "encode", "flat_name"]
