"""Conditional parameters: ``when:`` in a space entry says for which values of other
parameters it applies (momentum only under SGD, the width of layer 3 only with three layers).

``when: {PARENT: value}`` or ``{PARENT: [values]}``; several keys mean all must hold; a parent
may itself be conditional (a chain). A parameter is *active* when each of its conditions holds
on an active parent; an inactive parameter is absent from a trial's configuration. Parents are
searched categorical (bool included) or int parameters, named by their dotted names. This is
the structure ConfigSpace writes as ``EqualsCondition``/``InCondition`` joined by
``AndConjunction`` (Lindauer et al., "SMAC3", JMLR 2022) and Optuna as define-by-run.

Everything here is checked when the space is built: an unknown parent, a parent that is not
categorical, int or bool, a value the parent can never take, a cycle, a ``grid:`` list that
the parent's grid values never reach, a condition on a constant; one ``UserError`` each, with
the field ``(space, ..., when)`` as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError
from raytune_hpo.sweep.params import _MAX_IMPLICIT_INT_GRID, CategoricalParam, IntParam, Param

Path = tuple[str, ...]


def same(a: Any, b: Any) -> bool:
    """Whether two values are one: ``True`` is not ``1`` here, ``3`` is ``3.0`` (numpy's
    scalars, as a table read back holds them, are their Python values)."""
    if type(a) is type(b) and type(a) in (str, int, float):  # the common case, fast
        return a == b
    a, b = (v.item() if isinstance(v, np.generic) else v for v in (a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # an array-like choice
        return False


@dataclass(frozen=True)
class Condition:
    """``parent`` must take one of ``values`` (the parent's own values, as the user gave)."""

    parent: Path
    values: tuple[Any, ...]

    def holds(self, value: Any) -> bool:
        return any(same(v, value) for v in self.values)

    def __str__(self) -> str:
        name = ".".join(self.parent)
        if len(self.values) == 1:
            return f"{name} is {self.values[0]!r}"
        return f"{name} in {list(self.values)!r}"


def raw_when(where: tuple[str, ...], raw: Any) -> dict[str, tuple[Any, ...]]:
    """The ``when:`` mapping as parent name -> allowed values (the shape only)."""
    field = (*where, "when")
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(
            "must map parent names to a value or a list of values, e.g. {optimizer: sgd}",
            field=field,
        )
    out = {}
    for name, values in raw.items():
        if not isinstance(name, str) or not name:
            raise UserError("parent names must be non-empty strings", field=field)
        if isinstance(values, Sequence) and not isinstance(values, str):
            if not values:
                raise UserError(f"{name}: the list of values is empty", field=field)
            out[name] = tuple(values)
        else:
            out[name] = (values,)
    return out


def _parent(
    name: str,
    field: tuple[str, ...],
    params: Mapping[Path, Param],
    constants: Mapping[Path, Any],
) -> Path:
    by_name: dict[str, list[Path]] = {}
    for path in params:
        by_name.setdefault(".".join(path), []).append(path)
    found = by_name.get(name, [])
    if len(found) > 1:
        raise UserError(f"{name!r} names more than one parameter", field=field)
    if found:
        return found[0]
    if any(".".join(path) == name for path in constants):
        raise UserError(
            f"{name!r} is a constant: a condition on a fixed value always or never holds; "
            "condition on a searched categorical, int or bool parameter",
            field=field,
        )
    allowed = [n for n, paths in by_name.items() if _can_parent(params[paths[0]])]
    listed = ", ".join(allowed) if allowed else "none (no categorical, int or bool parameter)"
    raise UserError(f"unknown parent {name!r}; allowed: {listed}", field=field)


def _can_parent(p: Param) -> bool:
    return isinstance(p, (CategoricalParam, IntParam))


def _check_value(name: str, p: Param, value: Any, field: tuple[str, ...]) -> None:
    if isinstance(p, CategoricalParam):
        if not any(same(c, value) for c in p.choices):
            raise UserError(
                f"{name} can never be {value!r}; its choices: {list(p.choices)}", field=field
            )
        return
    if p.problem(value) is not None or p.nearest(value) != value:
        q = f" multiple of {p.q}" if p.q is not None else "n integer"
        raise UserError(
            f"{name} can never be {value!r}; it takes a{q} in [{p.low}, {p.high}]", field=field
        )


def _grid_values(p: Param) -> list[Any] | None:
    """The values grid search gives a parent (None: it cannot be gridded)."""
    if isinstance(p, CategoricalParam):
        return list(p.grid if p.grid is not None else p.choices)
    if p.grid is not None:
        return list(p.grid)
    if isinstance(p, IntParam) and p.high - p.low + 1 <= _MAX_IMPLICIT_INT_GRID:
        return sorted({p.nearest(v) for v in range(p.low, p.high + 1)})
    return None


def resolve(
    whens: Mapping[Path, tuple[tuple[str, ...], Any]],
    params: Mapping[Path, Param],
    constants: Mapping[Path, Any],
) -> dict[Path, tuple[Condition, ...]]:
    """Each conditional parameter's conditions, checked; ``whens``: path -> (where, raw)."""
    out: dict[Path, tuple[Condition, ...]] = {}
    for path, (where, raw) in whens.items():
        field = (*where, "when")
        found = []
        for name, values in raw_when(where, raw).items():
            parent = _parent(name, field, params, constants)
            p = params[parent]
            if not _can_parent(p):
                raise UserError(
                    f"{name} is a float range; a parent must be categorical, int or bool",
                    field=field,
                )
            for v in values:
                _check_value(name, p, v, field)
            found.append(Condition(parent, tuple(values)))
        out[path] = tuple(found)
    order(params, out, where={path: w for path, (w, _) in whens.items()})  # raises on a cycle
    for path, conds in out.items():
        if activating(out, path) is None:
            said = " and ".join(map(str, conds))
            raise UserError(
                f"can never apply: {said} contradicts the conditions of its parents",
                field=(*whens[path][0], "when"),
            )
    for path, conds in out.items():
        _check_grid(path, whens[path][0], params, conds)
    return out


def _check_grid(path: Path, where, params: Mapping[Path, Param], conds) -> None:
    """A ``grid:`` list on a conditional parameter needs parents whose grid values make it
    active, or grid search never uses it."""
    if params[path].grid is None:
        return
    for c in conds:
        values = _grid_values(params[c.parent])
        name = ".".join(c.parent)
        if values is None:
            raise UserError(
                f"has grid values but its parent {name} is not gridded (give {name} a grid: list)",
                field=(*where, "grid"),
            )
        if not any(c.holds(v) for v in values):
            raise UserError(
                f"grid search never uses these values: the grid of {name} ({values}) never "
                f"makes it active ({c})",
                field=(*where, "grid"),
            )


def activating(
    conditions: Mapping[Path, tuple[Condition, ...]], path: Path
) -> dict[Path, Any] | None:
    """Values of ``path``'s ancestors that make it apply (the first listed that agree; chains
    followed); None when no values do."""

    def solve(goals: list[Condition], fixed: dict[Path, Any]) -> dict[Path, Any] | None:
        if not goals:
            return fixed
        c, rest = goals[0], goals[1:]
        if c.parent in fixed:
            return solve(rest, fixed) if c.holds(fixed[c.parent]) else None
        for v in c.values:
            found = solve([*rest, *conditions.get(c.parent, ())], {**fixed, c.parent: v})
            if found is not None:
                return found
        return None

    return solve(list(conditions.get(path, ())), {})


def order(
    params: Mapping[Path, Param],
    conditions: Mapping[Path, tuple[Condition, ...]],
    where: Mapping[Path, tuple[str, ...]] | None = None,
) -> list[Path]:
    """The parameters with every parent before its children, otherwise as declared; a
    UserError naming the cycle if there is one (``where``: each entry's field)."""
    if not conditions:
        return list(params)
    done: dict[Path, bool] = {}  # False: being visited
    out: list[Path] = []

    def visit(path: Path, trail: list[Path]) -> None:
        if done.get(path):
            return
        if path in done:
            loop = " -> ".join(".".join(p) for p in [*trail[trail.index(path) :], path])
            at = (where or {}).get(path, ("space", *path))
            raise UserError(f"conditions form a cycle: {loop}", field=(*at, "when"))
        done[path] = False
        for c in conditions.get(path, ()):
            visit(c.parent, [*trail, path])
        done[path] = True
        out.append(path)

    for path in params:
        visit(path, [])
    return out


class _Absent:
    """A parameter a configuration lacks (inside ``active``)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


def conditional_constant(value: Any) -> bool:
    """A mapping with ``when:`` but no ``type``: a condition on a constant."""
    if not isinstance(value, Mapping) or "when" not in value or "type" in value:
        return False
    when = value["when"]
    return not (isinstance(when, Mapping) and any(isinstance(v, Mapping) for v in when.values()))


def without(config: Mapping[str, Any], drop: set[Path]) -> dict[str, Any]:
    """A copy of the nested ``config`` without the values at the paths in ``drop``, and
    without a nested mapping that only they filled."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        here = {p[1:] for p in drop if p[0] == key}
        if (key,) in drop:
            continue
        if here and isinstance(value, Mapping):
            value = without(value, here)
            if not value:
                continue
        out[key] = value
    return out


def holds_at(p: Param, c: Condition, u: np.ndarray) -> np.ndarray:
    """Whether ``c`` holds on the values of ``p`` at the unit coordinates ``u``."""
    if isinstance(p, CategoricalParam):  # the choice's cell, as from_unit picks it
        n = len(p.choices)
        cells = np.minimum((np.clip(u, 0.0, 1.0) * n).astype(int), n - 1)
        return np.array([c.holds(v) for v in p.choices])[cells]
    if isinstance(p, IntParam) and not p.log and p.q is None:  # from_unit, vectorised
        lo, hi = float(p.low), float(p.high + 1)
        values = np.clip(np.floor(lo + np.clip(u, 0.0, 1.0) * (hi - lo)), p.low, p.high)
        wanted = np.array([v for v in c.values if not isinstance(v, bool)], dtype=float)
        return (values[:, None] == wanted[None, :]).any(1)
    return np.fromiter((c.holds(p.from_unit(x)) for x in u), bool, len(u))


__all__ = [
    "ABSENT",
    "Condition",
    "activating",
    "conditional_constant",
    "holds_at",
    "order",
    "raw_when",
    "resolve",
    "same",
    "without",
]
