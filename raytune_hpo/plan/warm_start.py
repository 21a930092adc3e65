"""The sweep file's ``warm_start``: earlier sweeps' results, told to the searcher before it
suggests, through Ray's ``Searcher.add_evaluated_point``.

An earlier sweep directory holds ``sweep.yaml`` and either ``results.csv`` (a finished sweep)
or Ray's trial directories (``params.json`` and ``result.json``; an interrupted one). Its space
must be this sweep's (same parameter names, types, bounds, log scale, choices); its rows give
each trial's searched values, its value of this sweep's metric, whether it failed, and the
epochs it trained (BOHB's budget). What each searcher does with them: see the searchers.

Several objectives or constraints: a row also gives every objective and constrained metric
(``WarmPoint.values``), told to a searcher whose ``add_evaluated_point`` takes ``result`` (ours
that learn them: tpe, bayesopt, nsga2, pso, approx_gradient); ``value`` stays the first
objective's.
"""

from __future__ import annotations

import inspect
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_hpo.errors import SpecError, UserError
from raytune_hpo.names import (
    BUDGET_ATTR,
    ERROR_FILE,
    ERROR_PICKLE,
    PARAMS_FILE,
    RESULT_FILE,
    RESULTS_CSV,
    SPEC_COPY,
    config_column,
)
from raytune_hpo.sweep.space import CategoricalParam, IntParam, SearchSpace
from raytune_hpo.sweep.spec import SweepSpec


@dataclass(frozen=True)
class WarmPoint:
    """One earlier trial: its configuration (nested, as the searcher suggests them), its value
    of the metric (the first objective; None when it failed or has none), the epochs it
    trained, and its value of every objective and constrained metric it has (a number)."""

    config: dict[str, Any]
    value: float | None
    error: bool
    budget: float | None
    values: dict[str, float] | None = None


def load(spec: SweepSpec) -> tuple[tuple[WarmPoint, ...], list[str]]:
    """The earlier results of ``spec.warm_start`` and warnings; ValueError (one line naming
    ``warm_start``) for a missing directory or one without a sweep or results. The earlier
    space may differ (parameters added or removed, other bounds or choices): each difference
    is a warning, and trials whose values this sweep's space cannot take are left out with a
    count."""
    points: list[WarmPoint] = []
    warnings: list[str] = []
    for path in spec.warm_start_paths:
        where = f"warm_start: {path}"
        earlier = _earlier_sweep(path, where)
        changes = space_changes(earlier.search_space, spec.search_space)
        if changes:
            warnings.append(f"{where}: its space differs from this sweep's: {'; '.join(changes)}")
        rows = _csv_rows(path, earlier, spec.objectives, where)
        if rows is None:
            rows = _ray_rows(path, earlier, spec.objectives, where)
        defaults = _defaults(earlier, spec.search_space)
        kept, why = [], Counter[str]()
        for r in rows:
            point, reason = _point(spec.search_space, r, defaults)
            if point is None:
                why[reason] += 1
            else:
                kept.append(point)
        if why:
            reasons = ", ".join(f"{n} {reason}" for reason, n in why.most_common())
            warnings.append(
                f"{where}: {sum(why.values())} of {len(rows)} trials left out ({reasons})"
            )
        changed = sorted(
            k
            for k in set(earlier.trainable) | set(spec.trainable)
            if earlier.trainable.get(k) != spec.trainable.get(k)
        )
        if changed:
            warnings.append(
                f"{where}: trainable settings differ ({', '.join(changed)}); its results may "
                "not compare with this sweep's"
            )
        points.extend(kept)
    return tuple(points), warnings


def _earlier_sweep(path: Path, where: str) -> SweepSpec:
    if not path.is_dir():
        raise UserError("no such directory", field=where)
    if not (path / SPEC_COPY).is_file():
        raise UserError(f"holds no sweep (no {SPEC_COPY}; give a sweep directory)", field=where)
    try:
        return SweepSpec.from_yaml(path / SPEC_COPY)
    except SpecError as e:
        raise UserError(f"its {SPEC_COPY} cannot be read ({e})", field=where) from None


