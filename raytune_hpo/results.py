"""A sweep's results: one row per trial, best first (``results.csv`` in the sweep directory),
and the sweep as it was run (``sweep.yaml``).

A sweep still running (or interrupted) has no ``results.csv`` yet: ``read_sweep`` then reads
what Ray Tune writes as it goes, the newest ``experiment_state-*.json`` (each trial's status,
config and error file) and each trial's ``result.json`` (one line per reported epoch). The
sweep directory may be local or remote (``raytune_hpo.storage``).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import (
    BUDGET_ATTR,
    ERROR_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    RESULTS_CSV,
    SPEC_COPY,
    STATE_GLOB,
    TIME_TOTAL_S,
    TIMESTAMP,
    TRIAL_ENDS,
    config_column,
    config_name,
)
from raytune_hpo.spec import SweepSpec, parse_yaml
from raytune_hpo.trial_ends import parse_ends

# Metric columns shown in results tables, besides the sweep's own metric.
REPORT_COLUMNS = ("val_accuracy", "val_loss", "train_loss", "val_accuracy_std")


@dataclass
class SweepResult:
    path: str
    table: pd.DataFrame  # one row per trial, best first
    metric: str
    mode: str
    live: bool = False  # read from Ray's files: the sweep runs still (or was interrupted)

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
            config_name(k): v.item() if hasattr(v, "item") else v
            for k, v in best.items()
            if config_name(k)
        }

    @property
    def num_errors(self) -> int:
        return int((self.table["status"] == "ERROR").sum())


def results_table(grid, spec: SweepSpec, ends: dict | None = None) -> pd.DataFrame:
    """One row per trial: status, epochs, final metrics and searched values; best first.
    ``ends``: how a time limit ended trials (``raytune_hpo.trial_ends``), trial id -> record."""
    searched = spec.search_space
    rows = []
    for r in grid:
        m = r.metrics or {}
        row: dict[str, Any] = {
            "trial_id": m.get("trial_id") or Path(r.path).name,
            # A trial that never reported (still pending when the sweep was interrupted).
            "status": "ERROR" if r.error else "OK" if BUDGET_ATTR in m else "PENDING",
            "epochs": m.get(BUDGET_ATTR, 0),
            spec.metric: m.get(spec.metric, math.nan),
        }
        for col in REPORT_COLUMNS:
            if col != spec.metric and col in m:
                row[col] = m[col]
        row["time_s"] = round(float(m.get(TIME_TOTAL_S, math.nan)), 2)
        for name, value in _searched_values(searched, r.config).items():
            row[config_column(name)] = value
        if r.error:
            row["error"] = str(r.error).strip().splitlines()[-1][:200]
        _apply_end(row, (ends or {}).get(row["trial_id"]))
        rows.append(row)
    return sort_table(pd.DataFrame(rows), spec.metric, spec.mode)


def _apply_end(row: dict[str, Any], end: dict | None) -> None:
    """A trial a time limit ended: its status (ERROR for a timeout, CUT for the sweep's time
    budget) and the reason, in place of what Ray says (an actor killed; TERMINATED)."""
    if end:
        row["status"] = end.get("status", row["status"])
        row["error"] = end.get("reason", row.get("error"))


def _searched_values(searched, config: dict | None) -> dict[str, Any]:
    """The searched values of a trial's config, flat; none for a trial that never got its
    config (one still pending when the sweep was interrupted)."""
    if not searched.params:
        return {}
    try:
        return searched.flat_config(config or {})
    except KeyError:
        return {}


def sort_table(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    if df.empty:
        return df
    failed = df["status"] == "ERROR"
    ok = df[~failed].sort_values(metric, ascending=mode == "min", na_position="last")
    return pd.concat([ok, df[failed]], ignore_index=True)


BY = ("last", "best")  # rank a trial by its last reported epoch, or by its best one
# What reading a sweep needs of its directory (checkpoints and Ray's pickles stay behind).
_SMALL = (
    SPEC_COPY,
    RESULTS_CSV,
    TRIAL_ENDS,
    STATE_GLOB,
    f"*/{RESULT_FILE}",
    f"*/{PARAMS_FILE}",
)


def write_spec_copy(spec: SweepSpec, exp: str | Path) -> None:
    """``sweep.yaml`` in the sweep directory (local or a URI); with user code, where that
    code is."""
    storage.write_text(storage.join(exp, SPEC_COPY), spec.to_yaml(absolute_code_dir=spec.uses_code))


def with_earlier_runs(table: pd.DataFrame, exp: str, spec: SweepSpec) -> pd.DataFrame:
    """``table`` (the trials of the run that just ended) with the rows of trials that earlier
    runs in the same directory finished (an extended sweep: ``raytune_hpo.extend``)."""
    csv = storage.join(exp, RESULTS_CSV)
    if not storage.is_file(csv):
        return table
    earlier = pd.read_csv(io.StringIO(storage.read_text(csv)))
    if "trial_id" in table:
        earlier = earlier[~earlier["trial_id"].isin(table["trial_id"])]
    if earlier.empty:
        return table
    return sort_table(pd.concat([earlier, table], ignore_index=True), spec.metric, spec.mode)


def write_results_csv(table: pd.DataFrame, exp: str | Path) -> None:
    storage.write_text(storage.join(exp, RESULTS_CSV), table.to_csv(index=False))


def read_spec_copy(where: str | Path) -> SweepSpec:
    """The sweep a sweep directory holds (``sweep.yaml``), with its user code found where
    the original sweep file was."""
    copy = storage.join(storage.normalize(where), SPEC_COPY)
    if not storage.is_file(copy):
        raise UserError(f"no {SPEC_COPY} here (is this a sweep directory?)", source=str(where))
    if not storage.is_uri(copy):
        return SweepSpec.from_yaml(copy)
    return SweepSpec.from_dict(parse_yaml(storage.read_text(copy), copy), source=copy)


@dataclass
class SweepRecord:
    """Everything a sweep directory tells, finished or not."""

    path: str
    spec: SweepSpec | None
    trials: pd.DataFrame  # one row per trial (Ray's status, config.*, error), creation order
    history: pd.DataFrame  # every reported result: trial_id, training_iteration, wall_s, ...
    finished: bool  # results.csv is there
    notes: list[str] = field(default_factory=list)
    ends: dict = field(default_factory=dict)  # trials a time limit ended (trial_ends.json)

    @property
    def metric(self) -> str:
        return self.spec.metric if self.spec else "val_accuracy"

    @property
    def mode(self) -> str:
        return self.spec.mode if self.spec else "max"

    def table(self, by: str = "last") -> pd.DataFrame:
        """One row per trial ranked by its ``last`` or ``best`` reported value, best first."""
        if by not in BY:
            raise UserError(f"--by {by}: allowed: {', '.join(BY)}")
        return trial_table(self.trials, self.history, self.metric, self.mode, by, self.ends)


def _small(rel: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(rel, pattern) for pattern in _SMALL) or rel.endswith(ERROR_FILE)


def read_sweep(path: str | Path) -> SweepRecord:
    """Read a sweep directory (local or a URI) as it is now: running, interrupted or done."""
    where = storage.normalize(path)
    if not storage.exists(where):
        raise UserError("no such sweep directory", source=str(path))
    with storage.local_copy(where, keep=_small) as d:
        states = sorted(d.glob(STATE_GLOB))  # names carry the session's time: oldest first
        has_csv = (d / RESULTS_CSV).is_file()
        if not states and not has_csv and not (d / SPEC_COPY).is_file():
            raise UserError(
                f"no {RESULTS_CSV} here, nor Ray Tune's experiment state or "
                f"{SPEC_COPY} (is this a sweep directory?)",
                source=str(path),
            )
        spec = read_spec_copy(d) if (d / SPEC_COPY).is_file() else None
        trials, history = _read_trials(d, [json.loads(s.read_text()) for s in states], spec)
        if has_csv and trials.empty:  # only the table was kept
            trials = pd.read_csv(d / RESULTS_CSV)
        ends = parse_ends((d / TRIAL_ENDS).read_text()) if (d / TRIAL_ENDS).is_file() else None
    return SweepRecord(
        where, spec, trials, history, finished=has_csv, ends=ends.trials if ends else {}
    )


def _read_trials(d: Path, states: list[dict], spec: SweepSpec | None):
    """Trials from the experiment states (several when the sweep was extended; the newest
    entry of a trial wins) and the trial directories (a trial that started after the state was
    last written has a directory but no entry yet: it counts as RUNNING)."""
    known: dict[str, dict] = {}
    entries = [e for state in states for e in state.get("trial_data", [])]
    for entry in entries:
        t, meta = json.loads(entry[0]), json.loads(entry[1])
        known[t["trial_id"]] = {
            "trial_id": t["trial_id"],
            "ray_status": t.get("status", "PENDING"),
            "dir": t.get("relative_logdir"),
            "config": t.get("config") or {},
            "start": meta.get("start_time"),
            "error_file": meta.get("error_filename"),
            "last": meta.get("last_result") or {},
        }
    rows: dict[str, list[dict]] = {}
    for result in sorted(d.glob(f"*/{RESULT_FILE}")):
        lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        if not lines:
            continue
        tid = lines[0]["trial_id"]
        rows[tid] = lines
        info = known.setdefault(
            tid,
            {"trial_id": tid, "ray_status": "RUNNING", "start": None, "error_file": None},
        )
        info["dir"] = result.parent.name
        params = result.parent / PARAMS_FILE
        if not info.get("config") and params.is_file():
            info["config"] = json.loads(params.read_text())
    order = sorted(known, key=lambda k: (known[k]["start"] is None, known[k]["start"] or 0, k))
    starts = [s.get("stats", {}).get("start_time") for s in states]
    t0 = min((t for t in starts if t), default=None)
    trial_rows, hist = [], []
    for n, tid in enumerate(order):
        info = known[tid]
        last = info.get("last") or {}
        lines = rows.get(tid) or ([last] if BUDGET_ATTR in last else [])
        row: dict[str, Any] = {"trial_id": tid, "order": n, "ray_status": info["ray_status"]}
        if spec is not None:
            flat = _searched_values(spec.search_space, info.get("config"))
            row.update({config_column(k): v for k, v in flat.items()})
        err = _error_line(d, info)
        if err:
            row["error"] = err
        trial_rows.append(row)
        for r in lines:
            hist.append({"trial_id": tid, **{k: v for k, v in r.items() if _scalar(v)}})
    history = pd.DataFrame(hist)
    if not history.empty:
        if TIMESTAMP in history:
            first = (history[TIMESTAMP] - history.get(TIME_TOTAL_S, 0)).min()
            t0 = min(t0, first) if t0 else first
            history["wall_s"] = history[TIMESTAMP] - t0
        history = history.sort_values(["trial_id", BUDGET_ATTR], kind="stable")
    return pd.DataFrame(trial_rows), history.reset_index(drop=True)


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) or v is None


def _error_line(d: Path, info: dict) -> str | None:
    if info["ray_status"] != "ERROR" or not info.get("dir"):
        return None
    f = d / info["dir"] / (info.get("error_file") or ERROR_FILE)
    if not f.is_file():
        return "failed (no error file)"
    lines = [x for x in f.read_text().strip().splitlines() if x.strip()]
    return lines[-1][:200] if lines else "failed"


_STATUS = {"TERMINATED": "OK", "ERROR": "ERROR"}


def trial_table(
    trials: pd.DataFrame,
    history: pd.DataFrame,
    metric: str,
    mode: str,
    by: str = "last",
    ends: dict | None = None,
) -> pd.DataFrame:
    """The results table (the columns of ``results.csv``) from Ray's files: per trial its last
    reported result, or with ``by="best"`` the epoch where ``metric`` was best (``best_epoch``)."""
    if "ray_status" not in trials:  # read from a results.csv
        return sort_table(trials, metric, mode)
    sign = 1.0 if mode == "min" else -1.0
    by_trial = dict(tuple(history.groupby("trial_id", sort=False))) if not history.empty else {}
    out = []
    for t in trials.to_dict("records"):
        h = by_trial.get(t["trial_id"], history.iloc[:0])
        row: dict[str, Any] = {
            "trial_id": t["trial_id"],
            "status": _STATUS.get(t["ray_status"], t["ray_status"]),
            "epochs": int(h[BUDGET_ATTR].max()) if len(h) else 0,
        }
        pick = None
        if len(h) and metric in h:
            values = sign * h[metric].astype(float)
            if by == "best" and values.notna().any():
                pick = h.loc[values.fillna(np.inf).idxmin()]
            else:
                pick = h.iloc[-1]
        row[metric] = float(pick[metric]) if pick is not None else math.nan
        if by == "best":
            row["best_epoch"] = int(pick[BUDGET_ATTR]) if pick is not None else 0
        for col in REPORT_COLUMNS:
            if col != metric and pick is not None and col in h and pd.notna(pick[col]):
                row[col] = pick[col]
        last = h.iloc[-1] if len(h) else {}
        row["time_s"] = round(float(last.get(TIME_TOTAL_S, math.nan)), 2)
        row.update({k: v for k, v in t.items() if config_name(k)})
        if isinstance(t.get("error"), str):
            row["error"] = t["error"]
        _apply_end(row, (ends or {}).get(t["trial_id"]))
        out.append(row)
    return sort_table(pd.DataFrame(out), metric, mode)


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
        df = pd.read_csv(io.StringIO(storage.read_text(csv)))
        return SweepResult(where, sort_table(df, metric, mode), metric, mode)
    rec = read_sweep(where)
    return SweepResult(where, rec.table(by), rec.metric, rec.mode, live=not rec.finished)


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
