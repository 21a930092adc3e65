"""One place turns a sweep spec into the parts of a Ray Tune run, before Ray starts.

``assemble(spec)`` checks the spec against the registries and the trainable's contract and
returns a :class:`Plan`: the trainable (built-in CNN or the user's), the searcher (with its
budget, told the earlier results of ``warm_start``), the scheduler (BOHB's pairing rule from
``raytune_hpo.bohb``), the number of trials, the param space, the logger callbacks and the
warnings. Every problem is a one-line ``SpecError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import raytune_hpo.bohb as bohb
import raytune_hpo.loggers as sweep_loggers
import raytune_hpo.storage as storage
import raytune_hpo.warm_start as warm_start
from raytune_hpo.spec import SpecError, SweepSpec
from raytune_hpo.train.contract import TrainableContract

DEFAULT_SAMPLES = 10
EARLY_STOPPING = ("asha", "median", "hyperband")


@dataclass(frozen=True)
class Plan:
    """A sweep assembled: what ``run.build_tuner`` hands to Ray Tune."""

    spec: SweepSpec
    trainable: TrainableContract
    searcher_name: str
    scheduler_name: str
    samples: int
    max_t: int | None
    warnings: tuple[str, ...] = field(default=())
    loggers: tuple[sweep_loggers.LoggerSpec, ...] = field(default=())
    warm: tuple[warm_start.WarmPoint, ...] = field(default=())  # earlier results

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def grid(self) -> bool:
        from raytune_hpo.searchers import GRID_SEARCHERS

        return self.searcher_name in GRID_SEARCHERS

    @property
    def owns_space(self) -> bool:
        """Whether the searcher takes our SearchSpace (else Tune domains in param_space)."""
        from raytune_hpo.searchers import owns_space

        return owns_space(self.searcher_name, base_dir=self.spec.base_dir)

    def param_space(self) -> dict[str, Any]:
        """The Tuner's ``param_space``: the trainable's fixed config plus, for Ray's own
        searchers, the searched values as Tune domains (ours carry the space themselves)."""
        fixed = self.trainable.fixed_config()
        if self.owns_space:
            return fixed
        return {**fixed, **self.spec.search_space.to_tune(grid=self.grid)}

    def searcher(self, experiment: str | None = None):
        """A new searcher for this sweep (metric and mode come from the Tuner). With
        ``experiment`` (the run's name) it is the run's own: told the earlier results of
        ``warm_start`` (it is given metric and mode for them), and an Optuna study kept in a
        database (``storage``) is named after the run unless ``study_name`` says otherwise."""
        from raytune_hpo.searchers import create_searcher

        options = dict(self.spec.searcher.options)
        known: dict[str, Any] = {}
        if experiment is not None:
            if options.get("storage"):
                options.setdefault("study_name", experiment)
            if self.warm:
                known = {"metric": self.metric, "mode": self.mode}
        searcher = create_searcher(
            self.searcher_name,
            space=self.spec.search_space,
            seed=self.spec.seed,
            budget=self.samples,
            max_concurrent=self.spec.max_concurrent,
            base_dir=self.spec.base_dir,
            **known,
            **options,
        )
        if self.scheduler_name in EARLY_STOPPING and hasattr(searcher, "set_early_stopping"):
            searcher.set_early_stopping()  # ours learn only from comparable budgets
        if experiment is not None:
            warm_start.tell(searcher, self.warm)
        return searcher

    def callbacks(self, experiment: str, exp_dir: str) -> list[Any]:
        """Ray Tune callbacks of the sweep's ``loggers`` for the run ``experiment``."""
        return sweep_loggers.callbacks(
            self.loggers, experiment=experiment, exp_dir=exp_dir, sweep_name=self.spec.name
        )

    def scheduler(self):
        from raytune_hpo.schedulers import create_scheduler

        options = dict(self.spec.scheduler.options if self.spec.scheduler else {})
        max_t = options.pop("max_t", self.max_t)  # the sweep file's max_t wins
        return create_scheduler(self.scheduler_name, max_t=max_t, **options)

    def tune_trainable(self):
        """The trainable with the sweep's resources per trial (fractional GPUs allowed)."""
        from ray import tune

        res = self.spec.resources
        resources: dict[str, float] = {"cpu": res.cpu, "gpu": res.gpu}
        if res.memory_gb:
            resources["memory"] = res.memory_gb * 1024**3
        return tune.with_resources(self.trainable.function(), resources)


def trainable_of(spec: SweepSpec, trainable: Any = None) -> TrainableContract:
    """The descriptor of the sweep's trainable: ``trainable`` (a function or ``Trainable``
    class given in Python), the user's ``trainable.function``, or the built-in CNN."""
    from raytune_hpo.train.cnn import CNNTrainable
    from raytune_hpo.train.user import UserTrainable, is_user_section

    if isinstance(trainable, TrainableContract):
        return trainable
    if trainable is not None:
        return UserTrainable.from_object(trainable, spec.trainable)
    if is_user_section(spec.trainable):
        return UserTrainable.from_section(spec.trainable, base_dir=spec.base_dir)
    return CNNTrainable(spec.trainable)


def assemble(spec: SweepSpec, *, trainable: Any = None, local_data: bool = True) -> Plan:
    """Check ``spec`` and assemble its run; ``SpecError`` (one line) for anything that would
    fail once Ray is up. ``local_data=False``: the data lives on a cluster (``submit``)."""
    try:
        return _assemble(spec, trainable, local_data)
    except SpecError:
        raise
    except ValueError as e:
        raise SpecError(f"{spec.source}: {e}") from None


def _assemble(spec: SweepSpec, trainable: Any, local_data: bool) -> Plan:
    from raytune_hpo.searchers import GRID_SEARCHERS

    contract = trainable_of(spec, trainable)
    space = spec.search_space
    contract.check_space(space)
    metrics = contract.metrics(space)
    if metrics is not None and spec.metric not in metrics:
        raise ValueError(
            f"metric: {spec.metric!r} is not reported by the trainable; "
            f"allowed: {', '.join(metrics)}"
        )
    contract.check_data(local=local_data)
    check_runtime_env(spec.runtime_env)
    logger_specs = sweep_loggers.parse(spec.loggers)
    sweep_loggers.check(logger_specs, remote_storage=storage.is_uri(spec.storage_path))
    searcher = spec.searcher.name
    scheduler, warnings = bohb.pair(searcher, spec.scheduler.name if spec.scheduler else None)
    warnings = [*warnings, *contract.warnings(space)]
    fused = getattr(getattr(contract, "settings", None), "fused", 1)
    if fused > 1 and (spec.max_concurrent or fused) < fused:
        warnings.append(
            f"trainable.fused {fused} with max_concurrent {spec.max_concurrent}: a group's "
            "members start together only if max_concurrent is at least fused"
        )
    grid = searcher in GRID_SEARCHERS
    plan = Plan(
        spec=spec,
        trainable=contract,
        searcher_name=searcher,
        scheduler_name=scheduler,
        samples=1 if grid else (spec.num_samples or DEFAULT_SAMPLES),  # grid: its grid once
        max_t=contract.max_budget(space),
        loggers=logger_specs,
    )
    _check_built(plan)
    from raytune_hpo.searchers import searcher_entry

    factory = searcher_entry(searcher, base_dir=spec.base_dir).factory
    if spec.warm_start:
        warm, notes = warm_start.load(spec)
        warnings.extend(notes)
        if not warm_start.can_learn(factory):
            warnings.append(
                f"warm_start: searcher {searcher} cannot learn from earlier results (Ray's "
                "BasicVariantGenerator, or a plug-in without add_evaluated_point); they are "
                "left out"
            )
        plan = Plan(**{**plan.__dict__, "warm": warm})
    if grid:
        space.to_tune(grid=True)  # raises naming a parameter that has no grid values
    # BOHB's searcher counts only running trials; other searchers count paused ones too.
    if scheduler == "hyperband" and searcher != bohb.BOHB and spec.max_concurrent and plan.max_t:
        options = spec.scheduler.options if spec.scheduler else {}
        eta = options.get("reduction_factor", 3)
        bracket = int(eta ** math.floor(math.log(plan.max_t) / math.log(eta) + 1e-9))
        if spec.max_concurrent < bracket:
            warnings.append(
                f"max_concurrent {spec.max_concurrent} under scheduler {scheduler}: paused "
                f"trials count against it, so HyperBand's largest bracket ({bracket} trials) "
                "cannot fill and trials run to the end without pausing; leave max_concurrent "
                "out (the resources bound the trials running at once)"
            )
    for key in ("pip", "uv", "conda"):
        if key in (spec.runtime_env or {}) and local_data:
            warnings.append(
                f"runtime_env.{key} applies to submitted sweeps; a local run uses the "
                "packages installed here"
            )
    # Ours learn only from comparable budgets; a library's model compares whatever it gets.
    learns_budgets = hasattr(factory, "set_early_stopping")
    if (
        scheduler in EARLY_STOPPING
        and searcher != bohb.BOHB
        and plan.owns_space
        and not learns_budgets
    ):
        warnings.append(
            f"searcher {searcher} under scheduler {scheduler}: trials stopped early report "
            "their last epoch's value, so the searcher compares results of different budgets"
        )
    return Plan(**{**plan.__dict__, "warnings": tuple(warnings)})


RUNTIME_ENV_KEYS = ("pip", "uv", "conda", "env_vars", "excludes", "config")


def check_runtime_env(env: dict[str, Any] | None) -> None:
    """The sweep's ``runtime_env``: keys we pass to Ray (working_dir and py_modules are the
    job's own), each of the type Ray takes."""
    if not env:
        return
    unknown = sorted(set(env) - set(RUNTIME_ENV_KEYS))
    if unknown:
        raise ValueError(
            f"runtime_env.{unknown[0]}: not passed to Ray by a sweep; allowed: "
            f"{', '.join(RUNTIME_ENV_KEYS)} (the sweep's directory is the job's working_dir)"
        )
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as e:
        raise ValueError(f"runtime_env: {str(e).strip().splitlines()[0]}") from None


def _check_built(plan: Plan) -> None:
    """Build the searcher and scheduler once: their own checks name a bad option."""
    from raytune_hpo.schedulers import SCHEDULERS

    for section, build in (("searcher", plan.searcher), ("scheduler", plan.scheduler)):
        try:
            build()
        except ValueError as e:
            msg = str(e)
            if msg.startswith((f"{section}.", f"{section}:")):  # it names the field already
                raise
            sep = ": " if msg.startswith("unknown") else "."
            raise ValueError(f"{section}{sep}{msg}") from None
        except (AssertionError, TypeError) as e:  # a library's own check of its arguments
            raise ValueError(f"{section}: {plan.spec.model_dump()[section]} refused: {e}") from None
    if plan.max_t is None and "max_t" in SCHEDULERS[plan.scheduler_name].option_names():
        options = plan.spec.scheduler.options if plan.spec.scheduler else {}
        if "max_t" not in options:
            raise ValueError(
                f"scheduler.max_t: scheduler {plan.scheduler_name} needs the budget of a trial "
                "(its largest training_iteration: how many results it reports); give max_t"
            )


__all__ = ["Plan", "assemble", "trainable_of"]
