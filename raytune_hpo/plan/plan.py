"""A sweep assembled: :class:`Plan` holds what ``raytune_hpo.plan.assemble`` decided and builds the
parts of the Ray Tune run from it (the searcher, the scheduler, the param space, the trainable
with its resources, the logger callbacks), each when the run needs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import raytune_hpo.plan.loggers as sweep_loggers
import raytune_hpo.plan.warm_start as warm_start
from raytune_hpo.plan.stopping import RAY_COUNTERS, CriteriaStopper, StopCriteria
from raytune_hpo.sweep.spec import SweepSpec
from raytune_hpo.train.contract import TrainableContract

# Schedulers that stop trials early: our searchers then learn only from comparable budgets.
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
    def metric(self) -> str | list[str]:
        """The sweep's metric: a name, or a list of them with several objectives."""
        return self.spec.metric

    @property
    def mode(self) -> str | list[str]:
        """The sweep's mode: ``min``/``max``, or one per objective with several."""
        return self.spec.mode

    @property
    def objectives(self):
        """The sweep's objectives and constraints (``raytune_hpo.objectives.Objectives``)."""
        return self.spec.objectives

    def searcher_objective(self) -> dict[str, Any]:
        """What the searcher is told to optimise: the sweep's metric and mode; with several
        objectives or constraints the first objective's (Ray's bookkeeping wants one name) and
        ``objectives``, the sweep's ``Objectives``, which the searchers that learn them take
        (``MULTI_OBJECTIVE_SEARCHERS``; one that learns nothing does not take it). The one
        place a searcher gets its objectives."""
        objectives = self.objectives
        known: dict[str, Any] = {"metric": objectives.metrics[0], "mode": objectives.modes[0]}
        if objectives.ranked:
            known["objectives"] = objectives
        return known

    def tune_objective(self) -> dict[str, str]:
        """``metric``/``mode`` for Ray's ``TuneConfig``: the sweep's one, or none when trials are
        ranked by several objectives or constraints (the searcher and the scheduler then have
        their own: Ray's TuneConfig takes one metric)."""
        objectives = self.objectives
        if objectives.ranked:
            return {}
        return {"metric": objectives.metrics[0], "mode": objectives.modes[0]}  # the one

    @property
    def grid(self) -> bool:
        from raytune_hpo.searchers import GRID_SEARCHERS

        return self.searcher_name in GRID_SEARCHERS

    @property
    def owns_space(self) -> bool:
        """Whether the searcher takes our SearchSpace (else Tune domains in param_space)."""
        from raytune_hpo.searchers import owns_space

        return owns_space(self.searcher_name, base_dir=self.spec.base_dir)

    @property
    def checkpoints_kept(self) -> int | None:
        """Checkpoints Ray keeps per trial: ``checkpoints.keep``, else the last two (a paused
        or failed trial resumes from the newest), all under population-based training (a trial
        restores a donor's checkpoint after the donor trained on; with ``keep`` an exploit
        copies the donor's instead: ``raytune_hpo.schedulers._pbt``)."""
        from raytune_hpo.schedulers import POPULATION

        given = self.spec.checkpoints.keep if self.spec.checkpoints else None
        if given is not None:
            return given
        return None if self.scheduler_name in POPULATION else 2

    def checkpoint_config(self):
        """Ray's ``CheckpointConfig``: how many (``checkpoints_kept``) and which (the best by
        ``checkpoints.score``, in ``order`` or the objective's mode; else the newest). A class
        trainable without save_checkpoint must not be asked for one at its end."""
        from ray import tune

        kept = self.spec.checkpoints
        score = kept.score if kept else None
        order = (kept.order if kept else None) or self._mode_of(score) or "max"
        return tune.CheckpointConfig(
            num_to_keep=self.checkpoints_kept,
            checkpoint_score_attribute=score,
            checkpoint_score_order=order,
            checkpoint_at_end=False,
        )

    def _mode_of(self, metric: str | None) -> str | None:
        objectives = self.objectives
        return dict(zip(objectives.metrics, objectives.modes, strict=True)).get(metric)

    def failure_config(self):
        """Ray's ``FailureConfig``: retries of a failed trial (``max_failures``). Failures that
        stop the whole sweep (``fail_fast``) are ours (``raytune_hpo.run.fail_fast``): Ray's
        would mark the search finished, and ``resume`` could not go on after a fix."""
        from ray import tune

        return tune.FailureConfig(max_failures=self.spec.max_failures)

    @property
    def stop_criteria(self) -> StopCriteria:
        """The sweep's ``stop:`` (``raytune_hpo.plan.stopping``)."""
        return StopCriteria.of(self.spec)

    def stopper(self) -> CriteriaStopper | None:
        """The ``stop:`` criteria as a Tune stopper (None without any)."""
        criteria = self.stop_criteria
        return CriteriaStopper(criteria) if criteria else None

    def checked_metrics(self) -> dict[str, tuple]:
        """The metrics a trainable must report, each with its field in the sweep file: the
        objectives and constrained metrics, the metrics of ``stop:`` and ``checkpoints.score``
        (checked on the first result: ``raytune_hpo.run.metric_check``)."""
        objectives = self.objectives
        out = {m: tuple(objectives.field_of(m)) for m in objectives.reported}
        for m in self.stop_criteria.metrics:
            out.setdefault(m, ("stop", m))
        kept = self.spec.checkpoints
        if kept and kept.score and kept.score not in RAY_COUNTERS:
            out.setdefault(kept.score, ("checkpoints", "score"))
        return out

    @property
    def proposes_own_values(self) -> bool:
        """A plug-in that takes no space and no Tune domains
        (``raytune_hpo.searchers.plugin_guard``)."""
        if self.owns_space or self.searcher_name in ("random", "grid"):
            return False
        from raytune_hpo.searchers import searcher_entry
        from raytune_hpo.searchers.plugin_guard import proposes_own_values

        entry = searcher_entry(self.searcher_name, base_dir=self.spec.base_dir)
        return proposes_own_values(entry.factory)

    def param_space(self) -> dict[str, Any]:
        """The Tuner's ``param_space``: the trainable's fixed config plus, for Ray's own
        searchers, the searched values as Tune domains (ours carry the space themselves)."""
        fixed = self.trainable.fixed_config()
        if self.owns_space or self.proposes_own_values:
            return fixed
        return {**fixed, **self.spec.search_space.to_tune(grid=self.grid)}

    def searcher(self, experiment: str | None = None):
        """A new searcher for this sweep, given the sweep's metric and mode (Ray tells a
        searcher them only through ``set_search_properties``, which it skips when the
        param_space is empty: a user trainable with no fixed config). With ``experiment`` (the
        run's name) it is the run's own: told the earlier results of ``warm_start``, and an
        Optuna study kept in a database (``storage``) is named after the run unless
        ``study_name`` says otherwise."""
        from raytune_hpo.searchers import create_searcher

        options = dict(self.spec.searcher.options)
        own_values = self.proposes_own_values
        if experiment is not None and options.get("storage"):
            options.setdefault("study_name", experiment)
        known = self.searcher_objective()
        searcher = create_searcher(
            self.searcher_name,
            space=self.spec.search_space,
            seed=self.spec.seed,
            budget=self.samples,
            max_concurrent=self.spec.max_concurrent,
            scheduler=self.scheduler_name,  # for auto, which chooses by it
            base_dir=self.spec.base_dir,
            **known,
            **options,
        )
        if self.scheduler_name in EARLY_STOPPING and hasattr(searcher, "set_early_stopping"):
            searcher.set_early_stopping()  # ours learn only from comparable budgets
        if experiment is not None:
            warm_start.tell(searcher, self.warm)
        if own_values:
            from raytune_hpo.searchers.plugin_guard import CheckedSearcher

            searcher = CheckedSearcher(searcher, self.spec.search_space)
        return searcher

    @property
    def searcher_choice(self) -> str | None:
        """For searcher ``auto``: what it chooses for this sweep and why (one line)."""
        if self.searcher_name != "auto":
            return None
        from raytune_hpo.searchers._auto import choose

        objectives = self.objectives
        return choose(
            self.spec.search_space,
            budget=self.samples,
            concurrency=self.spec.max_concurrent,
            objectives=objectives if objectives.ranked else None,
            scheduler=self.scheduler_name,
        ).line

    def callbacks(self, experiment: str, exp_dir: str) -> list[Any]:
        """Ray Tune callbacks of the sweep's ``loggers`` for the run ``experiment``; with
        ``workers:`` the one that gives a finished trial's ranks back (``ReleaseRanks``)."""
        out = list(
            sweep_loggers.callbacks(
                self.loggers, experiment=experiment, exp_dir=exp_dir, sweep_name=self.spec.name
            )
        )
        if self.spec.workers is not None:
            from raytune_hpo.train.distributed import ReleaseRanks

            out.append(ReleaseRanks())
        return out

    def scheduler(self):
        from raytune_hpo.schedulers import create_scheduler

        options = dict(self.spec.scheduler.options if self.spec.scheduler else {})
        max_t = options.pop("max_t", self.max_t)  # the sweep file's max_t wins
        objectives = self.objectives
        return create_scheduler(
            self.scheduler_name,
            max_t=max_t,
            objectives=objectives if objectives.ranked else None,  # asha: MO-ASHA
            space=self.spec.search_space,  # population-based training mutates within it
            mutable=self.trainable.mutable_settings(),
            seed=self.spec.seed,
            kept=self.checkpoints_kept,  # population-based training copies what Ray may delete
            **options,
        )

    @property
    def reuse_actors(self) -> bool:
        """Whether Tune may reuse a trial's actor for the next trial: never for data-parallel
        trials (the actor's Train session holds the finished run's queue)."""
        return self.trainable.reusable and self.spec.workers is None

    def tune_trainable(self) -> Any:
        """The trainable with the sweep's resources per trial (fractional GPUs allowed); with
        ``workers:`` a Tune function per trial that runs the trainable's worker loop on its
        ranks (``raytune_hpo.train.distributed``), the trial asking for nothing itself."""
        from ray import tune

        workers = self.spec.workers
        if workers is not None:
            from raytune_hpo.train.distributed import TRIAL_RESOURCES, trial_function

            loop = self.trainable.worker_loop()
            name = getattr(loop, "__name__", "train_loop_per_worker")
            from raytune_hpo.schedulers import POPULATION

            function = trial_function(
                loop,
                workers,
                name=f"{name}_x{workers.count}",
                to_tune=self.scheduler_name in POPULATION,  # exploits copy Tune's checkpoints
                wait_s=self.spec.pending_timeout_s,  # ranks with no room: one line, not forever
            )
            if self.proposes_own_values:
                from raytune_hpo.searchers.plugin_guard import guard_trainable

                function = guard_trainable(function)
            return tune.with_resources(function, dict(TRIAL_RESOURCES))
        res = self.spec.resources
        resources: dict[str, float] = {"cpu": res.cpu, "gpu": res.gpu}
        if res.memory_gb:
            resources["memory"] = res.memory_gb * 1024**3
        function = self.trainable.function()
        from raytune_hpo.train.cnn import CNNTrainable

        fused = isinstance(self.trainable, CNNTrainable) and self.trainable.settings.fused > 1
        if res.gpu and fused:
            from raytune_hpo.train.entry import fused_members

            # Fused trials: their group holds their GPU shares through Ray, they hold none.
            function, resources["gpu"] = fused_members(res.gpu), 0
        if self.proposes_own_values:
            from raytune_hpo.searchers.plugin_guard import guard_trainable

            function = guard_trainable(function)
        return tune.with_resources(function, resources)


__all__ = ["EARLY_STOPPING", "Plan"]
