"""Studies: several searchers x repetitions on one problem with the same budget, the way the
design papers compared search methods (``raytune-hpo compare STUDY.yaml``).

A problem is a built-in test function (optionally multi-fidelity) or a trainable sweep file.
Function problems under FIFO are driven in-process through the ``Searcher`` API (microseconds
per evaluation, so hundreds of runs take seconds); anything with an early-stopping scheduler,
and every trainable sweep, runs as a real Ray Tune experiment. Each finished run is written to
``OUT/runs/<method>-<rep>.csv`` at once, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import math
import os
import re
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raytune_hpo.functions import FUNCTIONS, make_problem
from raytune_hpo.spec import SchedulerSpec, SearcherSpec, SpecError, SweepSpec

TRIALS_CSV = "trials.csv"
STUDY_COPY = "study.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemSpec(_Strict):
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


class MethodSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    searcher: SearcherSpec
    scheduler: SchedulerSpec = SchedulerSpec()


class StudySpec(_Strict):
    name: str = Field(default="study", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    problems: list[ProblemSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    repetitions: int = Field(default=10, ge=1)
    budget: int = Field(default=50, ge=1)  # trials per run
    max_concurrent: int = Field(default=1, ge=1)
    seed: int = 0  # repetition r runs with seed + r (trainables: a new data split too)

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
        p = Path(path)
        if not p.is_file():
            raise SpecError(f"{path}: study file does not exist")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError:
            raise SpecError(f"{path}: not valid YAML") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: the study file must be a YAML mapping of fields")
        data = cls._one_problem(data)
        problems = data.get("problems")
        if isinstance(problems, list):
            data["problems"] = [_relative_sweep(q, p.parent) for q in problems]
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "study") -> StudySpec:
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "study"
            raise SpecError(
                f"{source}: {loc}: {err['msg'].removeprefix('Value error, ')}"
            ) from None
        names = [m.name for m in spec.methods]
        if len(set(names)) != len(names):
            raise SpecError(f"{source}: methods: names must be unique, got {names}")
        labels = [q.label for q in spec.problems]
        if len(set(labels)) != len(labels):
            raise SpecError(f"{source}: problems: each must differ, got {labels}")
        for q in spec.problems:
            for i, m in enumerate(spec.methods):
                try:
                    spec.sweep_for(q, m, 0)  # validates searcher/scheduler and the problem
                except (SpecError, ValueError) as e:
                    raise SpecError(f"{source}: methods.{i} ({m.name}): {_tail(e)}") from None
        return spec

    # ------------------------------------------------------------------ runs
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
            base = SweepSpec.from_yaml(problem.sweep).model_dump(exclude_unset=True)
            return SweepSpec.from_dict({**base, **fields}, source=problem.sweep)
        fn = problem.make()
        data = {
            **fields,
            "space": fn.space(),
            "metric": "loss",
            "mode": "min",
            "trainable": {"epochs": problem.max_budget or 1},
        }
        return SweepSpec.from_dict(data, source=f"methods {method.name}", check=False)

    def direction(self, problem: ProblemSpec) -> tuple[str, str]:
        """(metric, mode) of a problem."""
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


def _tail(e: Exception) -> str:
    msg = str(e)
    return msg.split(": ", 1)[1] if msg.startswith("methods ") else msg


# ---------------------------------------------------------------------- one run
def run_direct(
    study: StudySpec, problem: ProblemSpec, method: MethodSpec, rep: int
) -> pd.DataFrame:
    """A function problem under FIFO, in-process: ``max_concurrent`` trials are outstanding
    at a time and finish in the order they started."""
    from ray.tune.search import Searcher

    sweep = study.sweep_for(problem, method, rep)
    fn = problem.make()
    rng = np.random.default_rng([study.seed, rep, 7])
    searcher = _direct_searcher(sweep)
    live: deque[tuple[str, dict]] = deque()
    rows: list[dict[str, Any]] = []
    asked = 0
    budget = fn.max_budget
    while len(rows) < study.budget:
        while asked < study.budget and len(live) < study.max_concurrent:
            tid = f"t{asked}"
            cfg = searcher.suggest(tid)
            if cfg is None or cfg == Searcher.FINISHED:
                break
            live.append((tid, cfg))
            asked += 1
        if not live:
            break  # the searcher is done (LHS budget, PSO converged, grid exhausted)
        tid, cfg = live.popleft()
        value = fn.at(cfg, budget, rng)
        searcher.on_trial_complete(tid, {"loss": value, "training_iteration": budget})
        rows.append({"trial": len(rows), "value": value, "budget": budget, **_flat(cfg)})
    return pd.DataFrame(rows)


def _direct_searcher(sweep: SweepSpec):
    from raytune_hpo.searchers import owns_space

    name = sweep.searcher.name
    if owns_space(name):
        s = sweep.build_searcher()
        s.set_search_properties(sweep.metric, sweep.mode, {})
        return s
    return _RaySampler(sweep)


class _RaySampler:
    """``random``/``grid`` in-process: Ray Tune's own domains sampled with one seeded rng."""

    def __init__(self, sweep: SweepSpec) -> None:
        self._rng = np.random.default_rng(sweep.seed)
        self._grid = sweep.search_space.grid() if sweep.searcher.name == "grid" else None
        self._domains = sweep.search_space.to_tune()

    def suggest(self, trial_id: str):
        from ray.tune.search import Searcher

        if self._grid is not None:
            return self._grid.pop(0) if self._grid else Searcher.FINISHED
        return {k: v.sample(random_state=self._rng) for k, v in self._domains.items()}

    def on_trial_complete(self, trial_id: str, result=None, error=False) -> None:
        pass


