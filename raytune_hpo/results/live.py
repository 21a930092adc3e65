"""A sweep as Ray Tune's own files tell it now, running, interrupted or finished: every
``experiment_state-*.json`` (each trial's status, config and error file; several when the sweep
was extended) and each trial's ``result.json`` (one line per reported result), plus what our
watch and population-based training recorded beside them. The directory may be local or a
URI (``raytune_hpo.storage``)."""

from __future__ import annotations

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
    PBT_SCHEDULE,
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
from raytune_hpo.objectives import Objectives
from raytune_hpo.results.sweep_dir import (
    BY,
    REPORT_COLUMNS,
    apply_end,
    apply_stop,
    read_spec_copy,
    searched_values,
    sort_table,
    stop_criteria,
)
from raytune_hpo.results.trial_ends import parse_ends
from raytune_hpo.sweep.spec import SweepSpec

_SMALL = (
    SPEC_COPY,
    RESULTS_CSV,
    TRIAL_ENDS,
    PBT_SCHEDULE,
    STATE_GLOB,
    f"*/{RESULT_FILE}",
    f"*/{PARAMS_FILE}",
)


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
    # population-based training's exploits: trial_id, training_iteration, copied, copied_at,
    # config.<name> (the values after)
    schedule: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def metric(self) -> str | list[str]:
        """The sweep's metric: a name, or a list of them with several objectives."""
        return self.spec.metric if self.spec else "val_accuracy"

    @property
    def mode(self) -> str | list[str]:
        """The sweep's mode: ``min``/``max``, or one per objective with several."""
        return self.spec.mode if self.spec else "max"

    @property
    def objectives(self) -> Objectives:
        return self.spec.objectives if self.spec else Objectives.from_fields(self.metric, self.mode)

    def table(self, by: str = "last") -> pd.DataFrame:
        """One row per trial ranked by its ``last`` or ``best`` reported value, best first
        (several objectives or constraints: by its Pareto rank)."""
        if by not in BY:
            raise UserError(f"--by {by}: allowed: {', '.join(BY)}")
        table = trial_table(
            self.trials, self.history, self.metric, self.mode, by, self.ends, self.objectives
        )
        table = with_stops(table, self.history, stop_criteria(self.spec))
        return with_exploits(table, self.schedule)


def _small(rel: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(rel, pattern) for pattern in _SMALL) or rel.endswith(ERROR_FILE)


def read_sweep(path: str | Path) -> SweepRecord:
    """Read a sweep directory (local or a URI) as it is now: running, interrupted or done."""
    where = storage.normalize(path)
    if not storage.exists(where):
        raise UserError("no such sweep directory", source=storage.display(path))
    with storage.local_copy(where, keep=_small) as d:
        states = sorted(d.glob(STATE_GLOB))  # names carry the session's time: oldest first
        has_csv = (d / RESULTS_CSV).is_file()
        if not states and not has_csv and not (d / SPEC_COPY).is_file():
            raise UserError(
                f"no {RESULTS_CSV} here, nor Ray Tune's experiment state or "
                f"{SPEC_COPY} (is this a sweep directory?)",
                source=storage.display(path),
            )
        spec = read_spec_copy(d) if (d / SPEC_COPY).is_file() else None
        trials, history = _read_trials(d, [json.loads(s.read_text()) for s in states], spec)
        if has_csv and trials.empty:  # only the table was kept
            trials = pd.read_csv(d / RESULTS_CSV)
        ends = parse_ends((d / TRIAL_ENDS).read_text()) if (d / TRIAL_ENDS).is_file() else None
        schedule = (
            parse_schedule((d / PBT_SCHEDULE).read_text()) if (d / PBT_SCHEDULE).is_file() else None
        )
    return SweepRecord(
        where,
        spec,
        trials,
        history,
        finished=has_csv,
        ends=ends.trials if ends else {},
        schedule=schedule if schedule is not None else pd.DataFrame(),
    )


def _read_trials(d: Path, states: list[dict], spec: SweepSpec | None):
    """Trials from the experiment states (several when the sweep was extended; the newest
    entry of a trial wins) and the trial directories (a trial that started after the state was
    last written has a directory but no entry yet: it counts as RUNNING)."""
    known = _known_trials(states)
    rows = _trial_results(d, known)
    order = sorted(known, key=lambda k: (known[k]["start"] is None, known[k]["start"] or 0, k))
    trial_rows, hist = [], []
    for n, tid in enumerate(order):
        info = known[tid]
        last = info.get("last") or {}
        lines = rows.get(tid) or ([last] if BUDGET_ATTR in last else [])
        row: dict[str, Any] = {"trial_id": tid, "order": n, "ray_status": info["ray_status"]}
        if spec is not None:
            flat = searched_values(spec.search_space, info.get("config"))
            row.update({config_column(k): v for k, v in flat.items()})
        err = _error_line(d, info)
        if err:
            row["error"] = err
        trial_rows.append(row)
        for r in lines:
            values = {k: v for k, v in r.items() if _scalar(v)}
            if spec is not None:  # the config it reported with (PBT changes it mid-run)
                flat = searched_values(spec.search_space, r.get("config"))
                values.update({config_column(k): v for k, v in flat.items()})
            hist.append({"trial_id": tid, **values})
    starts = [s.get("stats", {}).get("start_time") for s in states]
    history = _with_wall_clock(pd.DataFrame(hist), min((t for t in starts if t), default=None))
    return pd.DataFrame(trial_rows), history


def _known_trials(states: list[dict]) -> dict[str, dict]:
    """What the experiment states say of each trial, the newest entry winning."""
    known: dict[str, dict] = {}
    for entry in (e for state in states for e in state.get("trial_data", [])):
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
    return known


