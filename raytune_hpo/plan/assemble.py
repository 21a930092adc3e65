"""One place turns a sweep spec into the parts of a Ray Tune run, before Ray starts.

``assemble(spec)`` is a short sequence of named steps: the checks of the spec against the
trainable's contract (``CHECKS``), the plan (searcher and scheduler names with BOHB's pairing
rule from ``raytune_hpo.plan.bohb``, the number of trials, the trainable's budget, the loggers),
the searcher and scheduler built once so that their own checks name a bad option, the earlier
results of ``warm_start``, and the warning rules (``WARNINGS``), each a function of the plan.
It returns a :class:`~raytune_hpo.plan.plan.Plan`; every problem is a one-line ``SpecError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import raytune_hpo.plan.bohb as bohb
import raytune_hpo.plan.loggers as sweep_loggers
import raytune_hpo.plan.warm_start as warm_start
import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError, did_you_mean, user_error
from raytune_hpo.names import BUDGET_ATTR
from raytune_hpo.plan.plan import EARLY_STOPPING, Plan
from raytune_hpo.plan.stopping import RAY_COUNTERS, StopCriteria
from raytune_hpo.sweep.spec import SweepSpec
from raytune_hpo.train import contract_of
from raytune_hpo.train.cnn import CNNTrainable
from raytune_hpo.train.contract import TrainableContract

DEFAULT_SAMPLES = 10
RUNTIME_ENV_KEYS = ("pip", "uv", "conda", "env_vars", "excludes", "config")


@dataclass(frozen=True)
class Draft:
    """What the steps read: the spec, its trainable's contract and where the data lives."""

    spec: SweepSpec
    contract: TrainableContract
    local_data: bool  # False: the data lives on a cluster (``submit``)


def assemble(spec: SweepSpec, *, trainable: Any = None, local_data: bool = True) -> Plan:
    """Check ``spec`` and assemble its run; ``SpecError`` (one line) for anything that would
    fail once Ray is up. ``local_data=False``: the data lives on a cluster (``submit``)."""
    try:
        draft = Draft(spec, contract_of(spec, trainable), local_data)
        for check in CHECKS:
            check(draft)
        plan = plan_of(draft)
        factory = searcher_factory(plan)
        check_population(plan)
        check_objectives(plan)
        check_built(plan)
        plan = with_warm_start(plan, factory)
        warnings = [w for rule in WARNINGS for w in rule(plan, factory, draft)]
        return replace(plan, warnings=(*plan.warnings, *warnings))
    except ValueError as e:
        raise user_error(e).as_spec_error(spec.source) from None


# ---------------------------------------------------------------------- checks of the spec
def check_space(d: Draft) -> None:
    """Every searched value and constant is one the trainable takes."""
    d.contract.check_space(d.spec.search_space)


def check_metric(d: Draft) -> None:
    """Every objective and constrained metric is one the trainable reports (where it declares
    what it reports)."""
    objectives = d.spec.objectives
    for name in objectives.reported:
        _reported(d, name, objectives.field_of(name))


def check_stop(d: Draft) -> None:
    """``stop:``: each criterion has a direction and reads a metric the trainable reports."""
    for name in StopCriteria.of(d.spec).metrics:
        _reported(d, name, ("stop", name))


def check_checkpoints(d: Draft) -> None:
    """``checkpoints.score`` is a metric the trainable reports."""
    kept = d.spec.checkpoints
    if kept is not None and kept.score is not None and kept.score not in RAY_COUNTERS:
        _reported(d, kept.score, ("checkpoints", "score"))


def _reported(d: Draft, name: str, field: Any) -> None:
    """``name`` is a metric the trainable reports (where it declares what it reports)."""
    metrics = d.contract.metrics(d.spec.search_space)
    if metrics is not None and name not in metrics:
        raise UserError(
            f"{name!r} is not reported by the trainable; allowed: {', '.join(metrics)}"
            f"{did_you_mean(name, metrics)}",
            field=field,
        )


def check_data(d: Draft) -> None:
    d.contract.check_data(local=d.local_data)


