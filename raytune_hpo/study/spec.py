"""The study file (``raytune-hpo compare STUDY.yaml``): problems x methods x repetitions with
the same budget, the way the design papers compared search methods. Data only: whether each
method can run on each problem is checked by ``study.runner.check`` (it assembles the runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from raytune_hpo.spec import (
    SchedulerSpec,
    SearcherSpec,
    SpecError,
    Strict,
    SweepSpec,
    read_yaml,
    validate,
)
from raytune_hpo.study.functions import FUNCTIONS, make_problem

STUDY_COPY = "study.yaml"


class ProblemSpec(Strict):
    function: Literal["branin", "ackley", "styblinski_tang", "levy"] | None = None
    dims: int | None = Field(default=None, ge=1)
    max_budget: int | None = Field(default=None, ge=1)  # multi-fidelity view with this budget
    sweep: str | None = None  # a trainable sweep file instead (relative to the study file)

    @property
    def label(self) -> str:
        if self.sweep:
            return Path(self.sweep).stem
        dims = f"{self.dims}d" if self.dims else ""
        mf = f"-mf{self.max_budget}" if self.max_budget else ""
        return f"{self.function}{dims}{mf}"

    def make(self):
        return make_problem(self.function, self.dims, self.max_budget) if self.function else None

    @model_validator(mode="after")
    def _one_kind(self) -> ProblemSpec:
        if (self.function is None) == (self.sweep is None):
            raise ValueError(f"give either function ({', '.join(FUNCTIONS)}) or sweep")
        return self


class MethodSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    searcher: SearcherSpec
    scheduler: SchedulerSpec = SchedulerSpec()


class Recorded(Strict):
    """What ``compare`` learnt of a problem, kept in the study's ``study.yaml`` so reports
    need not reload sweeps or datasets."""

    metric: str
    mode: Literal["min", "max"]
    val_size: int | None = None  # validation images per run (accuracy z-test)
    minimum: float | None = None  # the known optimum of a test function


class StudySpec(Strict):
    name: str = Field(default="study", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    problems: list[ProblemSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    repetitions: int = Field(default=10, ge=1)
    budget: int = Field(default=50, ge=1)  # trials per run
    max_concurrent: int = Field(default=1, ge=1)
    seed: int = 0  # repetition r runs with seed + r (trainables: a new data split too)
    recorded: dict[str, Recorded] = Field(default_factory=dict)  # written by compare
    _source: str = PrivateAttr(default="study")

    @model_validator(mode="before")
    @classmethod
    def _one_problem(cls, data: Any) -> Any:
        """``problem:`` (one) is accepted for ``problems:`` (a list)."""
        if isinstance(data, dict) and "problem" in data and "problems" not in data:
            data = {**data, "problems": [data["problem"]]}
            del data["problem"]
        return data

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> StudySpec:
        data = cls._one_problem(read_yaml(path, what="study"))
        base = Path(path).expanduser().parent
        problems = data.get("problems")
        if isinstance(problems, list):
            data["problems"] = [_relative_sweep(q, base) for q in problems]
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "study") -> StudySpec:
        spec = validate(cls, data, source)
        names = [m.name for m in spec.methods]
        if len(set(names)) != len(names):
            raise SpecError(f"names must be unique, got {names}", field="methods", source=source)
        labels = [q.label for q in spec.problems]
        if len(set(labels)) != len(labels):
            raise SpecError(f"each must differ, got {labels}", field="problems", source=source)
        spec._source = source
        return spec

    def sweep_for(self, problem: ProblemSpec, method: MethodSpec, rep: int) -> SweepSpec:
        """The sweep one run is: the problem with this method, budget and seed."""
        fields: dict[str, Any] = {
            "searcher": method.searcher.model_dump(),
            "scheduler": method.scheduler.model_dump(),
            "num_samples": self.budget,
            "max_concurrent": self.max_concurrent,
            "seed": self.seed + rep,
            "name": f"{self.name}-{problem.label}-{method.name}-{rep}",
        }
        if problem.sweep:
            return SweepSpec.from_yaml(problem.sweep).with_fields(**fields)
        data = {**fields, "space": problem.make().space(), "metric": "loss", "mode": "min"}
        return SweepSpec.from_dict(data, source=f"methods {method.name}")

    def direction(self, problem: ProblemSpec) -> tuple[str, str]:
        """(metric, mode) of a problem: recorded by compare, else read once."""
        rec = self.recorded.get(problem.label)
        if rec is not None:
            return rec.metric, rec.mode
        if problem.function:
            return "loss", "min"
        s = SweepSpec.from_yaml(problem.sweep)
        return s.metric, s.mode


def _relative_sweep(problem: Any, base: Path) -> Any:
    if isinstance(problem, dict) and isinstance(problem.get("sweep"), str):
        sweep = os.path.expanduser(problem["sweep"])
        if not os.path.isabs(sweep):
            return {**problem, "sweep": str(base / sweep)}
    return problem


__all__ = ["STUDY_COPY", "MethodSpec", "ProblemSpec", "Recorded", "StudySpec"]
