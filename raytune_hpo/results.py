"""A sweep's results: one row per trial, best first (``results.csv`` in the sweep directory),
and the sweep as it was run (``sweep.yaml``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from raytune_hpo.spec import SweepSpec, UserError

RESULTS_CSV = "results.csv"
SPEC_COPY = "sweep.yaml"
# Metric columns shown in results tables, besides the sweep's own metric.
REPORT_COLUMNS = ("val_accuracy", "val_loss", "train_loss", "val_accuracy_std")


@dataclass
class SweepResult:
    path: str
    table: pd.DataFrame  # one row per trial, best first
    metric: str
    mode: str

    @property
    def best(self) -> pd.Series | None:
        ok = self.table[self.table["status"] != "ERROR"]
        return None if ok.empty else ok.iloc[0]

    @property
    def best_config(self) -> dict[str, Any]:
        best = self.best
        if best is None:
            return {}
        return {
            k[len("config.") :]: v.item() if hasattr(v, "item") else v
            for k, v in best.items()
            if k.startswith("config.")
        }

    @property
    def num_errors(self) -> int:
        return int((self.table["status"] == "ERROR").sum())


def results_table(grid, spec: SweepSpec) -> pd.DataFrame:
    """One row per trial: status, epochs, final metrics and searched values; best first."""
    searched = spec.search_space
    rows = []
    for r in grid:
        m = r.metrics or {}
        row: dict[str, Any] = {
            "trial_id": m.get("trial_id") or Path(r.path).name,
            "status": "ERROR" if r.error else "OK",
            "epochs": m.get("training_iteration", 0),
            spec.metric: m.get(spec.metric, math.nan),
        }
        for col in REPORT_COLUMNS:
            if col != spec.metric and col in m:
                row[col] = m[col]
        row["time_s"] = round(float(m.get("time_total_s", math.nan)), 2)
        cfg = r.config or {}
        for name, value in searched.flat_config(cfg).items() if searched.params else ():
            row[f"config.{name}"] = value
        if r.error:
            row["error"] = str(r.error).strip().splitlines()[-1][:200]
        rows.append(row)
    return sort_table(pd.DataFrame(rows), spec.metric, spec.mode)


def sort_table(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    if df.empty:
        return df
    failed = df["status"] == "ERROR"
    ok = df[~failed].sort_values(metric, ascending=mode == "min", na_position="last")
    return pd.concat([ok, df[failed]], ignore_index=True)


def write_spec_copy(spec: SweepSpec, exp: Path) -> None:
    """``sweep.yaml`` in the sweep directory; with user code, where that code is."""
    exp.mkdir(parents=True, exist_ok=True)
    (exp / SPEC_COPY).write_text(spec.to_yaml(absolute_code_dir=spec.uses_code))


def read_spec_copy(where: str | Path) -> SweepSpec:
    """The sweep a sweep directory holds (``sweep.yaml``), with its user code found where
    the original sweep file was."""
    copy = Path(where).expanduser() / SPEC_COPY
    if not copy.is_file():
        raise UserError(f"{where}: no {SPEC_COPY} here (is this a sweep directory?)")
    return SweepSpec.from_yaml(copy)


def load_results(path: str | Path) -> SweepResult:
    """Read a finished sweep's ``results.csv`` (``path``: the experiment directory)."""
    p = Path(path).expanduser()
    csv = p / RESULTS_CSV
    if not csv.is_file():
        raise UserError(f"{path}: no {RESULTS_CSV} here (is this a finished sweep dir?)")
    spec = read_spec_copy(p) if (p / SPEC_COPY).is_file() else None
    metric = spec.metric if spec else "val_accuracy"
    mode = spec.mode if spec else "max"
    return SweepResult(str(p), sort_table(pd.read_csv(csv), metric, mode), metric, mode)


__all__ = [
    "RESULTS_CSV",
    "SPEC_COPY",
    "SweepResult",
    "load_results",
    "read_spec_copy",
    "results_table",
    "sort_table",
]