def _describe(p: Any) -> dict[str, Any]:
    if isinstance(p, CategoricalParam):
        return {"type": "categorical", "choices": list(p.choices)}
    kind = "int" if isinstance(p, IntParam) else "float"
    return {"type": kind, "low": p.low, "high": p.high, "log": p.log}


def space_changes(earlier: SearchSpace, now: SearchSpace) -> list[str]:
    """What differs between an earlier sweep's space and this one, one phrase each."""
    there, here = (
        dict(zip(earlier.names, earlier.params.values(), strict=True)),
        dict(zip(now.names, now.params.values(), strict=True)),
    )
    out = []
    if only_here := [n for n in here if n not in there]:
        out.append(f"{', '.join(only_here)} not in its space (its trials ran with the default)")
    if only_there := [n for n in there if n not in here]:
        out.append(f"{', '.join(only_there)} only in its space (left out)")
    path_there = dict(zip(earlier.names, earlier.params, strict=True))
    path_here = dict(zip(now.names, now.params, strict=True))
    for name in (n for n in here if n in there):
        a, b = _describe(there[name]), _describe(here[name])
        a["when"], b["when"] = earlier.describe(path_there[name]), now.describe(path_here[name])
        for key in ("type", "low", "high", "log", "choices", "when"):
            if a.get(key) != b.get(key):
                out.append(f"space.{name}.{key} is {a.get(key)!r} there, {b.get(key)!r} here")
                break
    return out


def _defaults(earlier: SweepSpec, now: SearchSpace) -> dict[str, Any]:
    """The values the earlier trials ran with for the parameters it did not search: its
    trainable's fixed config (the built-in CNN's defaults included)."""
    fixed = earlier.search_space.nest({}) | earlier.trainable_section.fixed_config()
    out = {}
    for path, name in zip(now.params, now.names, strict=True):
        node: Any = fixed
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out[name] = node
    return out


def _csv_rows(path: Path, earlier: SweepSpec, objectives, where: str) -> list[dict] | None:
    """A finished sweep's trials (``results.csv``), keyed by its own parameter names."""
    import pandas as pd

    if not (path / RESULTS_CSV).is_file():
        return None
    df = pd.read_csv(path / RESULTS_CSV)
    for metric in objectives.metrics:
        if metric not in df.columns:
            what = "the metric" if not objectives.several else "an objective"
            raise UserError(f"its {RESULTS_CSV} has no column {metric!r} ({what})", field=where)
    metric = objectives.metrics[0]
    space = earlier.search_space
    # An empty cell of a conditional parameter: it did not apply, the trial ran without it.
    named = zip(space.params, space.names, strict=True)
    sometimes = {n for path, n in named if path in space.conditions}
    rows = []
    for rec in df.to_dict("records"):
        config = {n: rec.get(config_column(n), math.nan) for n in space.names}
        config = {n: v for n, v in config.items() if not (n in sometimes and _empty(v))}
        rows.append(
            {
                "config": config,
                "value": rec.get(metric),
                "error": rec.get("status") == "ERROR",
                "budget": rec.get("epochs"),
                "values": {m: rec.get(m, math.nan) for m in objectives.reported},
            }
        )
    return rows