def check_runtime_env(d: Draft) -> None:
    """The sweep's ``runtime_env``: keys we pass to Ray (working_dir and py_modules are the
    job's own), each of the type Ray takes."""
    env = d.spec.runtime_env
    if not env:
        return
    unknown = sorted(set(env) - set(RUNTIME_ENV_KEYS))
    if unknown:
        raise UserError(
            f"not passed to Ray by a sweep; allowed: {', '.join(RUNTIME_ENV_KEYS)} (the "
            "sweep's directory is the job's working_dir)",
            field=("runtime_env", unknown[0]),
        )
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as e:
        raise UserError(str(e).strip().splitlines()[0], field="runtime_env") from None


def check_workers(d: Draft) -> None:
    """``workers:`` only where data-parallel trials can work; several GPUs per trial only
    through it (the built-in CNN trains on one device per process)."""
    spec, workers = d.spec, d.spec.workers
    cnn = isinstance(d.contract, CNNTrainable)
    if workers is None:
        if cnn and spec.resources.gpu > 1:
            raise UserError(
                f"{spec.resources.gpu:g} GPUs for one process of the built-in CNN, which trains "
                f"on one device; for a trial on several GPUs give workers: {{count: "
                f"{spec.resources.gpu:g}, gpu: 1}} (one rank per GPU)",
                field=("resources", "gpu"),
            )
        return
    _refuse_with_workers(d, cnn)
    if spec.resources != type(spec.resources)():  # (a sweep's copy writes the defaults)
        raise UserError(
            "with workers each rank asks for workers.cpu, workers.gpu and workers.memory_gb "
            "(the trial itself for nothing); leave resources out",
            field="resources",
        )
    if workers.backend == "nccl" and not workers.gpu:
        raise UserError(
            "nccl needs a GPU on every rank; allowed without workers.gpu: auto, gloo",
            field=("workers", "backend"),
        )


def _refuse_with_workers(d: Draft, cnn: bool) -> None:
    """What cannot run data-parallel: one line each."""
    spec = d.spec
    if isinstance(d.contract.function(), type) and not cnn:
        raise UserError(
            "a Trainable class cannot run on several ranks; with workers name a function "
            "f(config) that runs on every rank (Ray Train's train_loop_per_worker)",
            field=("trainable", "function"),
        )
    if not isinstance(d.contract, CNNTrainable):
        return
    settings = d.contract.settings
    if settings.k_folds > 1 or ("k_folds",) in spec.search_space.params:
        raise UserError(
            "k-fold cross-validation and workers cannot be combined (each fold would need "
            "its own ranks); leave k_folds at 1, or leave workers out",
            field=("trainable", "k_folds"),
        )
    if settings.fused > 1:
        raise UserError(
            "fused trials share one device and workers spread one trial over several; "
            "leave fused at 1, or leave workers out",
            field=("trainable", "fused"),
        )


CHECKS: tuple[Callable[[Draft], None], ...] = (
    check_workers,
    check_space,
    check_metric,
    check_stop,
    check_checkpoints,
    check_data,
    check_runtime_env,
)


# ---------------------------------------------------------------------- the plan
def plan_of(d: Draft) -> Plan:
    """Searcher and scheduler names (BOHB's pairing rule), trials, budget and loggers."""
    from raytune_hpo.searchers import GRID_SEARCHERS

    spec = d.spec
    loggers = sweep_loggers.parse(spec.loggers)
    sweep_loggers.check(loggers, remote_storage=storage.is_uri(spec.storage_path))
    searcher = spec.searcher.name
    scheduler, _ = bohb.pair(searcher, spec.scheduler.name if spec.scheduler else None)
    grid = searcher in GRID_SEARCHERS
    if grid:
        spec.search_space.to_tune(grid=True)  # raises naming a parameter without grid values
    return Plan(
        spec=spec,
        trainable=d.contract,
        searcher_name=searcher,
        scheduler_name=scheduler,
        samples=1 if grid else (spec.num_samples or DEFAULT_SAMPLES),  # grid: its grid once
        max_t=d.contract.max_budget(spec.search_space),
        loggers=loggers,
    )


