"""``UnitCubeSearcher``: the shared half of our searchers (the searcher contract).

A subclass proposes points of the unit cube [0, 1]^d (``_propose``) and learns from finished
trials (``_observe``); this base maps points to configurations through the ``SearchSpace``,
takes metric/mode and the space from the Tuner, keeps suggested-but-unfinished trials, treats
NaN/inf/failed results as the worst value, ignores unknown trial ids, serves
``points_to_evaluate`` first, and saves/restores its whole state (one seeded
``numpy.random.Generator``, no global RNG).
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.space import SearchSpace


def as_space(space: Any) -> SearchSpace | None:
    if space is None or isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    raise ValueError(f"space: expected a SearchSpace or a dict, got {type(space).__name__}")


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


class _Rows:
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


class UnitCubeSearcher(Searcher):
    """Base of the unit-cube searchers. Constructor as the architecture fixes it:
    ``Cls(space=None, metric=None, mode=None, *, seed=None, points_to_evaluate=None, **opts)``."""

    # Attributes rebuilt from the rest of the state instead of pickled (see _rebuild).
    _transient: tuple[str, ...] = ()

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode: got {mode!r}; allowed: min, max")
        super().__init__(metric=metric, mode=mode)
        self._space = as_space(space)
        self._own_space = self._space is not None
        self._rng = np.random.default_rng(seed)
        self._points = [dict(p) for p in (points_to_evaluate or [])]
        self._live: dict[str, np.ndarray] = {}
        self._X: _Rows | None = None
        self._y: list[float] = []
        self._ready = False
        if self._space is not None and self._space.dims == 0:
            raise ValueError("space: has no parameter to search")

    # ------------------------------------------------------------------ Tune hooks
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            if mode not in ("min", "max"):
                raise ValueError(f"mode: got {mode!r}; allowed: min, max")
            self._mode = mode
        if self._own_space:
            return False  # Ray's convention: a searcher with its own space refuses config's
        if config:
            self._space = SearchSpace.from_dict(config)
            if self._space.dims == 0:
                raise ValueError("param_space: has no parameter to search")
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._space is None:
            raise RuntimeError(
                f"{type(self).__name__}: no search space (pass space= or a Tuner param_space)"
            )
        if not self._ready:
            self._X = _Rows(self._space.dims)
            self._setup()
            self._ready = True
        if self._points:
            point = self._points.pop(0)
            u = self._space.to_unit(point)
            self._live[trial_id] = u
            values = self._space.flat_config(point).values()  # in the order of params
            return self._space.nest(dict(zip(self._space.params, values, strict=True)))
        u = self._propose(trial_id)
        if u is None or isinstance(u, str):
            return u  # None: nothing to run right now; FINISHED: the algorithm is done
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        self._live[trial_id] = u
        return self._config_for(trial_id, u)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        u = self._live.pop(trial_id, None)
        if u is None:
            return  # unknown or already completed trial: nothing to learn
        loss = self._score(result, error)
        self._X.append(u)
        self._y.append(loss)
        self._observe(trial_id, u, loss)

    # ------------------------------------------------------------------ subclass API
    def _setup(self) -> None:
        """Called once the space is known, before the first proposal."""

    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        raise NotImplementedError

    def _observe(self, trial_id: str, u: np.ndarray, loss: float) -> None:
        """``loss``: the metric turned into a value to minimise; +inf for failed/NaN."""

    def _config_for(self, trial_id: str, u: np.ndarray) -> dict[str, Any]:
        return self._space.from_unit(u)

    def _rebuild(self) -> None:
        """Rebuild the transient attributes after ``set_state``."""

    # ------------------------------------------------------------------ helpers
    def _score(self, result: dict | None, error: bool) -> float:
        return loss_of(result, self._metric, self._mode, error)

    @property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit points and losses (minimised; +inf = failed) of completed trials."""
        if self._X is None:
            return np.empty((0, 0)), np.empty(0)
        return self._X.rows, np.asarray(self._y)

    @property
    def space(self) -> SearchSpace | None:
        return self._space

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        skip = set(self._transient)
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in skip})

    def set_state(self, state: dict[str, Any]) -> None:
        # A searcher built with a space keeps that space: its categorical values stay the
        # very objects the user gave (pickling would copy them).
        own = self._space if self._own_space else None
        self.__dict__.update(copy.deepcopy(state))
        if own is not None:
            self._space = own
        if self._ready:
            self._rebuild()

    def save(self, checkpoint_path: str) -> None:
        """Write the state atomically (temp file, then rename)."""
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".searcher-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(self.get_state(), f)
            os.replace(tmp, checkpoint_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
