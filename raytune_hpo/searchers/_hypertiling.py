"""Hypertiling: the vertices of an aperiodic tiling as a space-filling design, the third design
of Rasmussen et al., "Beating grid- and random search with alternative methods" (Copenhagen):
"Penrose tiling ... just find the intersections".

In 2-D the points are the vertices of a Penrose rhombus tiling from de Bruijn's pentagrid
(de Bruijn, 1981): five families of parallel lines ``x . e_m + gamma_m = k`` (``e_m`` at angles
2 pi m / 5, ``sum gamma_m = 0``); every mesh of the pentagrid is the vertex
``sum_m K_m e_m`` with ``K_m = ceil(x . e_m + gamma_m)`` for any ``x`` in it. De Bruijn showed
that these are the points ``E n`` (``n`` in Z^5) whose internal coordinates ``F (n - gamma)``
lie in the projected unit cube ``F [0, 1)^5`` (cut and project; ``E``: the plane's orthonormal
rows, ``F``: its orthogonal complement). In d dimensions the same construction uses N > d
directions: N the smallest prime >= 2 ceil(d/2) + 3, ``E`` the cosine/sine rows of the first
ceil(d/2) frequencies of Z_N (d = 2 gives the pentagrid). One unused frequency pair stays in the
internal space, so the plane holds no lattice vector: the tiling is aperiodic.

The tiling is rotated and offset at random (from the seed), scaled so that ``budget`` vertices
fall in the unit cube (the vertex density is the window's volume), and ordered greedily
farthest-point first, so that any prefix is spread out. ``FINISHED`` after the ``budget`` points;
earlier results (warm start) take the place of their nearest vertices, as in the Latin
hypercube. The state is the seed and the count: the points are rebuilt after ``set_state``.

In a conditional space the vertices are those of the whole cube: where a parameter applies is
a region of its parents' coordinates, and the tiling is as even inside such a region as in the
cube. Distances (the farthest-point order, the warm start's nearest vertices) count the active
coordinates only (``SearchSpace.canonical``), so the order spreads each subspace that occurs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.linalg import null_space

from raytune_hpo.errors import UserError
from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._base import DesignSearcher

MAX_DIMS = 24  # beyond, the window's facet count grows combinatorially
_EPS = 1e-9  # a vertex exactly on the window's boundary has measure zero: stay strictly inside


def _prime_at_least(n: int) -> int:
    while any(n % k == 0 for k in range(2, math.isqrt(n) + 1)) or n < 2:
        n += 1
    return n


def frame(d: int) -> tuple[np.ndarray, np.ndarray]:
    """``E`` (d x N) and ``F`` ((N - d) x N), orthonormal rows spanning R^N together."""
    m = -(-d // 2)
    n = _prime_at_least(2 * m + 3)
    j = np.arange(n)
    rows = []
    for k in range(1, m + 1):
        rows += [np.cos(2 * np.pi * k * j / n), np.sin(2 * np.pi * k * j / n)]
    e = np.array(rows[:d]) * math.sqrt(2.0 / n)
    return e, null_space(e).T


class Window:
    """The zonotope ``F [0, 1]^N`` of the internal space: facet normals and half-widths."""

    def __init__(self, f: np.ndarray) -> None:
        k, n = f.shape
        normals = []
        if k == 1:
            normals.append(np.ones(1))
        else:
            for sub in itertools.combinations(range(n), k - 1):
                ns = null_space(f[:, sub].T)
                if ns.shape[1] == 1:  # the generators span a facet
                    normals.append(ns[:, 0])
        self.normals = np.array(normals)
        self.half = 0.5 * np.abs(self.normals @ f).sum(1)
        self.centre = f @ np.full(n, 0.5)
        self.f = f
        # Volume of a zonotope: the sum of |det| over every k-subset of its generators.
        self.volume = float(
            sum(abs(np.linalg.det(f[:, s])) for s in itertools.combinations(range(n), k))
        )

    def contains(self, w: np.ndarray) -> np.ndarray:
        return (np.abs((w - self.centre) @ self.normals.T) < self.half - _EPS).all(1)


def tiling_points(d: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """``budget`` tiling vertices scaled into [0, 1]^d, in farthest-point order."""
    if d > MAX_DIMS:
        raise UserError(f"hypertiling supports up to {MAX_DIMS} dimensions, got {d}", field="space")
    e, f = frame(d)
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    e = (q * np.sign(np.diag(r))) @ e  # a random rotation of the physical space
    n = e.shape[1]
    gamma = rng.random(n)
    if d == 2:
        gamma -= gamma.mean()  # de Bruijn's condition for a Penrose tiling
    window = Window(f)
    side = (budget / window.volume) ** (1.0 / d)  # the window's volume is the vertex density
    corner = rng.random(d) * side
    reach = side * 1.15
    while True:
        pos = _vertices(e, window, gamma, corner, reach, rng, 4 * budget + 64)
        entry = (pos - corner).max(1)  # in [corner, corner + s]^d for every s >= entry
        if len(pos) > budget:
            break
        reach *= 1.15
    order = np.argsort(entry, kind="stable")
    scale = 0.5 * (entry[order[budget - 1]] + entry[order[budget]])
    u = (pos[order[:budget]] - corner) / scale
    return u[maximin_order(u)]


def _vertices(e, window, gamma, corner, reach, rng, seeds) -> np.ndarray:
    """Every vertex in the box [corner, corner + reach]^d: a breadth-first walk along the
    tiling's edges (n +- unit vectors) from the vertices of randomly chosen meshes."""
    d, n = e.shape
    lo, hi = corner, corner + reach

    def keep(nn: np.ndarray) -> np.ndarray:
        p = nn @ e.T
        nn = nn[((p >= lo) & (p <= hi)).all(1)]
        return nn[window.contains((nn - gamma) @ window.f.T)]

    # The mesh of x has its vertex at x + E gamma + E t, t in [0, 1)^N: aim x at the box.
    y = lo + rng.random((seeds, d)) * reach - e @ (gamma + 0.5)
    frontier = np.unique(keep(np.ceil(y @ e + gamma).astype(np.int64)), axis=0)
    seen = {tuple(v) for v in frontier}
    steps = np.concatenate([np.eye(n, dtype=np.int64), -np.eye(n, dtype=np.int64)])
    while len(frontier):
        cand = np.unique(keep((frontier[:, None, :] + steps[None]).reshape(-1, n)), axis=0)
        fresh = [v for v in map(tuple, cand) if v not in seen]
        seen.update(fresh)
        frontier = np.array(fresh, dtype=np.int64).reshape(-1, n)
    pts = np.array(sorted(seen), dtype=np.int64).reshape(-1, n)
    return pts @ e.T