def searcher_factory(plan: Plan) -> Any:
    """The searcher's class (or factory), looked up once: a plug-in is imported here."""
    from raytune_hpo.searchers import searcher_entry

    try:
        return searcher_entry(plan.searcher_name, base_dir=plan.spec.base_dir).factory
    except UserError as e:
        raise e.within("searcher") from None


# Searchers that only give an initial population (they learn nothing from results): under
# population-based training the configs change mid-run and a learning searcher never sees them.
POPULATION_SEARCHERS = ("random", "grid", "sobol", "lhs", "rsa", "hypertiling")


def check_population(plan: Plan) -> None:
    from raytune_hpo.schedulers import POPULATION

    if plan.scheduler_name in POPULATION and plan.searcher_name not in POPULATION_SEARCHERS:
        raise UserError(
            f"{plan.searcher_name!r} under scheduler {plan.scheduler_name}: PBT changes the "
            "configs of running trials and a searcher that learns would never be told them; "
            f"allowed searchers for the initial population: {', '.join(POPULATION_SEARCHERS)}",
            field=("searcher", "name"),
        )


def check_objectives(plan: Plan) -> None:
    """Several objectives or constraints: only the searchers and schedulers that take them
    (``raytune_hpo.objectives``: one set of names each; a plug-in searcher declares it with
    ``supports_multi_objective = True``), and a warm start only to a searcher that is told
    every objective of an earlier trial (``add_evaluated_point`` taking ``result``)."""
    from raytune_hpo.objectives import MULTI_OBJECTIVE_SCHEDULERS
    from raytune_hpo.schedulers import SCHEDULERS
    from raytune_hpo.searchers import SEARCHERS, searcher_entry, takes_objectives

    objectives = plan.objectives
    if not objectives.ranked:
        return
    why = "several objectives" if objectives.several else "constraints"
    name = plan.searcher_name
    entry = searcher_entry(name, base_dir=plan.spec.base_dir)
    if not takes_objectives(name, entry):
        allowed = [n for n in SEARCHERS if takes_objectives(n, SEARCHERS[n])]
        also = "or a plug-in that declares supports_multi_objective = True"
        said = (
            f"{name!r} learns from one metric and cannot take {why}"
            if name in SEARCHERS
            else f"plug-in {name!r} does not declare that it takes {why} (class attribute "
            "supports_multi_objective = True)"
        )
        raise UserError(
            f"{said}; allowed with {why}: {', '.join(allowed)}, {also}",
            field=("searcher", "name"),
        )
    if plan.scheduler_name not in MULTI_OBJECTIVE_SCHEDULERS:
        allowed = [n for n in SCHEDULERS if n in MULTI_OBJECTIVE_SCHEDULERS]
        raise UserError(
            f"{plan.scheduler_name!r} ranks trials by one metric and cannot take {why}; "
            f"allowed with {why}: {', '.join(allowed)}",
            field=("scheduler", "name"),
        )
    if plan.spec.warm_start and not warm_start.tells_every_objective(entry.factory):
        raise UserError(
            f"searcher {name} would be told earlier results as one value (its "
            "add_evaluated_point takes no result=, the trial's reported metrics); leave "
            "warm_start out",
            field="warm_start",
        )


def check_built(plan: Plan) -> None:
    """Build the searcher and scheduler once: their own checks name a bad option."""
    from raytune_hpo.schedulers import SCHEDULERS

    for section, build in (("searcher", plan.searcher), ("scheduler", plan.scheduler)):
        try:
            build()
        except UserError as e:  # ours name their option
            raise e.within(section) from None
        except ValueError as e:  # a plug-in's own: its section is the field
            raise user_error(e, field=section) from None
        except (AssertionError, TypeError) as e:  # a library's own check of its arguments
            options = plan.spec.model_dump()[section]
            raise UserError(f"{options} refused: {e}", field=section) from None
    if plan.max_t is None and "max_t" in SCHEDULERS[plan.scheduler_name].option_names():
        options = plan.spec.scheduler.options if plan.spec.scheduler else {}
        if "max_t" not in options:
            raise UserError(
                f"scheduler {plan.scheduler_name} needs the budget of a trial (its largest "
                f"{BUDGET_ATTR}: how many results it reports); give max_t",
                field=("scheduler", "max_t"),
            )


