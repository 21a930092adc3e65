"""Several objectives and constraints: which trials are best when no single number says.

A sweep's ``metric``/``mode`` may name several objectives, and its ``constraints`` bounds that
reported metrics must stay within. Trials are ranked by non-dominated sorting (Deb et al.,
2002, NSGA-II; computed by moocore's ``pareto_rank``): rank 1 is the Pareto front of the
feasible trials, rank 2 the front once those are set aside, and so on. Infeasible trials (a
constraint broken, a failed trial, an objective missing or not finite) rank after every
feasible one, ordered by how far they lie outside their bounds (Deb's constrained domination,
same paper). ``HypervolumeBox`` measures a front by its hypervolume (moocore) in a box the
trials themselves fix (see there). Nothing here imports moocore until it ranks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from raytune_hpo.names import FEASIBLE, PARETO_RANK

# Built-in searchers that run under several objectives or constraints: those that learn nothing
# from results (random ... hypertiling), and those that learn every objective and constraint
# (given the ``Objectives``: tpe, bayesopt, nsga2 through Optuna's multi-objective samplers, pso
# and approx_gradient through a ParEGO scalarisation, ``objectives.scalarise``). The one list of
# built-ins (assemble.check_objectives refuses the others: bohb); a plug-in declares it takes
# them with ``supports_multi_objective = True`` (``MULTI_OBJECTIVE_ATTR``).
MULTI_OBJECTIVE_SEARCHERS = frozenset(
    {"random", "grid", "sobol", "lhs", "rsa", "hypertiling"}
    | {"tpe", "bayesopt", "nsga2", "pso", "approx_gradient"}
    | {"auto"}  # it chooses one of the above for several objectives
)
MULTI_OBJECTIVE_ATTR = "supports_multi_objective"
# Schedulers that take several objectives: fifo runs everything, asha ranks trials at a rung
# by non-dominated sorting (raytune_hpo.schedulers._moasha).
MULTI_OBJECTIVE_SCHEDULERS = frozenset({"fifo", "asha"})
MARGIN = 0.1  # the hypervolume's reference point: the nadir plus this share of each range


@dataclass(frozen=True)
class Constraint:
    """A reported metric that must stay within ``[low, high]`` (None: unbounded there)."""

    metric: str
    low: float | None = None
    high: float | None = None

    def violation(self, values: Any) -> np.ndarray:
        """How far each value lies outside the bounds, relative to the bound's size (0 within
        them; inf when missing or not finite)."""
        v = _floats(values)
        out = np.zeros(len(v))
        with np.errstate(invalid="ignore"):
            if self.low is not None:
                out = np.maximum(out, (self.low - v) / _scale(self.low))
            if self.high is not None:
                out = np.maximum(out, (v - self.high) / _scale(self.high))
        return np.where(np.isfinite(v), out, np.inf)

    def signed(self, value: Any) -> dict[str, float]:
        """Optuna's convention, one value per bound, named by the bound (``params_m <= 1.5``):
        <= 0 within it, relative to the bound's size as ``violation``; NaN when missing or
        not finite."""
        v = float(_floats([value])[0])
        v = v if np.isfinite(v) else np.nan
        out = {}
        if self.low is not None:
            out[f"{self.metric} >= {self.low:g}"] = (self.low - v) / _scale(self.low)
        if self.high is not None:
            out[f"{self.metric} <= {self.high:g}"] = (v - self.high) / _scale(self.high)
        return out

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} <= {self.metric} <= {self.high:g}"
        if self.low is not None:
            return f"{self.metric} >= {self.low:g}"
        return f"{self.metric} <= {self.high:g}"


def _scale(bound: float) -> float:
    return abs(bound) if bound != 0 else 1.0


def _floats(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


@dataclass(frozen=True)
class Objectives:
    """What a sweep optimises: ``metrics`` with one mode each, and its ``constraints``."""

    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()

    @classmethod
    def of(cls, spec) -> Objectives:
        """From a ``SweepSpec`` (its ``metric``, ``mode`` and ``constraints``)."""
        return cls.from_fields(spec.metric, spec.mode, spec.constraints)

    @classmethod
    def from_fields(cls, metric: Any, mode: Any, constraints: Any = None) -> Objectives:
        metrics = (metric,) if isinstance(metric, str) else tuple(metric)
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
        bounds = tuple(
            Constraint(name, _bound(b, "min"), _bound(b, "max"))
            for name, b in (constraints or {}).items()
        )
        return cls(metrics, modes, bounds)

    @property
    def several(self) -> bool:
        """More than one objective."""
        return len(self.metrics) > 1

    @property
    def ranked(self) -> bool:
        """Trials are ranked by ``pareto_rank`` (several objectives or any constraint);
        otherwise the sweep is an ordinary single-objective one."""
        return self.several or bool(self.constraints)

    @property
    def reported(self) -> tuple[str, ...]:
        """Every metric a result must hold: the objectives, then the constrained metrics."""
        extra = [c.metric for c in self.constraints if c.metric not in self.metrics]
        return (*self.metrics, *dict.fromkeys(extra))

    def field_of(self, name: str) -> tuple[Any, ...]:
        """Where ``name`` is given in the sweep file (for one-line errors)."""
        if name in self.metrics:
            return ("metric",) if not self.several else ("metric", self.metrics.index(name))
        return ("constraints", name)

    def describe(self) -> str:
        """``max val_accuracy, min latency_ms; params_m <= 1.5``."""
        goals = ", ".join(f"{o} {m}" for m, o in zip(self.metrics, self.modes, strict=True))
        bounds = ", ".join(c.describe() for c in self.constraints)
        return f"{goals}; {bounds}" if bounds else goals

    # ------------------------------------------------------------------ tables
    def losses(self, table: pd.DataFrame) -> np.ndarray:
        """One row per trial, one column per objective, to minimise (``max`` negated); NaN
        where missing or not a number."""
        cols = []
        for m, mode in zip(self.metrics, self.modes, strict=True):
            v = _floats(table[m]) if m in table else np.full(len(table), np.nan)
            cols.append(-v if mode == "max" else v)
        return np.column_stack(cols) if cols else np.empty((len(table), 0))

    def violations(self, table: pd.DataFrame) -> np.ndarray:
        """Each trial's total violation (0: feasible); inf for a failed trial or one whose
        objectives are missing or not finite."""
        total = np.zeros(len(table))
        for c in self.constraints:
            col = table[c.metric] if c.metric in table else np.full(len(table), np.nan)
            total = total + c.violation(col)
        unusable = ~np.isfinite(self.losses(table)).all(axis=1)
        if "status" in table:
            unusable |= (table["status"] == "ERROR").to_numpy()
        return np.where(unusable, np.inf, total)

    def with_ranks(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` with ``feasible`` and ``pareto_rank`` (computed anew from its values),
        sorted by rank, then by the first objective."""
        if table.empty:
            return table.assign(**{FEASIBLE: pd.Series(dtype=bool)}).assign(
                **{PARETO_RANK: pd.Series(dtype=int)}
            )
        rank, feasible = rank_points(self.losses(table), self.violations(table))
        out = table.drop(columns=[FEASIBLE, PARETO_RANK], errors="ignore")
        out.insert(min(2, len(out.columns)), FEASIBLE, feasible)
        out.insert(min(2, len(out.columns)), PARETO_RANK, rank)
        first = self.losses(out)[:, 0]
        order = np.lexsort((np.nan_to_num(first, nan=np.inf), rank))
        return out.iloc[order].reset_index(drop=True)