def maximin_order(u: np.ndarray) -> np.ndarray:
    """Greedy farthest-point order, starting nearest the centre of the cube."""
    first = int(np.argmin(((u - 0.5) ** 2).sum(1)))
    order = [first]
    dist = ((u - u[first]) ** 2).sum(1)
    for _ in range(len(u) - 1):
        i = int(np.argmax(dist))
        order.append(i)
        dist = np.minimum(dist, ((u - u[i]) ** 2).sum(1))
    return np.array(order)


class HypertilingSearch(DesignSearcher):
    """Vertices of an aperiodic tiling; ``FINISHED`` once ``budget`` of them are suggested.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``; the seed
            draws the tiling's rotation and offset. Up to 24 dimensions.
        budget: the number of tiling vertices to evaluate (100; a sweep file passes
            num_samples).
    """

    _saved = ("_tiling_seed",)
    _derived = ("_design",)  # the points are rebuilt from the seed and the count

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        budget: int = 100,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        check.integer("budget", budget, 1)
        if self.space is not None and self.space.dims > MAX_DIMS:
            raise UserError(f"hypertiling supports up to {MAX_DIMS} dimensions", field="space")
        self._budget = budget
        self._tiling_seed: int | None = None

    def _setup(self) -> None:
        self._tiling_seed = int(self._rng.integers(2**63))
        super()._setup()

    def _rebuild(self) -> None:
        self._design = self._placed_design()

    def _design_points(self, n: int) -> np.ndarray:
        u = tiling_points(self._space.dims, n, np.random.default_rng(self._tiling_seed))
        if self._space.conditional:
            u = u[maximin_order(self._space.canonical(u))]
        return u
