"""What a sweep directory holds besides Ray's own files, and the order of its tables: the
sweep as run (``sweep.yaml``), the results table (``results.csv``) sorted best first, and the
helpers both the finished table (``raytune_hpo.results.table``) and the live one
(``raytune_hpo.results.live``) use. The directory may be local or a URI
(``raytune_hpo.storage``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import RESULTS_CSV, SPEC_COPY
from raytune_hpo.sweep.spec import SweepSpec, parse_yaml

# Metric columns shown in results tables, besides the sweep's own metric.
REPORT_COLUMNS = ("val_accuracy", "val_loss", "train_loss", "val_accuracy_std")


BY = ("last", "best")  # rank a trial by its last reported epoch, or by its best one
# What reading a sweep needs of its directory (checkpoints and Ray's pickles stay behind).


def apply_end(row: dict[str, Any], end: dict | None) -> None:
    """A trial a time limit ended: its status (ERROR for a timeout, CUT for the sweep's time
    budget) and the reason, in place of what Ray says (an actor killed; TERMINATED)."""
    if end:
        row["status"] = end.get("status", row["status"])
        row["error"] = end.get("reason", row.get("error"))


def apply_stop(row: dict[str, Any], last: dict | None, criteria: Any) -> None:
    """A trial that ended at a result meeting the sweep's ``stop:`` criteria: which one
    (``stopped``: ``val_accuracy 0.9812 >= 0.98``)."""
    if criteria and row.get("status") == "OK":
        reason = criteria.reason(last)
        if reason is not None:
            row["stopped"] = reason


def stop_criteria(spec: SweepSpec | None) -> Any:
    """The ``stop:`` criteria of a sweep read back (none when it has none or no spec)."""
    from raytune_hpo.plan.stopping import StopCriteria

    if spec is None or not spec.stop:
        return StopCriteria()
    try:
        return StopCriteria.of(spec)
    except UserError:  # a copy no longer valid here: no criteria shown
        return StopCriteria()


def searched_values(searched, config: dict | None) -> dict[str, Any]:
    """The searched values of a trial's config, flat; none for a trial that never got its
    config (one still pending when the sweep was interrupted). A parameter that does not
    apply to the trial (a conditional space) is None: an empty cell, not the value its
    config may hold for the trainable."""
    if not searched.params:
        return {}
    try:
        active = searched.flat_config(config or {})
    except KeyError:
        return {}
    return {name: active.get(name) for name in searched.names}


def sort_table(df: pd.DataFrame, metric: Any, mode: Any, objectives: Any = None) -> pd.DataFrame:
    """Best first: by ``metric`` (failed trials last), or with ``objectives`` that rank trials
    (several objectives, constraints: ``raytune_hpo.objectives``) by their ``pareto_rank`` and
    ``feasible``, computed anew from the table's values."""
    if objectives is not None and objectives.ranked:
        return objectives.with_ranks(df)
    if df.empty:
        return df
    failed = df["status"] == "ERROR"
    ok = df[~failed].sort_values(metric, ascending=mode == "min", na_position="last")
    return pd.concat([ok, df[failed]], ignore_index=True)


def write_spec_copy(spec: SweepSpec, exp: str | Path) -> None:
    """``sweep.yaml`` in the sweep directory (local or a URI); with user code, where that
    code is."""
    storage.write_text(storage.join(exp, SPEC_COPY), spec.to_yaml(absolute_code_dir=spec.uses_code))


def with_earlier_runs(table: pd.DataFrame, exp: str, spec: SweepSpec) -> pd.DataFrame:
    """``table`` (the trials of the run that just ended) with the rows of trials that earlier
    runs in the same directory finished (an extended sweep: ``raytune_hpo.run.extend``)."""
    csv = storage.join(exp, RESULTS_CSV)
    if not storage.is_file(csv):
        return table
    earlier = pd.read_csv(io.StringIO(storage.read_text(csv)))
    if "trial_id" in table:
        earlier = earlier[~earlier["trial_id"].isin(table["trial_id"])]
    if earlier.empty:
        return table
    both = pd.concat([earlier, table], ignore_index=True)
    return sort_table(both, spec.metric, spec.mode, spec.objectives)


def write_results_csv(table: pd.DataFrame, exp: str | Path) -> None:
    storage.write_text(storage.join(exp, RESULTS_CSV), table.to_csv(index=False))


def read_spec_copy(where: str | Path) -> SweepSpec:
    """The sweep a sweep directory holds (``sweep.yaml``), with its user code found where
    the original sweep file was."""
    copy = storage.join(storage.normalize(where), SPEC_COPY)
    if not storage.is_file(copy):
        raise UserError(
            f"no {SPEC_COPY} here (is this a sweep directory?)", source=storage.display(where)
        )
    if not storage.is_uri(copy):
        return SweepSpec.from_yaml(copy)
    return SweepSpec.from_dict(parse_yaml(storage.read_text(copy), copy), source=copy)


__all__ = [
    "BY",
    "REPORT_COLUMNS",
    "apply_end",
    "apply_stop",
    "read_spec_copy",
    "searched_values",
    "sort_table",
    "stop_criteria",
    "with_earlier_runs",
    "write_results_csv",
    "write_spec_copy",
]