def _trial_results(d: Path, known: dict[str, dict]) -> dict[str, list[dict]]:
    """Each trial directory's reported results (trial id -> lines); a directory the states
    do not know yet joins ``known`` as RUNNING."""
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
    return rows


def _with_wall_clock(history: pd.DataFrame, t0: float | None) -> pd.DataFrame:
    """The results in trial and epoch order, with ``wall_s`` since the sweep started."""
    if history.empty:
        return history
    if TIMESTAMP in history:
        first = (history[TIMESTAMP] - history.get(TIME_TOTAL_S, 0)).min()
        t0 = min(t0, first) if t0 else first
        history["wall_s"] = history[TIMESTAMP] - t0
    return history.sort_values(["trial_id", BUDGET_ATTR], kind="stable").reset_index(drop=True)


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
    metric: str | list[str],
    mode: str | list[str],
    by: str = "last",
    ends: dict | None = None,
    objectives: Objectives | None = None,
) -> pd.DataFrame:
    """The results table (the columns of ``results.csv``) from Ray's files: per trial its last
    reported result, or with ``by="best"`` the epoch where ``metric`` was best (``best_epoch``;
    with constraints, the best epoch within them, if any). ``objectives``: several objectives
    or constraints rank the trials (``pareto_rank``, ``feasible``)."""
    objectives = objectives or Objectives.from_fields(metric, mode)
    if by == "best" and objectives.several:
        raise UserError(
            "--by best picks each trial's epoch by one metric; with several objectives use "
            "--by last"
        )
    if "ray_status" not in trials:  # read from a results.csv
        return sort_table(trials, metric, mode, objectives)
    metric, mode = objectives.metrics[0], objectives.modes[0]
    by_trial = dict(tuple(history.groupby("trial_id", sort=False))) if not history.empty else {}
    out = []
    for t in trials.to_dict("records"):
        h = by_trial.get(t["trial_id"], history.iloc[:0])
        row: dict[str, Any] = {
            "trial_id": t["trial_id"],
            "status": _STATUS.get(t["ray_status"], t["ray_status"]),
            "epochs": int(h[BUDGET_ATTR].max()) if len(h) else 0,
        }
        pick = _pick(h, metric, mode, by, objectives)
        for name in objectives.reported:
            ok = pick is not None and name in h
            row[name] = float(pick[name]) if ok else math.nan
        if by == "best":
            row["best_epoch"] = int(pick[BUDGET_ATTR]) if pick is not None else 0
        for col in REPORT_COLUMNS:
            if col not in row and pick is not None and col in h and pd.notna(pick[col]):
                row[col] = pick[col]
        last = h.iloc[-1] if len(h) else {}
        row["time_s"] = round(float(last.get(TIME_TOTAL_S, math.nan)), 2)
        row.update({k: v for k, v in t.items() if config_name(k)})
        if isinstance(t.get("error"), str):
            row["error"] = t["error"]
        apply_end(row, (ends or {}).get(t["trial_id"]))
        out.append(row)
    return sort_table(pd.DataFrame(out), metric, mode, objectives)


def with_stops(table: pd.DataFrame, history: pd.DataFrame, criteria) -> pd.DataFrame:
    """``table`` with ``stopped``: the ``stop:`` criterion each trial's last result met."""
    if not criteria or history.empty or table.empty or "trial_id" not in history:
        return table
    last = history.groupby("trial_id", sort=False).tail(1).set_index("trial_id")
    rows = table.to_dict("records")
    for row in rows:
        if row["trial_id"] in last.index:
            apply_stop(row, last.loc[row["trial_id"]].dropna().to_dict(), criteria)
    return pd.DataFrame(rows)


def _pick(h: pd.DataFrame, metric: str, mode: str, by: str, objectives: Objectives):
    """The reported result a trial is ranked by: its last, or its best in ``metric`` (NaN the
    worst; with constraints, among the epochs within them when there are any)."""
    if not len(h) or metric not in h:
        return None
    sign = 1.0 if mode == "min" else -1.0
    values = sign * pd.to_numeric(h[metric], errors="coerce")
    if by != "best" or not values.notna().any():
        return h.iloc[-1]
    if objectives.constraints:
        within = objectives.violations(h) == 0
        if within.any():
            values = values.where(within, np.inf)
    return h.loc[values.fillna(np.inf).idxmin()]


def parse_schedule(text: str) -> pd.DataFrame:
    """Population-based training's exploits (``raytune_hpo.schedulers._pbt`` writes them),
    one row each, in the order they happened."""
    rows = []
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:  # cut off mid-write
            continue
        config = {config_column(k): v for k, v in (e.get("config") or {}).items() if _scalar(v)}
        rows.append(
            {k: e.get(k) for k in ("trial_id", BUDGET_ATTR, "copied", "copied_at")} | config
        )
    return pd.DataFrame(rows)


def read_schedule(exp: str) -> pd.DataFrame:
    """The exploits recorded in a sweep directory (local or a URI); empty when none."""
    path = storage.join(exp, PBT_SCHEDULE)
    return parse_schedule(storage.read_text(path)) if storage.is_file(path) else pd.DataFrame()


def with_exploits(table: pd.DataFrame, schedule: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each trial's number of exploits (population-based training) and the
    trial it copied last; unchanged without a schedule."""
    if schedule.empty or "trial_id" not in table:
        return table
    counts = schedule.groupby("trial_id").size()
    last = schedule.groupby("trial_id")["copied"].last()
    return table.assign(
        exploits=table["trial_id"].map(counts).fillna(0).astype(int),
        copied_last=table["trial_id"].map(last),
    )


__all__ = [
    "SweepRecord",
    "parse_schedule",
    "read_schedule",
    "read_sweep",
    "trial_table",
    "with_exploits",
]
