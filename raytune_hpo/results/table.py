"""A sweep's results: one row per trial, best first (``results.csv`` in the sweep directory),
and the sweep as it was run (``sweep.yaml``).

A sweep still running (or interrupted) has no ``results.csv`` yet: ``load_results`` then reads
what Ray Tune writes as it goes (``raytune_hpo.results.live``). The sweep directory may be
local or remote (``raytune_hpo.storage``); the spec copy and table helpers are
``raytune_hpo.results.sweep_dir``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import raytune_hpo.storage as storage
from raytune_hpo import ray_compat
from raytune_hpo.errors import UserError
from raytune_hpo.names import (
    BUDGET_ATTR,
    FEASIBLE,
    PARETO_RANK,
    RESULTS_CSV,
    SPEC_COPY,
    TIME_TOTAL_S,
    config_column,
    config_name,
)
from raytune_hpo.objectives import Objectives
from raytune_hpo.results.live import SweepRecord, read_sweep, trial_table
from raytune_hpo.results.sweep_dir import (
    BY,
    REPORT_COLUMNS,
    apply_end,
    apply_stop,
    read_spec_copy,
    searched_values,
    sort_table,
    stop_criteria,
    write_results_csv,
    write_spec_copy,
)
from raytune_hpo.sweep.spec import SweepSpec


@dataclass
class SweepResult:
    path: str
    table: pd.DataFrame  # one row per trial, best first (by pareto_rank when ranked)
    metric: str | list[str]
    mode: str | list[str]
    live: bool = False  # read from Ray's files: the sweep runs still (or was interrupted)
    objectives: Objectives | None = None  # None: from metric and mode

    def __post_init__(self) -> None:
        if self.objectives is None:
            self.objectives = Objectives.from_fields(self.metric, self.mode)

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto front: the feasible trials no other feasible trial dominates (rank 1);
        the best trials (equal first) of a sweep that does not rank."""
        t = self.table
        if PARETO_RANK not in t:
            return t.head(1) if self.best is not None else t.iloc[:0]
        return t[(t[PARETO_RANK] == 1) & t[FEASIBLE].astype(bool)]

    @property
    def best(self) -> pd.Series | None:
        ok = self.table[self.table["status"] != "ERROR"]
        return None if ok.empty else ok.iloc[0]

    @property
    def best_config(self) -> dict[str, Any]:
        best = self.best
        if best is None:
            return {}
        out = {}
        for k, v in best.items():
            name = config_name(str(k))
            if name and not _empty(v):  # empty: it did not apply (conditional)
                out[name] = v.item() if hasattr(v, "item") else v
        return out

    @property
    def num_errors(self) -> int:
        return int((self.table["status"] == "ERROR").sum())


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def results_table(grid, spec: SweepSpec, ends: dict | None = None) -> pd.DataFrame:
    """One row per trial: status, epochs, final metrics and searched values; best first.
    ``ends``: how a time limit ended trials (``raytune_hpo.results.trial_ends``), trial id ->
    record."""
    searched = spec.search_space
    objectives = spec.objectives
    criteria = stop_criteria(spec)
    rows = []
    for tid, r in zip(_trial_ids(grid), grid, strict=True):
        m = r.metrics or {}
        row: dict[str, Any] = {
            "trial_id": tid or m.get("trial_id") or Path(r.path).name,
            # A trial that never reported (still pending when the sweep was interrupted).
            "status": "ERROR" if r.error else "OK" if BUDGET_ATTR in m else "PENDING",
            "epochs": m.get(BUDGET_ATTR, 0),
            **{name: m.get(name, math.nan) for name in objectives.reported},
        }
        for col in REPORT_COLUMNS:
            if col not in row and col in m:
                row[col] = m[col]
        row["time_s"] = round(float(m.get(TIME_TOTAL_S, math.nan)), 2)
        for name, value in searched_values(searched, r.config).items():
            row[config_column(name)] = value
        if r.error:
            row["error"] = str(r.error).strip().splitlines()[-1][:200]
        apply_end(row, (ends or {}).get(row["trial_id"]))
        apply_stop(row, m, criteria)
        rows.append(row)
    return sort_table(pd.DataFrame(rows), spec.metric, spec.mode, objectives)


def _trial_ids(grid) -> list[str | None]:
    """Each result's own trial id, in the grid's order. Not its last result's ``trial_id``:
    a trial that copied another under population-based training as its last step keeps the
    copied trial's last result. Ray's ResultGrid lists ``ExperimentAnalysis.trials`` in order
    but does not say so publicly; without them, None (the result's own ``trial_id``)."""
    trials = ray_compat.result_grid_trials(grid)
    if trials is None or len(trials) != len(grid):
        return [None] * len(grid)
    return [t.trial_id for t in trials]


def load_results(path: str | Path, by: str = "last") -> SweepResult:
    """A sweep's table: a finished sweep's ``results.csv`` (``by="last"``), else read from
    Ray's files as they are now (a running or interrupted sweep, or ``by="best"``)."""
    if by not in BY:
        raise UserError(f"--by {by}: allowed: {', '.join(BY)}")
    where = storage.normalize(path)
    csv = storage.join(where, RESULTS_CSV)
    if by == "last" and storage.is_file(csv):
        spec = read_spec_copy(where) if storage.is_file(storage.join(where, SPEC_COPY)) else None
        metric = spec.metric if spec else "val_accuracy"
        mode = spec.mode if spec else "max"
        objectives = Objectives.from_fields(metric, mode, spec.constraints if spec else None)
        df = pd.read_csv(io.StringIO(storage.read_text(csv)))
        table = sort_table(df, metric, mode, objectives)
        return SweepResult(where, table, metric, mode, objectives=objectives)
    rec = read_sweep(where)
    return SweepResult(
        where, rec.table(by), rec.metric, rec.mode, live=not rec.finished, objectives=rec.objectives
    )


def to_json(df: pd.DataFrame) -> str:
    """Rows as JSON records with every float at full precision (``repr``, which reads back
    to the same double), NaN as null."""

    def plain(v: Any) -> Any:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    records = [{k: plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
    return json.dumps(records, indent=2, allow_nan=False)


__all__ = [
    "BY",
    "RESULTS_CSV",
    "SPEC_COPY",
    "SweepRecord",
    "SweepResult",
    "load_results",
    "read_spec_copy",
    "read_sweep",
    "results_table",
    "sort_table",
    "to_json",
    "trial_table",
    "write_results_csv",
    "write_spec_copy",
]
