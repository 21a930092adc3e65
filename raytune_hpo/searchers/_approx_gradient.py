"""Approximate-gradient neighbourhood search on a multi-resolution grid, after Mahto & Chauhan
(``../shared/seeds/approximate-gradient.md``, Algorithm 1 and section 4.1).

The coarse grid is the paper's non-uniform grid: per dimension its explicit ``grid`` values,
else ``levels`` values spaced linearly (log-wise for log ranges); categoricals use their
choices. A walk starts at a grid point, evaluates it and its 2d axis neighbours (concurrently),
estimates the slope per dimension by finite differences and walks along the estimated descent
direction, doubling the step while it keeps improving (a line search; categorical and
explicit-grid dimensions take one step towards their better neighbour). It moves to the best
point seen if that improves on the centre. When nothing improves, the grid is refined around
the centre: the spacing halves locally (in the unit cube, so log ranges stay log-spaced and the
coarse levels stay the paper's), up to ``refine`` times; then the centre is a local optimum and
the walk restarts. Start points are scrambled-Sobol points snapped to the coarsest grid that
still has an unevaluated point there. No configuration is evaluated twice.

Several walks run at once: when every walk waits for results and Tune asks for another trial,
a new walk starts, so concurrent trial slots stay busy (``walkers`` caps their number). In a
sequential run one walk runs at a time. ``FINISHED`` only when nothing is left: every point of
the grid down to its finest spacing evaluated (in practice explicit grids, categoricals or a small
``refine``), or ``max_restarts`` used up.

Changes from the earlier grid-only version: it used to end once the coarse grid was used up (25
points of a 2-D problem with 5 levels) and always started at a random grid point; the options
``levels`` and ``max_restarts`` keep their meaning (``max_restarts``: walks after the first,
including the ones started to fill concurrent slots).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from scipy.stats import qmc

from raytune_hpo.errors import UserError
from raytune_hpo.searchers._base import UnitCubeSearcher
from raytune_hpo.space import CategoricalParam, FloatParam, IntParam

Index = tuple[int, ...]
_STARTS = 256  # Sobol start points drawn at once (then uniform random ones)
_ENUMERATE = 200_000  # grids up to this size are searched exhaustively for a free start


def axis_values(p: Any, levels: int) -> list[Any]:
    """The coarse grid of one parameter, sorted (categoricals keep their order)."""
    if p.grid is not None:
        return sorted(set(p.grid)) if not isinstance(p, CategoricalParam) else list(p.grid)
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    spaced = np.geomspace if p.log else np.linspace
    vals = spaced(p.low, p.high, levels)
    if isinstance(p, IntParam):
        return sorted({p.nearest(round(v)) for v in vals})
    assert isinstance(p, FloatParam)
    # A value the parameter can take: rounded to its q, below a half-open high (Ray's uniform).
    return sorted({p.nearest(float(v)) for v in vals})


class Walk:
    """One walk: its centre, refinement depth, and the points it waits for."""

    def __init__(self, centre: Index, depth: int) -> None:
        self.centre, self.depth = centre, depth
        self.need: list[Index] = []  # points whose losses this phase needs
        self.phase = "poll"
        self.direction: np.ndarray | None = None
        self.t = 0  # line search: multiple of the direction tried last
        self.best: Index = centre  # best point of this poll + line search


class ApproxGradientSearch(UnitCubeSearcher):
    """Options: ``levels`` per dimension without explicit grid values (5), ``refine``: how often
    the spacing may halve around a walk's centre (8), ``max_restarts`` (None: unlimited),
    ``walkers``: walks at once at most (None: as many as keep the trial slots busy)."""

    _saved = (
        *("_levels", "_depth", "_max_restarts", "_max_walkers", "_loss", "_flight", "_flying"),
        *("_walks", "_starts", "_next_start", "local_optima", "_optima", "_restarts", "_done"),
    )
    _derived = ("_params", "_axes", "_units", "_fine", "_ints")

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        levels: int = 5,
        refine: int = 8,
        max_restarts: int | None = None,
        walkers: int | None = None,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise UserError(f"must be an integer >= 2, got {levels!r}", field="levels")
        if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= 30:
            raise UserError(f"must be an integer in [0, 30], got {refine!r}", field="refine")
        if max_restarts is not None and (not isinstance(max_restarts, int) or max_restarts < 0):
            raise UserError(f"must be an integer >= 0, got {max_restarts!r}", field="max_restarts")
        if walkers is not None and (not isinstance(walkers, int) or walkers < 1):
            raise UserError(f"must be an integer >= 1, got {walkers!r}", field="walkers")
        self._levels, self._depth = levels, refine
        self._max_restarts, self._max_walkers = max_restarts, walkers
        self._params: list[Any] = []
        self._axes: list[list[Any]] = []
        self._ints: list[bool] = []  # fine integer dimensions: points may round to one value
        self._units: list[np.ndarray] = []  # unit coordinate of every coarse value
        self._fine: list[bool] = []  # dimensions whose spacing may halve
        self._loss: dict[Index, float] = {}  # evaluated points, by key (see _key)
        self._flight: dict[str, tuple[Index, Index]] = {}  # trial id -> (point, key)
        self._flying: set[Index] = set()  # keys being evaluated
        self._walks: list[Walk] = []
        self._starts: np.ndarray | None = None
        self._next_start = 0
        self.local_optima: list[tuple[dict[str, Any], float]] = []
        self._optima: set[Index] = set()
        self._restarts = -1  # the first walk is not a restart
        self._done = False

    # ------------------------------------------------------------------ grid
    def _setup(self) -> None:
        self._rebuild()
        starts = qmc.Sobol(self.space.dims, seed=self._rng).random(_STARTS)
        earlier, losses = self.prior
        if np.isfinite(losses).any():  # warm start: the first walk starts at the earlier best
            starts = np.vstack([earlier[int(np.argmin(losses))], starts])
        self._starts = starts

    def _rebuild(self) -> None:
        self._params = params = list(self.space.params.values())
        self._axes = [axis_values(p, self._levels) for p in params]
        self._units = [
            np.array([p.to_unit(v) for v in ax]) for p, ax in zip(params, self._axes, strict=True)
        ]
        self._fine = [
            p.grid is None and not isinstance(p, CategoricalParam) and len(ax) > 1
            for p, ax in zip(params, self._axes, strict=True)
        ]
        # Dimensions whose fine points can coincide once rounded: integers, quantized floats.
        self._ints = [
            f and (isinstance(p, IntParam) or p.q is not None)
            for p, f in zip(params, self._fine, strict=True)
        ]

    @property
    def grid_size(self) -> int:
        """Points of the coarse grid."""
        return math.prod(len(a) for a in self._axes)

    def _span(self, j: int) -> int:
        """Largest index of dimension j: fine dimensions count in 2^-refine coarse cells."""
        n = len(self._axes[j]) - 1
        return n << self._depth if self._fine[j] else n

    def _step(self, j: int, depth: int) -> int:
        return 1 << (self._depth - depth) if self._fine[j] else 1

    def _value(self, j: int, k: int) -> Any:
        if not self._fine[j]:
            return self._axes[j][k]
        i, rest = divmod(k, 1 << self._depth)
        if rest == 0:
            return self._axes[j][i]  # a coarse level: the exact grid value
        u = self._units[j]
        frac = rest / (1 << self._depth)
        return self._params[j].from_unit(u[i] + frac * (u[i + 1] - u[i]))

    def _config_of(self, idx: Index) -> dict[str, Any]:
        paths = self.space.params
        flat = {path: self._value(j, k) for j, (path, k) in enumerate(zip(paths, idx, strict=True))}
        return self.space.nest(flat)

    def _key(self, idx: Index) -> Index:
        """Identity of a configuration: two fine points that round to one integer are one."""
        return tuple(self._value(j, k) if self._ints[j] else k for j, k in enumerate(idx))

    def _config_for(self, trial_id: str, u: np.ndarray) -> dict[str, Any]:
        return self._config_of(self._flight[trial_id][0])  # exact grid values, not decoded

    def _known(self, idx: Index) -> bool:
        key = self._key(idx)
        return key in self._loss or key in self._flying

    def _loss_of(self, idx: Index) -> float | None:
        return self._loss.get(self._key(idx))

    # ------------------------------------------------------------------ starts
    def _snap(self, u: np.ndarray, depth: int) -> Index:
        out = []
        for j, x in enumerate(u):
            if self._fine[j]:
                step = self._step(j, depth)
                out.append(int(round(x * self._span(j) / step)) * step)
            else:
                out.append(min(int(x * len(self._axes[j])), len(self._axes[j]) - 1))
        return tuple(out)

    def _new_start(self) -> tuple[Index, int] | None:
        fine = any(self._fine)
        spans = [self._span(j) + 1 for j in range(len(self._axes))]
        if len(self._loss) + len(self._flying) >= math.prod(spans):
            return None  # every point down to the finest spacing is evaluated
        for _ in range(64):
            if self._next_start < len(self._starts):
                u = self._starts[self._next_start]
                self._next_start += 1
            else:
                u = self._rng.random(self.space.dims)
            for depth in range(self._depth + 1 if fine else 1):
                idx = self._snap(u, depth)
                if not self._known(idx):
                    return idx, depth
        if math.prod(spans) > _ENUMERATE:
            return None  # no free point found by chance in a huge grid: it is all but used up
        free = [i for i in np.ndindex(*spans) if not self._known(i)]
        if not free:
            return None
        return tuple(int(v) for v in free[self._rng.integers(len(free))]), self._depth

    def _spawn(self) -> Walk | None:
        if self._max_restarts is not None and self._restarts >= self._max_restarts:
            return None
        start = self._new_start()
        if start is None:
            return None
        self._restarts += 1
        walk = Walk(*start)
        self._poll(walk)
        self._walks.append(walk)
        return walk

    # ------------------------------------------------------------------ one walk
    def _neighbours(self, idx: Index, depth: int) -> list[Index]:
        out = []
        for j in range(len(idx)):
            s = self._step(j, depth)
            for k in (idx[j] - s, idx[j] + s):
                if 0 <= k <= self._span(j):
                    out.append(idx[:j] + (k,) + idx[j + 1 :])
        return out

    def _poll(self, walk: Walk) -> None:
        walk.phase, walk.best, walk.t = "poll", walk.centre, 0
        walk.need = [walk.centre, *self._neighbours(walk.centre, walk.depth)]

    def _direction(self, walk: Walk) -> np.ndarray:
        """Descent direction in index units: central/one-sided finite differences on fine
        dimensions (the largest move one grid step), a step to the better side elsewhere."""
        c, f0 = walk.centre, self._loss_of(walk.centre)
        slope = np.zeros(len(c))
        coarse = np.zeros(len(c))
        for j in range(len(c)):
            s = self._step(j, walk.depth)
            lo = self._loss_of(c[:j] + (c[j] - s,) + c[j + 1 :]) if c[j] - s >= 0 else None
            hi = (
                self._loss_of(c[:j] + (c[j] + s,) + c[j + 1 :])
                if c[j] + s <= self._span(j)
                else None
            )
            lo = math.inf if lo is None else lo
            hi = math.inf if hi is None else hi
            if not self._fine[j]:
                if min(lo, hi) < f0:
                    coarse[j] = -1 if lo < hi else 1
            elif math.isfinite(lo) and math.isfinite(hi):
                slope[j] = (hi - lo) / 2
            elif math.isfinite(hi) and math.isfinite(f0):
                slope[j] = min(hi - f0, 0.0)  # at an edge: only step back inside when downhill
            elif math.isfinite(lo) and math.isfinite(f0):
                slope[j] = max(f0 - lo, 0.0)
        top = np.abs(slope).max()
        move = coarse.copy()
        if top > 0:
            steps = np.array([self._step(j, walk.depth) for j in range(len(c))])
            move += np.where(self._fine, -slope / top * steps, 0.0)
        return move

    def _line_point(self, walk: Walk) -> Index:
        target = np.rint(np.array(walk.centre) + walk.t * walk.direction).astype(int)
        spans = [self._span(j) for j in range(len(walk.centre))]
        return tuple(int(min(max(v, 0), s)) for v, s in zip(target, spans, strict=True))

    def _advance(self, walk: Walk) -> str:
        """Move a walk on while its needs are met: 'wait', or 'retire' when it is over."""
        while all(self._loss_of(i) is not None for i in walk.need):
            for i in walk.need:
                if self._loss_of(i) < self._loss_of(walk.best):
                    walk.best = i
            if walk.phase == "poll":
                walk.phase, walk.direction, walk.t = "line", self._direction(walk), 0
                previous = walk.centre
            else:
                previous = self._line_point(walk)
                if walk.best != previous:  # the last step did not improve: the line is over
                    walk.need = []
                    if not self._settle(walk):
                        return "retire"
                    continue
            walk.t = 1 if walk.t == 0 else 2 * walk.t
            point = self._line_point(walk)
            if point == previous:  # no move (flat, or against the boundary)
                if not self._settle(walk):
                    return "retire"
                continue
            walk.need = [point]
        return "wait"

    def _settle(self, walk: Walk) -> bool:
        """After a line search: move, refine or end the walk (False)."""
        best = walk.best
        if best != walk.centre:
            if self._key(best) in self._optima or any(
                w is not walk and self._key(w.centre) == self._key(best) for w in self._walks
            ):
                return False  # runs into another walk or a known optimum: stop, do not repeat it
            walk.centre = best
            self._poll(walk)
            return True
        if walk.depth < self._depth and any(self._fine):
            walk.depth += 1  # nothing improves: halve the spacing around the centre
            self._poll(walk)
            return True
        self._optima.add(self._key(walk.centre))
        self.local_optima.append((self._config_of(walk.centre), self._loss_of(walk.centre)))
        return False

    def _update(self) -> None:
        for walk in list(self._walks):
            if self._advance(walk) == "retire":
                self._walks.remove(walk)
                if self._max_walkers is None or len(self._walks) < self._max_walkers:
                    fresh = self._spawn()
                    if fresh is not None:
                        self._advance(fresh)
        if not self._walks and not self._flying and self._spawn() is None:
            self._done = True

    # ------------------------------------------------------------------ Searcher API
    def _launch(self, walk: Walk) -> Index | None:
        for idx in walk.need:
            if not self._known(idx):
                return idx
        return None

    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        if self._done:
            return Searcher.FINISHED
        if not self._walks:
            self._update()
            if self._done:
                return Searcher.FINISHED
        idx = next((i for w in self._walks if (i := self._launch(w)) is not None), None)
        while idx is None and (self._max_walkers is None or len(self._walks) < self._max_walkers):
            walk = self._spawn()  # every walk waits: start another to keep the slot busy
            if walk is None:
                break
            self._advance(walk)
            idx = self._launch(walk)
        if idx is None:
            return None if self._walks or self._flying else Searcher.FINISHED
        key = self._key(idx)
        self._flight[trial_id] = (idx, key)
        self._flying.add(key)
        return self.space.to_unit(self.space.flat_config(self._config_of(idx)))

    def _observe(self, trial_id: str, u: np.ndarray, loss: float) -> None:
        flight = self._flight.pop(trial_id, None)
        if flight is None:
            return
        self._flying.discard(flight[1])
        self._loss[flight[1]] = loss
        self._update()