def with_warm_start(plan: Plan, factory: Any) -> Plan:
    """The plan with the earlier results of ``warm_start`` (and what loading them noted)."""
    if not plan.spec.warm_start:
        return plan
    warm, notes = warm_start.load(plan.spec)
    return replace(plan, warm=warm, warnings=(*plan.warnings, *notes))


# ---------------------------------------------------------------------- warning rules
Rule = Callable[[Plan, Any, Draft], list[str]]


def bohb_pairing(plan: Plan, factory: Any, d: Draft) -> list[str]:
    spec = plan.spec
    return bohb.pair(plan.searcher_name, spec.scheduler.name if spec.scheduler else None)[1]


def trainable_warnings(plan: Plan, factory: Any, d: Draft) -> list[str]:
    return d.contract.warnings(plan.spec.search_space, max_concurrent=plan.spec.max_concurrent)


def warm_start_unlearnt(plan: Plan, factory: Any, d: Draft) -> list[str]:
    if not plan.spec.warm_start or warm_start.can_learn(factory):
        return []
    return [
        f"warm_start: searcher {plan.searcher_name} cannot learn from earlier results (Ray's "
        "BasicVariantGenerator, or a plug-in without add_evaluated_point); they are left out"
    ]


def hyperband_brackets(plan: Plan, factory: Any, d: Draft) -> list[str]:
    """Under ``max_concurrent`` (Ray's ConcurrencyLimiter) paused trials count as live, so a
    HyperBand bracket larger than the limit cannot fill (BOHB's searcher too: it used to count
    only running trials, and then the limit did not hold)."""
    spec = plan.spec
    if plan.scheduler_name not in ("hyperband", bohb.BOHB):
        return []
    if not spec.max_concurrent or not plan.max_t:
        return []
    eta = (spec.scheduler.options if spec.scheduler else {}).get("reduction_factor", 3)
    bracket = int(eta ** math.floor(math.log(plan.max_t) / math.log(eta) + 1e-9))
    if spec.max_concurrent >= bracket:
        return []
    return [
        f"max_concurrent {spec.max_concurrent} under scheduler {plan.scheduler_name}: paused "
        "trials count "
        f"against it, so HyperBand's largest bracket ({bracket} trials) cannot fill and trials "
        "run to the end without pausing; leave max_concurrent out (the resources bound the "
        "trials running at once)"
    ]


def local_runtime_env(plan: Plan, factory: Any, d: Draft) -> list[str]:
    if not d.local_data:
        return []
    return [
        f"runtime_env.{key} applies to submitted sweeps; a local run uses the packages "
        "installed here"
        for key in ("pip", "uv", "conda")
        if key in (plan.spec.runtime_env or {})
    ]


def mixed_budgets(plan: Plan, factory: Any, d: Draft) -> list[str]:
    """Ours learn only from comparable budgets; a library's model compares whatever it gets."""
    if plan.scheduler_name not in EARLY_STOPPING or plan.searcher_name == bohb.BOHB:
        return []
    if not plan.owns_space or hasattr(factory, "set_early_stopping"):
        return []
    return [
        f"searcher {plan.searcher_name} under scheduler {plan.scheduler_name}: trials stopped "
        "early report their last epoch's value, so the searcher compares results of different "
        "budgets"
    ]


def unbounded_trainers(plan: Plan, factory: Any, d: Draft) -> list[str]:
    """A data-parallel trial asks Tune for nothing itself: without max_concurrent every trial
    starts its trainer at once, and the trainers wait for their ranks' resources."""
    if plan.spec.workers is None or plan.spec.max_concurrent:
        return []
    return [
        "workers without max_concurrent: every trial starts its trainer at once and waits "
        "for its ranks' resources; set max_concurrent to the trials that fit at once"
    ]


WARNINGS: tuple[Rule, ...] = (
    bohb_pairing,
    unbounded_trainers,
    trainable_warnings,
    warm_start_unlearnt,
    hyperband_brackets,
    local_runtime_env,
    mixed_budgets,
)


__all__ = ["CHECKS", "WARNINGS", "Draft", "Plan", "assemble", "check_objectives"]
