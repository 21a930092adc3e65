"""The sweep file as validated data: ``SweepSpec.from_yaml(path)``.

The spec is data plus its typed parts, each parsed once, when the file is read: the
``SearchSpace`` and the ``trainable:`` section (``raytune_hpo.sweep.sections``). Which
searcher, scheduler and trainable code the names mean, and whether they fit together, is
decided when a run is assembled (``raytune_hpo.plan.assemble``). Every error is a
:class:`SpecError`, one line naming the field and, where there is a list, the allowed values;
the YAML itself is read bounded (``raytune_hpo.sweep.fields``).
"""

from __future__ import annotations

import os
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raytune_hpo import secret_env
from raytune_hpo.errors import SpecError, UserError, user_error
from raytune_hpo.sweep.fields import (
    Strict,
    first_error,
    parse_fields,
    parse_yaml,
    read_yaml,
    validate,
)
from raytune_hpo.sweep.sections import TrainableSection, parse_section
from raytune_hpo.sweep.space import SearchSpace

QUICKSTART = "quickstart.yaml"


# ---------------------------------------------------------------------- the sweep


def sweep_file(path: str | os.PathLike[str] | None) -> tuple[dict[str, Any], str, str | None]:
    """A sweep file's fields as read, not yet validated, with its name for messages and the
    directory its user code is found in; None: the quickstart shipped inside the package."""
    if path is None:
        text = resources.files("raytune_hpo").joinpath("specs", QUICKSTART).read_text()
        return parse_yaml(text, QUICKSTART), QUICKSTART, None
    return read_yaml(path), str(path), str(Path(path).expanduser().resolve().parent)


class _Named(BaseModel):
    """``{name: ..., <options>}``: options are the extra keys, checked against the registry."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SearcherSpec(_Named):
    name: str = "random"


class SchedulerSpec(_Named):
    name: str = "fifo"


class _ProcessResources(Strict):
    """What one process asks of Ray: a trial (``resources:``) or one rank (``workers:``)."""

    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    memory_gb: float | None = Field(default=None, gt=0)

    @field_validator("gpu")
    @classmethod
    def _whole_gpus_above_one(cls, gpu: float) -> float:
        if gpu > 1 and gpu != int(gpu):
            raise ValueError("fractions are allowed below 1 only (0.25, 0.5, 2)")
        return gpu


class ResourcesSpec(_ProcessResources):
    """``resources:``: what each trial asks of Ray."""


PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class WorkersSpec(_ProcessResources):
    """``workers:``: one data-parallel training run of ``count`` ranks per trial (Ray Train's
    ``ScalingConfig``): each rank asks for ``cpu``, ``gpu`` (and ``memory_gb``); Ray places
    the ranks by ``placement`` (its placement-group strategy: one node or several)."""

    count: int = Field(ge=1, le=4096)
    placement: Literal[PLACEMENTS] = "PACK"  # type: ignore[valid-type]
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl with GPUs, else gloo


MODES = ("min", "max")


class BoundSpec(Strict):
    """A constraint on a reported metric: it must stay within ``[min, max]`` (either may be
    left out)."""

    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _a_bound_in_order(self) -> BoundSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both (the values the metric must stay within)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class StopBound(Strict):
    """A stop criterion on a metric that is not an objective: which way it must cross."""

    at_least: float | None = Field(default=None, allow_inf_nan=False)
    at_most: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_way(self) -> StopBound:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give one of at_least or at_most (the value that stops a trial)")
        return self

    @property
    def way(self) -> tuple[bool, float]:
        """``(at_least, value)``: whether the metric stops a trial from above, and where."""
        if self.at_least is not None:
            return True, self.at_least
        if self.at_most is not None:
            return False, self.at_most
        raise ValueError("neither at_least nor at_most")  # _one_way refuses such a bound


class FailFastSpec(Strict):
    """When failed trials stop the whole sweep (``raytune_hpo.run.fail_fast``). ``true`` in the
    file is Ray's ``fail_fast=True`` (the first failed trial), ``false`` never."""

    # The first N trials to fail did so before any trial reported a result: the trainable
    # cannot run (0: never).
    no_result: int = Field(default=3, ge=0)
    # More than this share of the ended trials failed, once min_ended trials ended (none: never).
    share: float | None = Field(default=None, ge=0, lt=1)
    min_ended: int = Field(default=5, ge=1)


