"""The multi-resolution grid of the approximate-gradient search (Mahto & Chauhan, "An
approximate gradient based hyper-parameter optimization in a neural network architecture"),
as pure functions of an immutable ``Lattice``: nothing here changes state or draws at random.

Per dimension the coarse grid is the paper's non-uniform grid: the parameter's explicit
``grid`` values, else ``levels`` values spaced linearly (log-wise for log ranges);
categoricals use their choices. A point is an ``Index``, one integer per dimension. On a
*fine* dimension (a range without explicit grid values) the index counts in 2^-depth of a
coarse cell, so the spacing can halve around a point up to ``depth`` times while the coarse
levels keep their exact values (halving happens in the unit cube: log ranges stay log-spaced);
on the other dimensions the index is the position in the coarse values.

An unordered categorical (``unordered``: choices that are not all numbers, when the lattice is
built with ``hamming=True``) has every other choice as a neighbour (Hamming distance 1), and a
move goes to the best of them: the list's order means nothing. Numbers keep their order.

With ``model=True``, ``direction`` takes a Newton step where it can: on a fine dimension whose
centre and two neighbours curve upwards it moves to the vertex of the parabola through them
(the minimum of a separable quadratic model fitted to the poll), elsewhere the paper's step.

In a conditional space (``active``: which dimensions apply, given the values of a point) a
point's identity, its ``key``, leaves out the dimensions that do not apply to it: points that
differ only there are one configuration, evaluated once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raytune_hpo.searchers._kinds import ordered
from raytune_hpo.sweep.space import CategoricalParam, FloatParam, IntParam, Param

Index = tuple[int, ...]


def axis_values(p: Param, levels: int) -> list[Any]:
    """The coarse grid of one parameter, sorted (categoricals keep their order)."""
    if p.grid is not None:
        return sorted(set(p.grid)) if not isinstance(p, CategoricalParam) else list(p.grid)
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    spaced = np.geomspace if p.log else np.linspace
    vals = spaced(p.low, p.high, levels)
    if isinstance(p, IntParam):
        return sorted({p.nearest(round(v)) for v in vals})
    if not isinstance(p, FloatParam):
        raise TypeError(f"no grid for {type(p).__name__}")
    # A value the parameter can take: rounded to its q, below a half-open high (Ray's uniform).
    return sorted({p.nearest(float(v)) for v in vals})


@dataclass(frozen=True, eq=False)
class Lattice:
    """The grid of a space's parameters, down to ``depth`` halvings of the coarse spacing."""

    params: tuple[Param, ...]
    axes: tuple[tuple[Any, ...], ...]  # the coarse values per dimension
    units: tuple[np.ndarray, ...]  # their unit coordinates
    fine: tuple[bool, ...]  # dimensions whose spacing may halve
    ints: tuple[bool, ...]  # fine dimensions whose fine points may round to one value
    depth: int
    # Which dimensions apply, given a point's values (None: all, always).
    active: Callable[[list[Any]], Sequence[bool]] | None = None
    unordered: tuple[bool, ...] = ()  # unordered categoricals (none: every dimension ordered)
    _keys: dict = field(default_factory=dict, repr=False)  # a conditional space's keys, once

    @classmethod
    def build(
        cls,
        params: Sequence[Param],
        levels: int,
        depth: int,
        active: Callable[[list[Any]], Sequence[bool]] | None = None,
        *,
        hamming: bool = False,
    ) -> Lattice:
        axes = tuple(tuple(axis_values(p, levels)) for p in params)
        units = tuple(
            np.array([p.to_unit(v) for v in ax]) for p, ax in zip(params, axes, strict=True)
        )
        fine = tuple(
            p.grid is None and not isinstance(p, CategoricalParam) and len(ax) > 1
            for p, ax in zip(params, axes, strict=True)
        )
        # Dimensions whose fine points can coincide once rounded: integers, quantized floats.
        ints = tuple(
            f and (isinstance(p, IntParam) or (isinstance(p, FloatParam) and p.q is not None))
            for p, f in zip(params, fine, strict=True)
        )
        unordered = tuple(
            hamming and isinstance(p, CategoricalParam) and not ordered(p) for p in params
        )
        return cls(tuple(params), axes, units, fine, ints, depth, active, unordered)

    def is_unordered(self, j: int) -> bool:
        return bool(self.unordered) and self.unordered[j]

    @property
    def dims(self) -> int:
        return len(self.axes)

    @property
    def coarse_size(self) -> int:
        """Points of the coarse grid."""
        return math.prod(len(a) for a in self.axes)

    @property
    def size(self) -> int:
        """Points down to the finest spacing."""
        return math.prod(self.span(j) + 1 for j in range(self.dims))

    def span(self, j: int) -> int:
        """Largest index of dimension j: fine dimensions count in 2^-depth coarse cells."""
        n = len(self.axes[j]) - 1
        return n << self.depth if self.fine[j] else n

    def step(self, j: int, depth: int) -> int:
        """The index distance of neighbours in dimension j at refinement ``depth``."""
        return 1 << (self.depth - depth) if self.fine[j] else 1

    def value(self, j: int, k: int) -> Any:
        """The parameter value at index k of dimension j (coarse levels exactly)."""
        if not self.fine[j]:
            return self.axes[j][k]
        i, rest = divmod(k, 1 << self.depth)
        if rest == 0:
            return self.axes[j][i]
        u = self.units[j]
        frac = rest / (1 << self.depth)
        return self.params[j].from_unit(u[i] + frac * (u[i + 1] - u[i]))

    def values(self, idx: Index) -> list[Any]:
        """The values of a point, in the order of the parameters."""
        return [self.value(j, k) for j, k in enumerate(idx)]

    def key(self, idx: Index) -> tuple:
        """Identity of a configuration: two fine points that round to one integer are one,
        and a dimension that does not apply to the point is left out (None)."""
        if self.active is None:
            return tuple(self.value(j, k) if self.ints[j] else k for j, k in enumerate(idx))
        key = self._keys.get(idx)
        if key is None:
            values = self.values(idx)
            on = self.active(values)
            key = self._keys[idx] = tuple(
                None if not on[j] else values[j] if self.ints[j] else k for j, k in enumerate(idx)
            )
        return key

    def snap(self, u: np.ndarray, depth: int) -> Index:
        """The point of the grid at refinement ``depth`` nearest the unit point ``u``."""
        out = []
        for j, x in enumerate(u):
            if self.fine[j]:
                step = self.step(j, depth)
                out.append(int(round(x * self.span(j) / step)) * step)
            else:
                out.append(min(int(x * len(self.axes[j])), len(self.axes[j]) - 1))
        return tuple(out)

    def neighbours(self, idx: Index, depth: int) -> list[Index]:
        """The axis neighbours of a point at refinement ``depth``, inside the grid."""
        out = []
        for j in range(len(idx)):
            s = self.step(j, depth)
            if self.is_unordered(j):  # every other choice
                ks: Sequence[int] = [k for k in range(len(self.axes[j])) if k != idx[j]]
            else:
                ks = (idx[j] - s, idx[j] + s)
            for k in ks:
                if 0 <= k <= self.span(j):
                    out.append(idx[:j] + (k,) + idx[j + 1 :])
        return out

    def line_point(self, centre: Index, direction: np.ndarray, t: int) -> Index:
        """``centre + t * direction``, rounded to the grid and kept inside it (kept inside
        before rounding: a Newton step of a nearly flat parabola can be ~1e17 steps long, and
        past int64 the cast wrapped to the wrong end)."""
        spans = np.array([self.span(j) for j in range(len(centre))], dtype=float)
        target = np.rint(np.clip(np.array(centre) + t * direction, 0.0, spans)).astype(int)
        for j in range(len(centre)):
            if self.is_unordered(j):  # a jump to the chosen choice, whatever the multiple
                target[j] = centre[j] + (int(direction[j]) if t else 0)
        return tuple(int(min(max(v, 0), self.span(j))) for j, v in enumerate(target))