def _ray_rows(path: Path, earlier: SweepSpec, objectives, where: str) -> list[dict[str, Any]]:
    """An interrupted sweep: each trial directory's ``params.json`` and last reported result."""
    metric = objectives.metrics[0]
    rows = []
    for trial in sorted(d for d in path.iterdir() if (d / PARAMS_FILE).is_file()):
        try:
            config = json.loads((trial / PARAMS_FILE).read_text())
            lines = (
                (trial / RESULT_FILE).read_text().splitlines()
                if (trial / RESULT_FILE).is_file()
                else []
            )
            last = json.loads(lines[-1]) if lines and lines[-1].strip() else {}
            flat = earlier.search_space.flat_config(config)
        except (OSError, ValueError, KeyError):
            continue  # a trial cut off mid-write: left out
        failed = (trial / ERROR_FILE).is_file() or (trial / ERROR_PICKLE).is_file()
        if not last and not failed:
            continue  # never reported: nothing to learn
        rows.append(
            {
                "config": flat,
                "value": last.get(metric),
                "error": failed,
                "budget": last.get(BUDGET_ATTR),
                "values": {m: last.get(m, math.nan) for m in objectives.reported},
            }
        )
    if not rows:
        raise UserError(f"holds no results ({RESULTS_CSV} or Ray's trial results)", field=where)
    return rows


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _coerce(p: Any, value: Any) -> Any:
    """A value read back (CSV, JSON) as the parameter's own type; None when it cannot be."""
    if isinstance(p, CategoricalParam):
        for c in p.choices:
            if c is value or (type(c) is not bool and c == value) or str(c) == str(value):
                return c
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x) or not p.low <= x <= p.high:
        return None
    return int(round(x)) if isinstance(p, IntParam) else x


def _point(space: SearchSpace, row: dict[str, Any], defaults: dict[str, Any]):
    """``(WarmPoint, None)``, or ``(None, why)`` when this space cannot take the trial. A
    parameter of a conditional space that does not apply to the trial's values is left out,
    whatever it held (parents first)."""
    flat: dict[tuple[str, ...], Any] = {}
    names = dict(zip(space.params, space.names, strict=True))
    for path in space.order:
        if not space.is_active(path, flat):
            continue
        name, p = names[path], space.params[path]
        raw = row["config"].get(name, defaults.get(name))
        if raw is None:
            return None, f"without a value for {name}"
        v = _coerce(p, raw)
        if v is None:
            return None, f"with {name} outside this sweep's space"
        flat[path] = v
    value, error = row["value"], bool(row["error"])
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if error or math.isnan(value):
        value = None
    budget = row.get("budget")
    try:
        budget = float(budget) if budget is not None and float(budget) > 0 else None
    except (TypeError, ValueError):
        budget = None
    config = space.nest({path: flat[path] for path in space.params if path in flat})
    values = {m: _float(v) for m, v in (row.get("values") or {}).items()}
    values = {m: v for m, v in values.items() if not math.isnan(v)}  # missing: left out
    return WarmPoint(config, value, error or value is None, budget, values or None), None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def can_learn(factory: Any) -> bool:
    """Whether a searcher (class) takes earlier results: it implements Ray's
    ``add_evaluated_point`` (Ray's BasicVariantGenerator, random and grid, does not)."""
    from ray.tune.search import Searcher

    if not (isinstance(factory, type) and issubclass(factory, Searcher)):
        return False
    return factory.add_evaluated_point is not Searcher.add_evaluated_point


def tells_every_objective(factory: Any) -> bool:
    """Whether a searcher (class) is told every objective and constrained metric of an earlier
    trial (its ``add_evaluated_point`` takes ``result``), or is told nothing."""
    if not can_learn(factory):
        return True
    return "result" in inspect.signature(factory.add_evaluated_point).parameters


def tell(searcher: Any, points: tuple[WarmPoint, ...]) -> None:
    """Tell ``searcher`` the earlier results (it must know its metric and mode); one that takes
    ``result`` is given every objective and constrained metric of each too."""
    if not points or not can_learn(type(searcher)):
        return
    takes = inspect.signature(searcher.add_evaluated_point).parameters
    for p in points:
        kw: dict[str, Any] = {"budget": p.budget} if "budget" in takes and p.budget else {}
        if "result" in takes and p.values:
            kw["result"] = dict(p.values)
        searcher.add_evaluated_point(p.config, p.value, error=p.error, **kw)


__all__ = ["WarmPoint", "can_learn", "load", "space_changes", "tell", "tells_every_objective"]