class CheckpointsSpec(Strict):
    """Which of a trial's checkpoints Ray keeps (``CheckpointConfig``); its newest is always
    kept too, so pauses, retries, PBT and ``resume`` continue from it."""

    keep: int | None = Field(default=None, ge=1)
    score: str | None = Field(default=None, min_length=1)  # a reported metric: keep the best
    order: str | None = Field(default=None, pattern="^(min|max)$")

    @model_validator(mode="after")
    def _score_with_keep(self) -> CheckpointsSpec:
        if self.order is not None and self.score is None:
            raise ValueError("order needs score (the reported metric it orders by)")
        if self.score is not None and self.keep is None:
            raise ValueError("score chooses which checkpoints keep leaves; give keep as well")
        return self


def _names(value: Any, what: str) -> Any:
    """A name or a non-empty list of names; a list of one is the plain name."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0] if len(value) == 1 else value
    if isinstance(value, str):
        return value
    raise ValueError(f"{what} or a list of them, one per objective")


class SweepSpec(Strict):
    """A sweep file. ``trainable`` is the trainable's section as written (typed:
    ``trainable_section``): the built-in CNN's settings, or ``function`` + ``config`` for a
    user's trainable; ``scheduler`` None means FIFO, or BOHB's own for searcher ``bohb``
    (``raytune_hpo.plan.bohb``)."""

    name: str = Field(default="sweep", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    # One objective (a metric name and min/max) or several (lists of the same length).
    metric: str | list[str] = "val_accuracy"
    mode: str | list[str] = "max"
    space: dict[str, Any] = Field(default_factory=dict)
    # Reported metrics that must stay within bounds (raytune_hpo.objectives): a trial outside
    # them is infeasible and ranks after every feasible one.
    constraints: dict[str, BoundSpec] | None = None
    searcher: SearcherSpec = SearcherSpec()
    scheduler: SchedulerSpec | None = None
    trainable: dict[str, Any] = Field(default_factory=dict)
    # Bounded: Tune keeps every trial it made in memory for the whole sweep.
    num_samples: int | None = Field(default=None, ge=1, le=1_000_000)
    max_concurrent: int | None = Field(default=None, ge=1)
    resources: ResourcesSpec = ResourcesSpec()
    # Data-parallel trials (raytune_hpo.train.distributed): the ranks of each trial.
    workers: WorkersSpec | None = None
    storage_path: str = "~/raytune-hpo-results"
    seed: int = 0
    max_failures: int = Field(default=0, ge=0)
    # Ray's RunConfig(stop=...): a trial stops at the first result that meets any criterion;
    # a metric (an objective: by its mode; another: {at_least: x} / {at_most: x}), or one of
    # Ray's counters (training_iteration, time_total_s, ...: at least). raytune_hpo.plan.stopping
    stop: dict[str, float | StopBound] | None = None
    # Failed trials that stop the whole sweep (resumable, as a Ctrl-C leaves it).
    fail_fast: FailFastSpec = FailFastSpec()
    # Ray's CheckpointConfig: how many of a trial's checkpoints are kept, and which.
    checkpoints: CheckpointsSpec | None = None
    time_budget_s: float | None = Field(default=None, gt=0)
    # Per trial (raytune_hpo.run.watch): wall clock while running, and the longest wait for a
    # result; a trial past either is stopped and counted as failed (timeout / stalled).
    trial_timeout_s: float | None = Field(default=None, gt=0)
    stall_timeout_s: float | None = Field(default=None, gt=0)
    # No trial running and some waiting for resources this long: the sweep stops with one line
    # (resources that never appear, e.g. a GPU on a cluster whose autoscaler adds none).
    pending_timeout_s: float = Field(default=600.0, gt=0)
    # Passed to Ray for a submitted sweep (pip, uv, conda, env_vars, excludes, config);
    # locally only env_vars apply.
    runtime_env: dict[str, Any] | None = None
    # Where FILE.py references (trainable.function, a plug-in searcher) are found; default:
    # the sweep file's directory. The copy in a sweep directory records it absolute.
    code_dir: str | None = None
    # Ray Tune logger callbacks: names (tensorboard, mlflow, wandb) or {name: {options}};
    # checked against raytune_hpo.plan.loggers when the run is assembled.
    loggers: list[Any] | None = None
    # Earlier sweep directories whose results the searcher is told before it suggests
    # (raytune_hpo.plan.warm_start); relative to the sweep file, recorded absolute in its copy.
    warm_start: list[str] | None = None
    # Where the spec came from (for messages) and the directory user code is found in.
    _source: str = PrivateAttr(default="sweep")
    _base_dir: str | None = PrivateAttr(default=None)

    @field_validator("metric", mode="before")
    @classmethod
    def _metric_names(cls, value: Any) -> Any:
        value = _names(value, "a metric name")
        if isinstance(value, list):
            twice = sorted({m for m in value if value.count(m) > 1})
            if twice:
                raise ValueError(f"{twice[0]!r} is listed twice; give each objective once")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_names(cls, value: Any) -> Any:
        return _names(value, "min or max")

    @field_validator("mode")
    @classmethod
    def _one_mode_per_metric(cls, value: str | list[str], info: ValidationInfo) -> Any:
        modes = [value] if isinstance(value, str) else value
        for i, m in enumerate(modes):
            if m not in MODES:
                where = "" if isinstance(value, str) else f"item {i} is {m!r}: "
                raise ValueError(f"{where}Input should be 'min' or 'max'")
        metric = info.data.get("metric")
        if metric is None:  # the metric's own error is reported
            return value
        metrics = [metric] if isinstance(metric, str) else metric
        if len(modes) != len(metrics):
            raise ValueError(
                f"{len(modes)} mode(s) for {len(metrics)} metric(s) ({', '.join(metrics)}); "
                "give one mode each, in the same order: min or max"
            )
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_values(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if not value:
            raise ValueError("give one or more criteria (metric: value)")
        out = {}
        for name, bound in value.items():
            if isinstance(bound, dict):
                try:
                    bound = StopBound.model_validate(bound)
                except ValidationError as e:
                    err = first_error(e, StopBound)
                    where = ".".join(str(p) for p in (name, *err.field) if p != "sweep")
                    raise ValueError(f"{where}: {err.message}") from None
            elif isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise ValueError(
                    f"{name}: {bound!r} is not a number or {{at_least: x}} / {{at_most: x}}"
                )
            out[name] = bound
        return out

    @field_validator("fail_fast", mode="before")
    @classmethod
    def _fail_fast_flag(cls, value: Any) -> Any:
        if value is True:  # Ray's fail_fast=True: the first failed trial stops the sweep
            return {"no_result": 1, "share": 0.0, "min_ended": 1}
        if value is False:
            return {"no_result": 0, "share": None}
        return value

    @field_validator("warm_start", mode="before")
    @classmethod
    def _one_or_more_dirs(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("warm_start")
    @classmethod
    def _no_empty_dirs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(v.strip() for v in value)):
            raise ValueError("give one or more earlier sweep directories")
        return value

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str] | None) -> SweepSpec:
        """The sweep file at ``path`` (None: the built-in quickstart)."""
        data, source, base = sweep_file(path)
        return cls.from_dict(data, source=source, base_dir=base)

    @classmethod
    def quickstart(cls) -> SweepSpec:
        """The built-in quickstart sweep shipped inside the package."""
        return cls.from_yaml(None)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "sweep", base_dir: str | None = None
    ) -> SweepSpec:
        """``base_dir``: where ``FILE.py:NAME`` user code is found (default: the current
        directory when the run is assembled)."""
        if not isinstance(data, dict):
            raise SpecError("the sweep file must be a YAML mapping of fields", source=source)
        spec = validate(cls, data, source)
        try:  # parse the typed parts now: their errors are the file's
            spec.search_space  # noqa: B018
            spec.trainable_section  # noqa: B018
        except ValueError as e:
            raise user_error(e).as_spec_error(source) from None
        spec._source, spec._base_dir = source, base_dir
        return spec

    @cached_property
    def search_space(self) -> SearchSpace:
        """The parsed ``space`` (parsed once; the spec is frozen)."""
        return SearchSpace.from_dict(self.space)

    @cached_property
    def trainable_section(self) -> TrainableSection:
        """The parsed ``trainable`` section: the built-in CNN's settings or a user's code."""
        return parse_section(self.trainable)

    @property
    def objectives(self):
        """The sweep's objectives and constraints (``raytune_hpo.objectives.Objectives``)."""
        from raytune_hpo.objectives import Objectives

        return Objectives.of(self)

    @property
    def source(self) -> str:
        """Where the spec came from (a path, or a short label), for error messages."""
        return self._source

    @property
    def base_dir(self) -> str:
        """Where user code named ``FILE.py:NAME`` is found: ``code_dir`` (relative to the
        sweep file), else the sweep file's directory, else the current directory."""
        here = self._base_dir or os.getcwd()
        if self.code_dir:
            return str((Path(here) / Path(self.code_dir).expanduser()).resolve())
        return here

    def with_fields(self, **fields: Any) -> SweepSpec:
        """A copy with ``fields`` replaced, validated again, keeping source and base_dir."""
        data = {**self.model_dump(exclude_unset=True), **fields}
        return SweepSpec.from_dict(data, source=self.source, base_dir=self._base_dir)

    @property
    def warm_start_paths(self) -> list[Path]:
        """``warm_start`` as absolute paths (relative ones: to the sweep file's directory)."""
        here = Path(self._base_dir or os.getcwd())
        return [(here / Path(p).expanduser()).resolve() for p in self.warm_start or []]

    @property
    def uses_code(self) -> bool:
        """Whether the sweep names user code by file (a trainable or a plug-in searcher)."""
        return "function" in self.trainable or ":" in self.searcher.name

    def to_yaml(self, *, absolute_code_dir: bool = False) -> str:
        """The spec as YAML; ``absolute_code_dir``: record where its user code is (the copy
        in a sweep directory, read back from elsewhere). The values of ``runtime_env.env_vars``
        are left out (``raytune_hpo.secret_env``): no text form of a sweep holds them."""
        data = self.model_dump(exclude_none=True)
        if (data.get("runtime_env") or {}).get("env_vars"):
            data["runtime_env"]["env_vars"] = secret_env.redact(data["runtime_env"]["env_vars"])
        if absolute_code_dir:
            data["code_dir"] = self.base_dir
        if self.warm_start:  # the copy in a sweep directory is read from elsewhere
            data["warm_start"] = [str(p) for p in self.warm_start_paths]
        return yaml.safe_dump(data, sort_keys=False)


__all__ = [
    "MODES",
    "BoundSpec",
    "CheckpointsSpec",
    "FailFastSpec",
    "StopBound",
    "SchedulerSpec",
    "SearcherSpec",
    "SpecError",
    "SweepSpec",
    "UserError",
    "first_error",
    "parse_fields",
    "parse_yaml",
    "read_yaml",
    "sweep_file",
    "validate",
]