def direction(
    lat: Lattice,
    centre: Index,
    depth: int,
    loss: Callable[[Index], float | None],
    *,
    model: bool = False,
) -> np.ndarray:
    """Descent direction in index units from the losses of ``centre`` and its axis
    neighbours (``loss``: None for a point not evaluated): central or one-sided finite
    differences on fine dimensions, scaled so that the largest move is one grid step; on the
    others a step to the better neighbour when it beats the centre (an unordered categorical:
    to the best other choice). ``model``: a fine dimension that curves upwards moves to its
    parabola's vertex instead (a Newton step)."""
    f0 = loss(centre)
    if f0 is None:
        raise ValueError(f"the centre {centre} has no loss yet")
    slope = np.zeros(len(centre))
    move = np.zeros(len(centre))
    newton = np.zeros(len(centre), dtype=bool)
    for j in range(len(centre)):
        if lat.is_unordered(j):
            move[j] = _best_choice(lat, centre, j, f0, loss)
            continue
        lo, hi = _sides(lat, centre, depth, j, loss)
        if not lat.fine[j]:
            if min(lo, hi) < f0:
                move[j] = -1 if lo < hi else 1
            continue
        slope[j] = _slope(lo, f0, hi)
        vertex = _vertex(lo, f0, hi) if model else None
        if vertex is not None:
            move[j], newton[j] = vertex * lat.step(j, depth), True
    top = np.abs(np.where(newton, 0.0, slope)).max()
    if top > 0:
        steps = np.array([lat.step(j, depth) for j in range(len(centre))])
        fd = np.array(lat.fine) & ~newton
        move += np.where(fd, -slope / top * steps, 0.0)
    return move


