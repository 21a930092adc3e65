"""The sweep file's ``loggers``: Ray Tune's own logger callbacks, checked before Ray starts.

- ``tensorboard``: ``ray.tune.logger.TBXLoggerCallback``, one event file per trial in its
  directory, only when named (a one-line error without tensorboardX). A sweep runs with Ray's
  automatic loggers off (``run.sweep._fit``), which would add it whenever tensorboardX is
  installed and import torch into the driver for it.
- ``mlflow``: ``ray.air.integrations.mlflow.MLflowLoggerCallback``, one MLflow run per trial
  (its config as params, every reported result as metrics by epoch). By default into a store
  inside the sweep directory, ``sqlite:///<sweep dir>/mlflow.db`` with artifacts under
  ``<sweep dir>/mlartifacts`` (MLflow 3 refuses new ``file://`` stores); or ``tracking_uri``.
- ``wandb``: ``ray.air.integrations.wandb.WandbLoggerCallback``, offline unless ``mode``
  (or ``WANDB_MODE``) says otherwise: runs under each trial's ``wandb/`` folder, uploaded
  later by ``wandb sync``.

Written as a name or as ``{name: {options}}``; unknown names and options raise one line.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytune_hpo import ray_compat
from raytune_hpo.errors import UserError

OPTIONS: dict[str, tuple[str, ...]] = {
    "tensorboard": (),
    "mlflow": ("tracking_uri", "experiment_name", "tags"),
    "wandb": ("project", "group", "entity", "mode"),
}
# The module each logger imports, and how to install it.
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
WANDB_MODES = ("offline", "online", "disabled")
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


@dataclass(frozen=True)
class LoggerSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


def parse(entries: list[Any] | None) -> tuple[LoggerSpec, ...]:
    """The ``loggers`` list as specs; ValueError (one line naming the field) for anything
    unknown or malformed."""
    out: list[LoggerSpec] = []
    allowed = ", ".join(OPTIONS)
    for i, entry in enumerate(entries or []):
        where = f"loggers.{i}"
        if isinstance(entry, dict) and len(entry) == 1:
            ((name, options),) = entry.items()
            options = {} if options is None else options
            if not isinstance(options, dict):
                raise UserError(f"options must be a mapping, got {options!r}", field=(where, name))
        elif isinstance(entry, str):
            name, options = entry, {}
        else:
            raise UserError(
                f"a logger name or {{name: {{options}}}}; allowed: {allowed}", field=where
            )
        if name not in OPTIONS:
            raise UserError(f"unknown logger {name!r}; allowed: {allowed}", field=where)
        if any(s.name == name for s in out):
            raise UserError(f"logger {name!r} is listed twice", field=where)
        unknown = sorted(set(options) - set(OPTIONS[name]))
        if unknown:
            listed = ", ".join(OPTIONS[name]) or "none"
            raise UserError(f"unknown option; allowed: {listed}", field=(where, name, unknown[0]))
        _check_options(f"{where}.{name}", name, options)
        out.append(LoggerSpec(name, dict(options)))
    return tuple(out)


def _check_options(where: str, name: str, options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key == "tags":
            if not isinstance(value, dict):
                raise UserError("a mapping of tag names to values", field=(where, "tags"))
        elif key == "mode":
            if value not in WANDB_MODES:
                raise UserError(
                    f"got {value!r}; allowed: {', '.join(WANDB_MODES)}", field=(where, "mode")
                )
        elif not isinstance(value, str) or not value:
            raise UserError(f"must be a non-empty string, got {value!r}", field=(where, key))


def check(specs: tuple[LoggerSpec, ...], *, remote_storage: bool) -> None:
    """What would fail once Ray is up: a logger's package missing, MLflow's default store on
    remote storage."""
    for s in specs:
        module = PACKAGES[s.name]
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"{s.name} needs the {module} package: pip install 'raytune-hpo[{s.name}]'",
                field="loggers",
            )
        if s.name == "mlflow" and remote_storage and "tracking_uri" not in s.options:
            raise UserError(
                "needed when storage_path is a URI (the default store lies in a local sweep "
                "directory)",
                field=("loggers", "mlflow", "tracking_uri"),
            )


def callbacks(
    specs: tuple[LoggerSpec, ...], *, experiment: str, exp_dir: str, sweep_name: str
) -> list[Any]:
    """Ray Tune callbacks for ``specs``; ``experiment`` is the run's name (its directory
    ``exp_dir``), ``sweep_name`` the sweep file's ``name``. Always with the trial records
    Ray's experiment analysis and ``raytune_hpo.results.live`` read (see ``record_loggers``)."""
    chosen = [_BUILDERS[s.name](s.options, experiment, exp_dir, sweep_name) for s in specs]
    return [*record_loggers(), *chosen]


def record_loggers() -> list[Any]:
    """Ray's JSON and CSV loggers (``result.json``, ``progress.csv`` of each trial), except
    that a trial restarted in the same session (paused by HyperBand, exploited by
    population-based training) keeps the file it has written. Ray copies the stored file back
    over it whenever a trial with a checkpoint starts (``ray_compat.RestoreHook``),
    but within a session the stored copy lags behind (it is synced every few minutes): the
    lines reported since the last sync were lost (seen under PBT here). A trial that starts in
    a new session (``resume``) has no local file yet and gets the stored one, as before."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    class KeepSession(ray_compat.RestoreHook):
        def should_restore(self, file_name: str, trial) -> bool:
            return not (Path(trial.local_path) / file_name).exists()

    class ResultJson(KeepSession, JsonLoggerCallback):
        pass

    class ProgressCsv(KeepSession, CSVLoggerCallback):
        pass

    return [ResultJson(), ProgressCsv()]


def _tensorboard(options: dict, experiment: str, exp_dir: str, sweep_name: str):
    from ray.tune.logger import TBXLoggerCallback

    return TBXLoggerCallback()


def mlflow_uri(options: dict, exp_dir: str) -> str:
    """Where the MLflow runs go: ``tracking_uri``, else a SQLite store in the sweep directory."""
    return options.get("tracking_uri") or f"sqlite:///{Path(exp_dir) / MLFLOW_DB}"


def _mlflow(options: dict, experiment: str, exp_dir: str, sweep_name: str):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    uri = mlflow_uri(options, exp_dir)
    name = options.get("experiment_name") or sweep_name
    if "tracking_uri" not in options:
        # The default store keeps its artifacts in the sweep directory too (MLflow would put
        # them under ./mlruns of the current directory).
        import mlflow

        Path(exp_dir).mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(uri)
        if client.get_experiment_by_name(name) is None:
            artifacts = (Path(exp_dir) / MLFLOW_ARTIFACTS).as_uri()
            client.create_experiment(name, artifact_location=artifacts)
    tags = {"raytune_hpo.sweep": experiment, **{str(k): str(v) for k, v in _tags(options)}}
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=name, tags=tags)


def _tags(options: dict):
    return (options.get("tags") or {}).items()


def _wandb(options: dict, experiment: str, exp_dir: str, sweep_name: str):
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = options.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    # Ray's callback looks for an API key in the driver unless WANDB_MODE says offline; the
    # logging actors get the mode through wandb.init.
    os.environ["WANDB_MODE"] = mode
    kwargs = {"entity": options["entity"]} if "entity" in options else {}
    return WandbLoggerCallback(
        project=options.get("project") or sweep_name,
        group=options.get("group") or experiment,
        mode=mode,
        **kwargs,
    )


_BUILDERS = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}

__all__ = ["OPTIONS", "LoggerSpec", "callbacks", "check", "mlflow_uri", "parse"]
