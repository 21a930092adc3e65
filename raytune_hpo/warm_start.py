"""The sweep file's ``warm_start``: earlier sweeps' results, told to the searcher before it
suggests, through Ray's ``Searcher.add_evaluated_point``.

An earlier sweep directory holds ``sweep.yaml`` and either ``results.csv`` (a finished sweep)
or Ray's trial directories (``params.json`` and ``result.json``; an interrupted one). Its space
must be this sweep's (same parameter names, types, bounds, log scale, choices); its rows give
each trial's searched values, its value of this sweep's metric, whether it failed, and the
epochs it trained (BOHB's budget). What each searcher does with them: see the searchers.
"""

from __future__ import annotations

import inspect
import json
import math
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
from raytune_hpo.space import CategoricalParam, IntParam, SearchSpace
from raytune_hpo.spec import SweepSpec


@dataclass(frozen=True)
class WarmPoint:
    """One earlier trial: its configuration (nested, as the searcher suggests them), its value
    of the metric (None when it failed or has none), and the epochs it trained."""

    config: dict[str, Any]
    value: float | None
    error: bool
    budget: float | None


def load(spec: SweepSpec) -> tuple[tuple[WarmPoint, ...], list[str]]:
    """The earlier results of ``spec.warm_start`` and warnings; ValueError (one line naming
    ``warm_start``) for a missing directory, one without a sweep, or a space that differs."""
    points: list[WarmPoint] = []
    warnings: list[str] = []
    for path in spec.warm_start_paths:
        where = f"warm_start: {path}"
        earlier = _earlier_sweep(path, where)
        check_space(earlier.search_space, spec.search_space, where)
        rows = _csv_rows(path, spec, where) if (path / RESULTS_CSV).is_file() else None
        if rows is None:
            rows = _ray_rows(path, spec, where)
        kept = [p for p in (_point(spec.search_space, r) for r in rows) if p is not None]
        if len(kept) < len(rows):
            warnings.append(
                f"{where}: {len(rows) - len(kept)} of {len(rows)} trials left out (values "
                "this sweep's space cannot take)"
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


def check_space(earlier: SearchSpace, now: SearchSpace, where: str) -> None:
    """ValueError naming what differs between an earlier sweep's space and this one."""
    there, here = (
        dict(zip(earlier.names, earlier.params.values(), strict=True)),
        dict(zip(now.names, now.params.values(), strict=True)),
    )
    problems = []
    if only_here := [n for n in here if n not in there]:
        problems.append(f"{', '.join(only_here)} not in its space")
    if only_there := [n for n in there if n not in here]:
        problems.append(f"{', '.join(only_there)} only in its space")
    for name in (n for n in here if n in there):
        a, b = _describe(there[name]), _describe(here[name])
        for key in ("type", "low", "high", "log", "choices"):
            if a.get(key) != b.get(key):
                problems.append(f"space.{name}.{key} is {a.get(key)!r} there, {b.get(key)!r} here")
                break
    if problems:
        raise UserError(f"its space differs from this sweep's: {'; '.join(problems)}", field=where)


def _csv_rows(path: Path, spec: SweepSpec, where: str) -> list[dict[str, Any]]:
    import pandas as pd

    df = pd.read_csv(path / RESULTS_CSV)
    if spec.metric not in df.columns:
        raise UserError(
            f"its {RESULTS_CSV} has no column {spec.metric!r} (the metric)", field=where
        )
    rows = []
    for rec in df.to_dict("records"):
        config = {n: rec.get(config_column(n), math.nan) for n in spec.search_space.names}
        rows.append(
            {
                "config": config,
                "value": rec.get(spec.metric),
                "error": rec.get("status") == "ERROR",
                "budget": rec.get("epochs"),
            }
        )
    return rows


def _ray_rows(path: Path, spec: SweepSpec, where: str) -> list[dict[str, Any]]:
    """An interrupted sweep: each trial directory's ``params.json`` and last reported result."""
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
            flat = spec.search_space.flat_config(config)
        except (OSError, ValueError, KeyError):
            continue  # a trial cut off mid-write: left out
        failed = (trial / ERROR_FILE).is_file() or (trial / ERROR_PICKLE).is_file()
        if not last and not failed:
            continue  # never reported: nothing to learn
        rows.append(
            {
                "config": flat,
                "value": last.get(spec.metric),
                "error": failed,
                "budget": last.get(BUDGET_ATTR),
            }
        )
    if not rows:
        raise UserError(f"holds no results ({RESULTS_CSV} or Ray's trial results)", field=where)
    return rows


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


def _point(space: SearchSpace, row: dict[str, Any]) -> WarmPoint | None:
    flat = {}
    for path, name, p in zip(space.params, space.names, space.params.values(), strict=True):
        v = _coerce(p, row["config"].get(name))
        if v is None:
            return None
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
    return WarmPoint(space.nest(flat), value, error or value is None, budget)


def can_learn(factory: Any) -> bool:
    """Whether a searcher (class) takes earlier results: it implements Ray's
    ``add_evaluated_point`` (Ray's BasicVariantGenerator, random and grid, does not)."""
    from ray.tune.search import Searcher

    if not (isinstance(factory, type) and issubclass(factory, Searcher)):
        return False
    return factory.add_evaluated_point is not Searcher.add_evaluated_point


def tell(searcher: Any, points: tuple[WarmPoint, ...]) -> None:
    """Tell ``searcher`` the earlier results (it must know its metric and mode)."""
    if not points or not can_learn(type(searcher)):
        return
    takes_budget = "budget" in inspect.signature(searcher.add_evaluated_point).parameters
    for p in points:
        kw = {"budget": p.budget} if takes_budget and p.budget else {}
        searcher.add_evaluated_point(p.config, p.value, error=p.error, **kw)


__all__ = ["WarmPoint", "can_learn", "check_space", "load", "tell"]