def _vertex(lo: float, f0: float, hi: float) -> float | None:
    """The vertex of the parabola through (-1, lo), (0, f0), (1, hi), in steps, when it curves
    upwards and the vertex moves (None otherwise)."""
    if not (math.isfinite(lo) and math.isfinite(f0) and math.isfinite(hi)):
        return None
    curve = lo - 2 * f0 + hi
    if curve <= 0 or lo == hi:
        return None
    return (lo - hi) / (2 * curve)


def _best_choice(lat: Lattice, c: Index, j: int, f0: float, loss) -> int:
    """The index step to the best other choice of an unordered categorical when it beats the
    centre, else 0."""
    best, step = f0, 0
    for k in range(len(lat.axes[j])):
        if k == c[j]:
            continue
        value = loss(c[:j] + (k,) + c[j + 1 :])
        if value is not None and value < best:
            best, step = value, k - c[j]
    return step


def _sides(lat: Lattice, c: Index, depth: int, j: int, loss) -> tuple[float, float]:
    """The losses of the neighbours below and above ``c`` in dimension j (inf if none)."""
    s = lat.step(j, depth)
    lo = loss(c[:j] + (c[j] - s,) + c[j + 1 :]) if c[j] - s >= 0 else None
    hi = loss(c[:j] + (c[j] + s,) + c[j + 1 :]) if c[j] + s <= lat.span(j) else None
    return (math.inf if lo is None else lo), (math.inf if hi is None else hi)


def _slope(lo: float, f0: float, hi: float) -> float:
    """Finite-difference slope per grid step: central, or at an edge one-sided and only when
    stepping back inside goes downhill."""
    if math.isfinite(lo) and math.isfinite(hi):
        return (hi - lo) / 2
    if math.isfinite(hi) and math.isfinite(f0):
        return min(hi - f0, 0.0)
    if math.isfinite(lo) and math.isfinite(f0):
        return max(f0 - lo, 0.0)
    return 0.0


__all__ = ["Index", "Lattice", "axis_values", "direction"]
