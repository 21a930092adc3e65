"""The sweep file as validated data: ``SweepSpec.from_yaml(path)``.

The spec is data plus its ``SearchSpace``, nothing more: which searcher, scheduler and
trainable the names mean, and whether they fit together, is decided when a run is assembled
(``raytune_hpo.assemble``). Every error is a :class:`SpecError`, one line naming the field
and, where there is a list, the allowed values. YAML input is bounded (size, nesting, alias
expansion) so a hostile or broken file fails with one line instead of eating memory.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

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

from raytune_hpo.errors import SpecError, UserError, user_error
from raytune_hpo.space import SearchSpace

QUICKSTART = "quickstart.yaml"
MAX_YAML_BYTES = 1 << 20  # a sweep or study file is a few kB
MAX_YAML_NODES = 100_000  # values after alias expansion
MAX_YAML_DEPTH = 32


# ---------------------------------------------------------------------- YAML, bounded
class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-5`` as a number (YAML 1.2), as users write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> data, bounded in size, nesting depth and expanded size."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise SpecError(f"larger than {MAX_YAML_BYTES // 1024} kB; not a sweep file", source=source)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"not valid YAML{where}", source=source) from None
    except RecursionError:
        raise SpecError(f"nested deeper than {MAX_YAML_DEPTH} levels", source=source) from None
    _check_bounds(data, source)
    return data


def _check_bounds(data: Any, source: str) -> None:
    """Walk the data as code will (aliases expanded) and stop at the first bound crossed."""
    stack = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_YAML_NODES:
            raise SpecError(
                f"more than {MAX_YAML_NODES} values once aliases are expanded (a YAML alias bomb?)",
                source=source,
            )
        if depth > MAX_YAML_DEPTH:
            raise SpecError(f"nested deeper than {MAX_YAML_DEPTH} levels", source=source)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node if not isinstance(k, str))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def read_yaml(path: str | os.PathLike[str], *, what: str = "sweep") -> dict[str, Any]:
    """A YAML file that must hold a mapping of fields."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError(f"{what} file does not exist", source=str(path))
    if p.stat().st_size > MAX_YAML_BYTES:
        raise SpecError(
            f"larger than {MAX_YAML_BYTES // 1024} kB; not a {what} file", source=str(path)
        )
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise SpecError("not a text file", source=str(path)) from None
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError(f"the {what} file must be a YAML mapping of fields", source=str(path))
    return data


def parse_fields(model: type[BaseModel], data: Any, *, prefix: str = "") -> Any:
    """``model.model_validate(data)``; a UserError naming the field of the first error
    (``prefix``: where the data sits in the file)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise first_error(e, model, prefix) from None


def validate(model: type[BaseModel], data: Any, source: str, *, prefix: str = "") -> Any:
    """``parse_fields`` for a whole file: a SpecError that names the file too."""
    try:
        return parse_fields(model, data, prefix=prefix)
    except UserError as e:
        raise e.as_spec_error(source) from None


def first_error(e: ValidationError, model: type[BaseModel], prefix: str = "") -> UserError:
    """The first error pydantic found, as a UserError naming its field."""
    err = e.errors()[0]
    field = ((prefix,) if prefix else ()) + tuple(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        allowed = fields_at(model, err["loc"][:-1])
        return UserError(f"unknown field; allowed: {', '.join(allowed)}", field=field)
    msg = err["msg"].removeprefix("Value error, ")
    return UserError(msg, field=field or ("sweep",))


def fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


# ---------------------------------------------------------------------- the sweep
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ResourcesSpec(Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    memory_gb: float | None = Field(default=None, gt=0)

    @field_validator("gpu")
    @classmethod
    def _whole_gpus_above_one(cls, gpu: float) -> float:
        if gpu > 1 and gpu != int(gpu):
            raise ValueError("fractions are allowed below 1 only (0.25, 0.5, 2)")
        return gpu


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


def _names(value: Any, what: str) -> Any:
    """A name or a non-empty list of names; a list of one is the plain name."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0] if len(value) == 1 else value
    if isinstance(value, str):
        return value
    raise ValueError(f"{what} or a list of them, one per objective")


class SweepSpec(Strict):
    """A sweep file. ``trainable`` is the trainable's section: the built-in CNN's settings
    (see ``raytune_hpo.train.settings``), or ``function`` + ``config`` for a user's trainable;
    ``scheduler`` None means FIFO, or BOHB's own for searcher ``bohb`` (``raytune_hpo.bohb``)."""

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
    storage_path: str = "~/raytune-hpo-results"
    seed: int = 0
    max_failures: int = Field(default=0, ge=0)
    time_budget_s: float | None = Field(default=None, gt=0)
    # Per trial (raytune_hpo.watch): wall clock while running, and the longest wait for a
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
    # checked against raytune_hpo.loggers when the run is assembled.
    loggers: list[Any] | None = None
    # Earlier sweep directories whose results the searcher is told before it suggests
    # (raytune_hpo.warm_start); relative to the sweep file, recorded absolute in its copy.
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
    def from_yaml(cls, path: str | os.PathLike[str]) -> SweepSpec:
        base = str(Path(path).expanduser().resolve().parent)
        return cls.from_dict(read_yaml(path), source=str(path), base_dir=base)

    @classmethod
    def quickstart(cls) -> SweepSpec:
        """The built-in quickstart sweep shipped inside the package."""
        text = resources.files("raytune_hpo").joinpath("specs", QUICKSTART).read_text()
        return cls.from_dict(parse_yaml(text, QUICKSTART), source=QUICKSTART)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "sweep", base_dir: str | None = None
    ) -> SweepSpec:
        """``base_dir``: where ``FILE.py:NAME`` user code is found (default: the current
        directory when the run is assembled)."""
        if not isinstance(data, dict):
            raise SpecError("the sweep file must be a YAML mapping of fields", source=source)
        spec = validate(cls, data, source)
        try:
            spec.search_space  # noqa: B018 - parse the space now: its errors are the file's
        except ValueError as e:
            raise user_error(e).as_spec_error(source) from None
        spec._source, spec._base_dir = source, base_dir
        return spec

    @cached_property
    def search_space(self) -> SearchSpace:
        """The parsed ``space`` (parsed once; the spec is frozen)."""
        return SearchSpace.from_dict(self.space)

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
        in a sweep directory, read back from elsewhere)."""
        data = self.model_dump(exclude_none=True)
        if absolute_code_dir:
            data["code_dir"] = self.base_dir
        if self.warm_start:  # the copy in a sweep directory is read from elsewhere
            data["warm_start"] = [str(p) for p in self.warm_start_paths]
        return yaml.safe_dump(data, sort_keys=False)


__all__ = [
    "MODES",
    "BoundSpec",
    "SchedulerSpec",
    "SearcherSpec",
    "SpecError",
    "SweepSpec",
    "UserError",
    "first_error",
    "parse_fields",
    "parse_yaml",
    "read_yaml",
    "validate",
]