def run_tune(
    study: StudySpec,
    problem: ProblemSpec,
    method: MethodSpec,
    rep: int,
    storage: Path,
    *,
    events: bool = False,
):
    """One run as a real Ray Tune experiment (schedulers, trainables). Returns one row per
    trial in the order trials were created; with ``events``, also every reported epoch."""
    from raytune_hpo.run import build_tuner, experiment_name

    sweep = study.sweep_for(problem, method, rep)
    sweep = SweepSpec.from_dict(
        {**sweep.model_dump(exclude_unset=True), "storage_path": str(storage)},
        check=problem.sweep is not None,
    )
    trainable = _function_trainable(problem, study.seed) if problem.function else None
    grid = build_tuner(sweep, experiment_name(sweep), trainable=trainable).fit()
    rows, curves = [], []
    for r in grid:
        df = r.metrics_dataframe
        if df is None or df.empty:
            continue
        number = re.search(r"_[0-9a-f]{5,}_(\d+)_", Path(r.path).name)
        order = int(number.group(1)) if number else len(rows)
        last = df.iloc[-1]
        rows.append(
            {
                "order": order,
                "value": float(last.get(sweep.metric, math.nan)),
                "budget": int(last["training_iteration"]),
                **_flat(r.config, sweep.search_space),
            }
        )
        if events and "wall" in df:
            curves.append(
                pd.DataFrame(
                    {
                        "order": order,
                        "epoch": df["training_iteration"],
                        "value": df[sweep.metric],
                        "wall": df["wall"],
                    }
                )
            )
    out = pd.DataFrame(rows).sort_values("order").drop(columns="order").reset_index(drop=True)
    out.insert(0, "trial", range(len(out)))
    if events:
        return out, pd.concat(curves, ignore_index=True).sort_values("wall")
    return out


def _function_trainable(problem: ProblemSpec, seed: int):

    def function_trial(config):
        from ray import tune

        fn = problem.make()
        key = zlib.crc32(repr(sorted(config.items())).encode())  # stable across processes
        rng = np.random.default_rng([seed, key])
        budget = fn.max_budget
        for b in range(1, budget + 1):
            value = fn.at(config, b, rng)
            tune.report({"loss": value, "epoch": b, "wall": time.time()})

    return function_trial


def _flat(cfg: dict, space=None) -> dict[str, Any]:
    if space is not None:
        return {f"config.{k}": v for k, v in space.flat_config(cfg).items()}
    return {f"config.{k}": v for k, v in cfg.items() if not isinstance(v, dict)}


# ---------------------------------------------------------------------- the study
def compare(study: StudySpec, out: str | os.PathLike[str], *, log=print) -> pd.DataFrame:
    """Run every problem x method x repetition not yet on disk under ``out``; return every
    trial (columns problem, method, rep, trial, value, budget, config.*)."""
    out = Path(out).expanduser()
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (out / STUDY_COPY).write_text(yaml.safe_dump(study.model_dump(), sort_keys=False))
    todo = [
        (q, m, r) for q in study.problems for r in range(study.repetitions) for m in study.methods
    ]
    best: dict[tuple[str, str], float] = {}
    start = time.perf_counter()
    frames = []
    for i, (q, m, rep) in enumerate(todo, 1):
        path = runs / f"{q.label}--{m.name}--{rep}.csv"
        if path.is_file():
            df, status = pd.read_csv(path), "kept"
        else:
            direct = q.function is not None and m.scheduler.name == "fifo"
            df = run_direct(study, q, m, rep) if direct else run_tune(study, q, m, rep, out / "ray")
            for col, value in (("problem", q.label), ("method", m.name), ("rep", rep))[::-1]:
                df.insert(0, col, value)
            tmp = path.with_suffix(".tmp")
            df.to_csv(tmp, index=False)
            tmp.replace(path)  # atomic: a killed study never leaves half a run
            status = "done"
        frames.append(df)
        sign = 1 if study.direction(q)[1] == "min" else -1
        final = sign * (sign * df["value"]).min() if len(df) else math.nan
        key = (q.label, m.name)
        best[key] = final if key not in best else sign * min(sign * best[key], sign * final)
        mine = {k: v for k, v in best.items() if k[0] == q.label}
        leader = min(mine, key=lambda k: sign * mine[k])
        log(
            f"[{i}/{len(todo)}] {q.label} {m.name} rep {rep} {status}: best {final:.5g}; "
            f"leader {leader[1]} {mine[leader]:.5g} ({time.perf_counter() - start:.1f} s)"
        )
    trials = pd.concat(frames, ignore_index=True)
    trials.to_csv(out / TRIALS_CSV, index=False)
    return trials


def load_study(out: str | os.PathLike[str]) -> tuple[StudySpec, pd.DataFrame]:
    out = Path(out).expanduser()
    if not (out / TRIALS_CSV).is_file() or not (out / STUDY_COPY).is_file():
        raise FileNotFoundError(f"{out}: no {TRIALS_CSV}/{STUDY_COPY} here (run compare first)")
    data = yaml.safe_load((out / STUDY_COPY).read_text())
    return StudySpec.model_validate(data), pd.read_csv(out / TRIALS_CSV)


__all__ = ["StudySpec", "compare", "load_study", "run_direct", "run_tune"]