def _bound(b: Any, key: str) -> float | None:
    value = b.get(key) if isinstance(b, dict) else getattr(b, key, None)
    return None if value is None else float(value)


# ---------------------------------------------------------------------- ranking
def rank_points(losses: np.ndarray, violation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto ranks (1 = non-dominated among the feasible points) and feasibility of points
    to minimise. Infeasible points (``violation`` > 0) come after every feasible rank, one rank
    per distinct violation, the least violated first; inf last."""
    import moocore

    losses = np.asarray(losses, dtype=float).reshape(len(violation), -1)
    violation = np.asarray(violation, dtype=float)
    feasible = violation == 0
    rank = np.zeros(len(violation), dtype=int)
    if feasible.any():
        rank[feasible] = moocore.pareto_rank(losses[feasible]) + 1
    worse = np.unique(violation[~feasible])  # sorted, inf last
    after = rank.max(initial=0) + 1
    rank[~feasible] = after + np.searchsorted(worse, violation[~feasible])
    return rank, feasible


# ---------------------------------------------------------------------- hypervolume
@dataclass(frozen=True)
class HypervolumeBox:
    """The box a hypervolume is measured in, in the objectives' own units (to minimise): from
    the ideal point (the best value of each objective among the feasible trials) to the
    reference point (the worst value among them, the nadir, plus ``MARGIN`` of the range, so
    the trials at the edges of the front count too). Values are scaled so that the box is the
    unit cube: a hypervolume of 1 would be one trial best in every objective at once."""

    ideal: np.ndarray
    reference: np.ndarray

    @classmethod
    def around(cls, losses: Iterable[np.ndarray]) -> HypervolumeBox | None:
        """The box of the feasible points of one or more sweeps (None: no feasible point)."""
        pts = [p for p in losses if len(p)]
        if not pts:
            return None
        allp = np.vstack(pts)
        ideal, nadir = allp.min(axis=0), allp.max(axis=0)
        spread = np.where(nadir > ideal, nadir - ideal, np.maximum(np.abs(nadir), 1.0))
        return cls(ideal, nadir + MARGIN * spread)

    def scaled(self, losses: np.ndarray) -> np.ndarray:
        return (np.asarray(losses, dtype=float) - self.ideal) / (self.reference - self.ideal)

    def hypervolume(self, losses: np.ndarray) -> float:
        """The hypervolume of ``losses`` (feasible points, to minimise) in this box, 0 to 1."""
        import moocore

        pts = self.scaled(losses)
        if not len(pts):
            return 0.0
        return float(moocore.hypervolume(pts, ref=np.ones(pts.shape[1])))

    def curve(self, losses: np.ndarray, feasible: np.ndarray, points: int = 200) -> np.ndarray:
        """The hypervolume of the feasible points among the first i, for i = 1..n (at most
        ``points`` values computed, the steps between repeated)."""
        n = len(losses)
        at = np.unique(np.linspace(1, n, min(n, points)).round().astype(int)) if n else ()
        out = np.zeros(n)
        for i in at:
            out[i - 1] = self.hypervolume(losses[:i][feasible[:i]])
        return np.maximum.accumulate(out) if n else out


def describe_reference(box: HypervolumeBox, objectives: Objectives) -> str:
    """The reference point in the objectives' own units and modes."""
    parts = []
    for m, mode, r in zip(objectives.metrics, objectives.modes, box.reference, strict=True):
        value = -r if mode == "max" else r
        parts.append(f"{m} {value:.4g}")
    return ", ".join(parts)


__all__ = [
    "MARGIN",
    "MULTI_OBJECTIVE_ATTR",
    "MULTI_OBJECTIVE_SCHEDULERS",
    "MULTI_OBJECTIVE_SEARCHERS",
    "Constraint",
    "HypervolumeBox",
    "Objectives",
    "describe_reference",
    "rank_points",
]
