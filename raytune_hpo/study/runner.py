"""Studies: several searchers x repetitions on one problem with the same budget, the way the
design papers compared search methods (``raytune-hpo compare STUDY.yaml``).

A problem is a built-in test function (optionally multi-fidelity), a COCO function
(``study.coco``) or a trainable sweep file. Function problems under FIFO are driven in-process
(microseconds per evaluation, so hundreds of runs take seconds): our searchers through the
``Searcher`` API, Optuna's samplers through ask and tell, both by one loop (``drive``) that keeps
``concurrency`` trials out at a time. Anything with an early-stopping scheduler, and every
trainable sweep, runs as a real Ray Tune experiment. Each finished run is written to
``OUT/runs/<problem>--<method>--<rep>.csv`` at once, so an interrupted study continues where it
stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from raytune_hpo.errors import SpecError, UserError
from raytune_hpo.names import BUDGET_ATTR, config_column
from raytune_hpo.plan.assemble import Plan, assemble
from raytune_hpo.study import samplers
from raytune_hpo.study.pareto import SCORE
from raytune_hpo.study.spec import STUDY_COPY, MethodSpec, ProblemSpec, Recorded, StudySpec
from raytune_hpo.sweep.sections import UserSection
from raytune_hpo.sweep.space import SearchSpace
from raytune_hpo.sweep.spec import SweepSpec
from raytune_hpo.train.user import UserTrainable

TRIALS_CSV = "trials.csv"


def check(study: StudySpec) -> StudySpec:
    """Build every problem and assemble every problem x method once: a problem or method that
    cannot run is a one-line SpecError naming it, before anything starts."""
    for i, q in enumerate(study.problems):
        if q.is_function:
            try:
                q.make().space()  # a COCO problem imports cocoex here, a ZDT one pymoo
            except UserError as e:  # COCO or pymoo without its extra, a bad reference
                if not q.several:
                    raise e.as_spec_error(study._source) from None
                field = ("problems", i, *e.field)
                raise SpecError(e.message, field=field, source=study._source) from None
        elif SweepSpec.from_yaml(q.sweep).objectives.several:
            msg = "a study scores a sweep file with one objective (function problems: zdt1, ...)"
            raise SpecError(msg, field=("problems", i, "sweep"), source=study._source)
    checked: set[tuple] = set()
    for q in study.problems:
        same = _same_run(q)  # problems whose runs assemble alike are checked once
        if same is not None and same in checked:
            continue
        if same is not None:  # a sweep file's (None) is checked each time
            checked.add(same)
        for i, m in enumerate(study.methods):
            try:
                _check_method(study, q, m)
            except UserError as e:  # a sweep's error: its field lies under this method
                raise SpecError(
                    f"{e.message} (method {m.name!r}, problem {q.label!r})",
                    field=("methods", i, *e.field),
                    source=study._source,
                ) from None
    return study


def _same_run(problem: ProblemSpec) -> tuple | None:
    """What assembling a run of a function problem depends on (its space, objectives and
    fidelities: COCO's 24 functions of one dimension share it); None for a sweep file."""
    if not problem.is_function:
        return None
    fn = problem.make()
    return (repr(fn.space()), problem.several, fn.max_budget)


def _check_method(study: StudySpec, problem: ProblemSpec, method: MethodSpec) -> None:
    if problem.several and method.scheduler.name != "fifo":
        msg = "a problem with several objectives has a single fidelity; allowed: fifo"
        raise UserError(msg, field=("scheduler", "name"))
    if method.optuna is None:
        plan_for(study, problem, method, 0)  # refuses a searcher that takes one objective
    elif not problem.is_function:
        raise UserError("an optuna method runs on function problems only", field="optuna")
    elif problem.several and method.optuna not in samplers.SEVERAL_OBJECTIVES:
        allowed = ", ".join(samplers.SEVERAL_OBJECTIVES)
        msg = f"{method.optuna!r} takes one objective; allowed with several: {allowed}"
        raise UserError(msg, field="optuna")
    else:
        samplers.make_sampler(method.optuna, method.options, seed=study.seed)


def plan_for(study: StudySpec, problem: ProblemSpec, method: MethodSpec, rep: int) -> Plan:
    """One run assembled: a test function runs as a function trainable reporting ``loss``
    once per budget step; a sweep file runs its own trainable."""
    sweep = study.sweep_for(problem, method, rep)
    if problem.sweep:
        return assemble(sweep)
    fn = _function_trainable(problem, study.seed)
    made = problem.make()
    metrics = list(made.objectives) if problem.several else ["loss"]
    section = UserSection(metrics=metrics)
    contract = UserTrainable.from_object(fn, section, max_budget=made.max_budget)
    return assemble(sweep, trainable=contract)


def is_direct(problem: ProblemSpec, method: MethodSpec) -> bool:
    """Whether a run goes in-process (a function problem with every trial run to the end)."""
    return problem.is_function and method.scheduler.name == "fifo"


# ---------------------------------------------------------------------- one run
def run_direct(
    study: StudySpec, problem: ProblemSpec, method: MethodSpec, rep: int
) -> pd.DataFrame:
    """A function problem under FIFO, in-process, with our searcher (the ``Searcher`` API) or
    an Optuna sampler (ask and tell): ``study.concurrency`` trials are out at a time and their
    results return in the order they started."""
    fn = problem.make()
    rng = np.random.default_rng([study.seed, rep, 7])
    proposer: OptunaProposer | SearcherProposer
    if method.optuna is not None:
        sampler = samplers.make_sampler(method.optuna, method.options, seed=study.seed + rep)
        modes = fn.modes if problem.several else ("min",)
        proposer = OptunaProposer(sampler, SearchSpace.from_dict(fn.space()), modes)
    else:
        proposer = SearcherProposer(_direct_searcher(plan_for(study, problem, method, rep)))
    budget = fn.max_budget
    if getattr(fn, "per_config_noise", False):  # tabular: the seed read follows the config

        def evaluate(cfg):
            return fn.at(cfg, budget, config_rng(study.seed + rep, cfg))

    else:

        def evaluate(cfg):
            return fn.at(cfg, budget, rng)

    df = drive(proposer, evaluate, study.budget, study.concurrency)
    if problem.several and len(df):
        df["value"] = fn.score(df)  # the hypervolume after each evaluation
    return df


def config_rng(seed: int, config: dict) -> np.random.Generator:
    """A generator made from a run's seed and a configuration (stable across processes), so
    the same configuration draws the same noise in one run."""
    key = zlib.crc32(repr(sorted(_flat(config).items())).encode())
    return np.random.default_rng([seed, key])


def drive(proposer, evaluate, trials: int, concurrency: int) -> pd.DataFrame:
    """Up to ``trials`` evaluations with ``concurrency`` suggestions out at a time: the oldest
    returns its result, then the next is asked for (the order a cluster of equal workers gives).
    ``proposer``: ``ask() -> (key, config) | None`` and ``tell(key, value)``; None is "nothing
    now" (Ray's meaning): the free slots wait for the next result, and with nothing out the run
    is done. ``evaluate`` returns a number (column ``value``) or, with several objectives, a
    dict of them by name (a column each; ``value`` is left for the score). Column ``out``: the
    trials out when this one returned, itself included, so a searcher that leaves slots idle
    (cheap here, slow on a cluster) shows it."""
    live: deque[tuple[Any, dict]] = deque()
    rows: list[dict[str, Any]] = []
    asked = 0
    while len(rows) < trials:
        while asked < trials and len(live) < concurrency:
            got = proposer.ask()
            if got is None:
                break
            live.append(got)
            asked += 1
        if not live:
            break  # the searcher is done (LHS budget, PSO converged, grid exhausted)
        out = len(live)
        key, cfg = live.popleft()
        value = evaluate(cfg)
        proposer.tell(key, value)
        values = value if isinstance(value, dict) else {}
        score = math.nan if values else value
        row = {"trial": len(rows), "value": score, "budget": proposer.budget, "out": out}
        rows.append({**row, **values, **_flat(cfg)})
    return pd.DataFrame(rows)


class SearcherProposer:
    """A ``ray.tune.search.Searcher`` (or our ``_RaySampler``) as ask/tell."""

    budget = 1

    def __init__(self, searcher) -> None:
        self._searcher = searcher
        self._asked = 0

    def ask(self) -> tuple[str, dict] | None:
        from ray.tune.search import Searcher

        tid = f"t{self._asked}"
        cfg = self._searcher.suggest(tid)
        if cfg is None or cfg == Searcher.FINISHED:
            return None
        self._asked += 1
        return tid, cfg

    def tell(self, key: str, value: float | dict[str, float]) -> None:
        self._searcher.on_trial_complete(key, searcher_result(value, self.budget))


def searcher_result(value: float | dict[str, float], budget: int) -> dict[str, Any]:
    """The result a searcher is told (``on_trial_complete``), as Ray Tune would give it: the
    reported metrics, ``loss`` for a single objective or each objective by name, and the budget.
    The one place a study tells our searchers their results."""
    metrics = value if isinstance(value, dict) else {"loss": value}
    return {**metrics, BUDGET_ATTR: budget}


class OptunaProposer:
    """An Optuna sampler through a study's ``ask``/``tell`` over the problem's distributions,
    with one direction per objective (``modes``; several: Optuna's multi-objective study)."""

    budget = 1

    def __init__(self, sampler, space: SearchSpace, modes: tuple[str, ...] = ("min",)) -> None:
        import optuna

        directions: list[Literal["minimize", "maximize"]] = [
            "minimize" if m == "min" else "maximize" for m in modes
        ]
        self._study = optuna.create_study(sampler=sampler, directions=directions)
        self._space = space
        self._distributions = space.to_optuna()

    @property
    def study(self):
        """The Optuna study asked and told (one direction per objective)."""
        return self._study

    def ask(self) -> tuple[int, dict]:
        trial = self._study.ask(self._distributions)
        return trial.number, self._space.from_library(trial.params)

    def tell(self, key: int, value: float | dict[str, float]) -> None:
        self._study.tell(key, list(value.values()) if isinstance(value, dict) else value)


def _direct_searcher(plan: Plan):
    if plan.owns_space:
        s = plan.searcher()
        objective = plan.searcher_objective()  # what Plan.searcher gave it (lists, later)
        s.set_search_properties(objective["metric"], objective["mode"], {})
        return s
    return _RaySampler(plan.spec)


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
    from raytune_hpo.run.sweep import build_tuner, experiment_name

    plan = plan_for(study, problem, method, rep)
    sweep = plan.spec.with_fields(storage_path=str(storage))
    plan = dataclasses.replace(plan, spec=sweep)
    grid = build_tuner(plan, experiment_name(sweep)).fit()
    rows, curves = [], []
    for order, r in enumerate(grid):  # a ResultGrid lists trials in the order they were made
        df = r.metrics_dataframe
        if df is None or df.empty:
            continue
        last = df.iloc[-1]
        rows.append(
            {
                "order": order,
                "value": float(last.get(sweep.metric, math.nan)),
                "budget": int(last[BUDGET_ATTR]),
                **_flat(r.config, sweep.search_space),
            }
        )
        if events and "wall" in df:
            curves.append(
                pd.DataFrame(
                    {
                        "order": order,
                        "epoch": df[BUDGET_ATTR],
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
            metrics = value if isinstance(value, dict) else {"loss": value}
            tune.report({**metrics, "epoch": b, "wall": time.time()})

    return function_trial


def _flat(cfg: dict, space=None) -> dict[str, Any]:
    if space is not None:
        return {config_column(k): v for k, v in space.flat_config(cfg).items()}
    return {config_column(k): v for k, v in cfg.items() if not isinstance(v, dict)}


# ---------------------------------------------------------------------- the study
def compare(study: StudySpec, out: str | os.PathLike[str], *, log=print) -> pd.DataFrame:
    """Run every problem x method x repetition not yet on disk under ``out``; return every
    trial (columns problem, method, rep, trial, value, budget, config.*)."""
    out = Path(out).expanduser()
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    study = study.model_copy(update={"recorded": {q.label: record(q) for q in study.problems}})
    copy = study.model_dump(exclude_none=True)
    (out / STUDY_COPY).write_text(yaml.safe_dump(copy, sort_keys=False))
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
            direct = is_direct(q, m)
            df = run_direct(study, q, m, rep) if direct else run_tune(study, q, m, rep, out / "ray")
            for col, value in (("problem", q.label), ("method", m.name), ("rep", rep))[::-1]:
                df.insert(0, col, value)
            tmp = path.with_suffix(".tmp")
            df.to_csv(tmp, index=False)
            tmp.replace(path)  # atomic: a killed study never leaves half a run
            status = "done"
        frames.append(df)
        sign = 1 if study.recorded[q.label].mode == "min" else -1
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
    tmp = out / f"{TRIALS_CSV}.tmp"
    trials.to_csv(tmp, index=False)
    tmp.replace(out / TRIALS_CSV)  # a report read while compare ends never sees half a table
    return trials


def record(problem: ProblemSpec) -> Recorded:
    """Metric, mode, validation size and optimum of a problem, once, when compare starts."""
    if problem.several:
        fn = problem.make()
        return Recorded(
            metric=SCORE,
            mode="max",
            objectives=list(fn.objectives),
            ideal=fn.ideal.tolist(),
            reference=fn.reference.tolist(),
            maximum=fn.optimum,
        )
    if problem.is_function:
        return Recorded(metric="loss", mode="min", minimum=problem.make().minimum)
    sweep = SweepSpec.from_yaml(problem.sweep)
    metric, mode = sweep.objectives.metrics[0], sweep.objectives.modes[0]  # its one objective
    return Recorded(
        metric=metric, mode="max" if mode == "max" else "min", val_size=_val_size(sweep)
    )


def _val_size(sweep: SweepSpec) -> int | None:
    """Validation images per run of a built-in CNN sweep on digits/synthetic (the accuracy
    z-test needs it); None otherwise."""
    from raytune_hpo.sweep.sections import CNNSettings

    t = sweep.trainable_section
    if not isinstance(t, CNNSettings) or t.dataset not in ("digits", "synthetic"):
        return None
    from raytune_hpo.train.data import load_dataset

    n = len(load_dataset(t.dataset, seed=0, **t.data.model_dump(exclude_defaults=True)).labels)
    return n if t.k_folds > 1 else math.ceil(n * t.val_fraction)


def load_study(out: str | os.PathLike[str]) -> tuple[StudySpec, pd.DataFrame]:
    """A study directory's spec and trials (``out``: a local path or a URI)."""
    import io

    import raytune_hpo.storage as storage
    from raytune_hpo.sweep.spec import parse_yaml

    out = storage.normalize(out)
    trials, copy = storage.join(out, TRIALS_CSV), storage.join(out, STUDY_COPY)
    if not storage.is_file(trials) or not storage.is_file(copy):
        raise UserError(f"no {TRIALS_CSV}/{STUDY_COPY} here (run compare first)", source=out)
    data = parse_yaml(storage.read_text(copy), copy)
    if not isinstance(data, dict):
        raise SpecError("the study file must be a YAML mapping of fields", source=copy)
    study = StudySpec.model_validate(data)
    return study, pd.read_csv(io.StringIO(storage.read_text(trials)))


__all__ = [
    "OptunaProposer",
    "SearcherProposer",
    "check",
    "compare",
    "drive",
    "is_direct",
    "load_study",
    "plan_for",
    "record",
    "run_direct",
    "run_tune",
    "searcher_result",
]
