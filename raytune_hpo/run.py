"""Run a validated sweep on Ray Tune: ``run_sweep(spec) -> SweepResult``.

Ray starts (embedded, single node) only after the spec has been checked; with ``address`` the
sweep runs on an existing cluster instead. Results land in ``<storage>/<name>-<time>/`` next to
Ray's experiment files: ``results.csv`` (one row per trial) and ``sweep.yaml`` (the spec).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from raytune_hpo.spec import SweepSpec

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


def _init_ray(address: str | None, num_cpus: int | None) -> None:
    import ray

    # Every epoch checkpoints (num_to_keep=2 forces a state snapshot, which is what makes a
    # sweep resumable at any moment); Ray warns about that on every fast epoch otherwise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def trainable_for(spec: SweepSpec):
    """``train_cnn`` with the sweep's resources per trial (fractional GPUs allowed)."""
    from ray import tune

    from raytune_hpo.train.trainable import train_cnn

    res: dict[str, float] = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    if spec.resources.memory_gb:
        res["memory"] = spec.resources.memory_gb * 1024**3
    return tune.with_resources(train_cnn, res)


def experiment_name(spec: SweepSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def build_tuner(spec: SweepSpec, name: str | None = None, *, trainable=None):
    """The ``tune.Tuner`` for ``spec`` (Ray must be importable; it need not be running);
    ``trainable`` replaces ``train_cnn`` (studies over test functions)."""
    from ray import tune

    return tune.Tuner(
        trainable or trainable_for(spec),
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=spec.build_searcher(),
            scheduler=spec.build_scheduler(),
            num_samples=spec.samples,
            max_concurrent_trials=spec.max_concurrent,
            time_budget_s=spec.time_budget_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name or experiment_name(spec),
            storage_path=spec.resolved_storage(),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )


def run_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    name: str | None = None,
) -> SweepResult:
    """Run ``spec`` to the end; failed trials are recorded, never raised. The spec is copied
    into the experiment directory first, so ``resume`` can pick the sweep up if interrupted."""
    _init_ray(address, num_cpus)
    name = name or experiment_name(spec)
    _write_spec(spec, spec.resolved_storage(), name)
    grid = build_tuner(spec, name).fit()
    return _finish(grid, spec)


def resume(
    path: str | Path, *, address: str | None = None, num_cpus: int | None = None
) -> SweepResult:
    """Continue an interrupted sweep (``Tuner.restore``): finished trials are kept as they are,
    unfinished ones continue from their last checkpoint, and the searcher and scheduler
    continue from their saved state."""
    from ray import tune

    where = str(path) if "://" in str(path) else str(Path(path).expanduser().resolve())
    spec = _read_spec(where)
    if not tune.Tuner.can_restore(where):
        raise FileNotFoundError(f"{path}: no Ray Tune experiment state here to resume")
    _init_ray(address, num_cpus)
    tuner = tune.Tuner.restore(where, trainable=trainable_for(spec), resume_errored=False)
    return _finish(tuner.fit(), spec)


def _write_spec(spec: SweepSpec, storage: str, name: str) -> None:
    if "://" in storage:
        return  # remote storage: Ray keeps the experiment state; the copy is local-only
    exp = Path(storage) / name
    exp.mkdir(parents=True, exist_ok=True)
    (exp / SPEC_COPY).write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False))


def _read_spec(where: str) -> SweepSpec:
    if "://" in where:
        raise FileNotFoundError(f"{where}: resume from a local or mounted path")
    copy = Path(where) / SPEC_COPY
    if not copy.is_file():
        raise FileNotFoundError(f"{where}: no {SPEC_COPY} here (is this a sweep directory?)")
    return SweepSpec.from_yaml(copy)


def _finish(grid, spec: SweepSpec) -> SweepResult:
    path = Path(grid.experiment_path)
    table = results_table(grid, spec)
    if "://" not in str(path):
        path.mkdir(parents=True, exist_ok=True)
        table.to_csv(path / RESULTS_CSV, index=False)
    return SweepResult(str(path), table, spec.metric, spec.mode)


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


def load_results(path: str | Path) -> SweepResult:
    """Read a finished sweep's ``results.csv`` (``path``: the experiment directory)."""
    p = Path(path).expanduser()
    csv = p / RESULTS_CSV
    if not csv.is_file():
        raise FileNotFoundError(f"{path}: no {RESULTS_CSV} here (is this a finished sweep dir?)")
    spec = yaml.safe_load((p / SPEC_COPY).read_text()) if (p / SPEC_COPY).is_file() else {}
    metric = spec.get("metric", "val_accuracy")
    mode = spec.get("mode", "max")
    return SweepResult(str(p), sort_table(pd.read_csv(csv), metric, mode), metric, mode)
