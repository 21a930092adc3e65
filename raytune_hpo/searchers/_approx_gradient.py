"""Approximate-gradient neighbourhood search on a (non-uniform) grid, after Mahto & Chauhan
(``../shared/seeds/approximate-gradient.md``, Algorithm 1 and section 4.1).

Each dimension has a grid: its explicit ``grid`` values, else ``levels`` values spaced
linearly (log-wise for log ranges); categoricals use their choices. Start at a random grid
point; evaluate it and its 2d axis neighbours (concurrently); estimate the slope per dimension
by finite differences and also evaluate the point one step along the estimated descent
direction; move to the best of these if it improves on the centre. When nothing improves, the
centre is a local optimum: record it and restart at a random unevaluated grid point. No grid
point is evaluated twice. ``FINISHED`` when the grid is exhausted or ``max_restarts`` is hit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.searchers._base import UnitCubeSearcher
from raytune_hpo.space import CategoricalParam, FloatParam, IntParam

Index = tuple[int, ...]


def axis_values(p: Any, levels: int) -> list[Any]:
    """The grid of one parameter, sorted (categoricals keep their order)."""
    if p.grid is not None:
        return sorted(set(p.grid)) if not isinstance(p, CategoricalParam) else list(p.grid)
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    spaced = np.geomspace if p.log else np.linspace
    vals = spaced(p.low, p.high, levels)
    if isinstance(p, IntParam):
        return sorted({int(round(v)) for v in vals})
    assert isinstance(p, FloatParam)
    return [float(v) for v in vals]


class ApproxGradientSearch(UnitCubeSearcher):
    """Options: ``levels`` per dimension without explicit grid values (5), ``max_restarts``
    (None: until the grid is exhausted)."""

    _transient = ("_axes",)

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        levels: int = 5,
        max_restarts: int | None = None,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels: must be an integer >= 2, got {levels!r}")
        if max_restarts is not None and max_restarts < 0:
            raise ValueError(f"max_restarts: must be >= 0, got {max_restarts!r}")
        self._levels, self._max_restarts = levels, max_restarts
        self._axes: list[list[Any]] = []
        self._loss: dict[Index, float] = {}  # evaluated grid points
        self._queued: list[Index] = []  # to suggest in this neighbourhood
        self._flight: dict[str, Index] = {}  # trial id -> grid point being evaluated
        self._centre: Index | None = None
        self._phase = "neighbours"  # neighbours -> gradient -> (move | restart)
        self.local_optima: list[tuple[dict[str, Any], float]] = []
        self._optima: set[Index] = set()
        self._restarts = 0
        self._done = False

    # ------------------------------------------------------------------ grid helpers
    def _setup(self) -> None:
        self._rebuild()
        self._start(self._random_unevaluated())
        self._advance()

    def _rebuild(self) -> None:
        self._axes = [axis_values(p, self._levels) for p in self._space.params.values()]

    @property
    def grid_size(self) -> int:
        return math.prod(len(a) for a in self._axes)

    def _config_of(self, idx: Index) -> dict[str, Any]:
        flat = {
            path: self._axes[j][i]
            for j, (path, i) in enumerate(zip(self._space.params, idx, strict=True))
        }
        return self._space.nest(flat)

    def _unit_of(self, idx: Index) -> np.ndarray:
        return self._space.to_unit(self._space.flat_config(self._config_of(idx)))

    def _config_for(self, trial_id: str, u: np.ndarray) -> dict[str, Any]:
        return self._config_of(self._flight[trial_id])  # exact grid values, not decoded floats

    def _known(self, idx: Index) -> bool:
        return idx in self._loss or idx in self._flight.values() or idx in self._queued

    def _random_unevaluated(self) -> Index | None:
        seen = len(self._loss) + len(self._flight)
        if seen >= self.grid_size:
            return None
        for _ in range(64):  # rejection sampling while the grid is mostly unexplored
            idx = tuple(int(self._rng.integers(len(a))) for a in self._axes)
            if not self._known(idx):
                return idx
        free = [i for i in np.ndindex(*[len(a) for a in self._axes]) if not self._known(i)]
        return tuple(int(v) for v in free[self._rng.integers(len(free))]) if free else None

    def _neighbours(self, idx: Index) -> list[Index]:
        out = []
        for j, n in enumerate(len(a) for a in self._axes):
            for step in (-1, 1):
                k = idx[j] + step
                if 0 <= k < n:
                    out.append(idx[:j] + (k,) + idx[j + 1 :])
        return out

    # ------------------------------------------------------------------ phases
    def _start(self, idx: Index | None) -> None:
        """A new walk: the start point and its axis neighbours, evaluated concurrently."""
        if idx is None:
            self._done = True
            return
        self._centre = idx
        self._queue_neighbourhood()

    def _queue_neighbourhood(self) -> None:
        c = self._centre
        self._phase = "neighbours"
        around = [c, *self._neighbours(c)]
        self._queued = [i for i in around if not self._known(i)]

    def _advance(self) -> None:
        """Move the walk on once everything queued for the current phase has a value."""
        while not self._done and not self._queued and not self._flight:
            c = self._centre
            if self._phase == "neighbours":
                self._phase = "gradient"
                g = self._gradient_point(c)
                if g is not None and g not in self._loss:
                    self._queued = [g]
            else:
                self._decide(c)

    def _gradient_point(self, c: Index) -> Index | None:
        """One grid step along the finite-difference descent direction in every dimension."""
        step = list(c)
        for j, n in enumerate(len(a) for a in self._axes):
            lo = self._loss.get(c[:j] + (c[j] - 1,) + c[j + 1 :], math.inf) if c[j] > 0 else None
            hi = (
                self._loss.get(c[:j] + (c[j] + 1,) + c[j + 1 :], math.inf) if c[j] < n - 1 else None
            )
            centre = self._loss[c]
            # One-sided difference at the edges; central where both neighbours exist.
            down = lo if lo is not None else math.inf
            up = hi if hi is not None else math.inf
            if min(down, up) < centre:
                step[j] += -1 if down < up else 1
        g = tuple(step)
        return g if g != c and sum(a != b for a, b in zip(g, c, strict=True)) > 1 else None

    def _decide(self, c: Index) -> None:
        around = self._neighbours(c)
        g = self._gradient_point(c)
        if g is not None:
            around.append(g)
        best = min(around, key=lambda i: self._loss.get(i, math.inf), default=None)
        improves = best is not None and self._loss.get(best, math.inf) < self._loss[c]
        if improves and best not in self._optima:
            self._centre = best  # its value is known: go on from it
            self._queue_neighbourhood()
            return
        if not improves:
            self._optima.add(c)
            self.local_optima.append((self._config_of(c), self._loss[c]))
        # else: this walk runs into an optimum found before; restart without repeating it
        if self._max_restarts is not None and self._restarts >= self._max_restarts:
            self._done = True
            return
        self._restarts += 1
        self._start(self._random_unevaluated())

    # ------------------------------------------------------------------ Searcher API
    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        if self._done:
            return Searcher.FINISHED
        if not self._queued:
            return None  # waiting for this neighbourhood's results
        idx = self._queued.pop(0)
        self._flight[trial_id] = idx
        return self._unit_of(idx)

    def _observe(self, trial_id: str, u: np.ndarray, loss: float) -> None:
        idx = self._flight.pop(trial_id, None)
        if idx is None:
            return
        self._loss[idx] = loss
        self._advance()
