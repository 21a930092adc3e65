"""Run an assembled sweep on Ray Tune: ``run_sweep(spec) -> SweepResult``; ``resume(path)``.

Ray starts (embedded, single node) only after the spec has been assembled and checked
(``raytune_hpo.plan.assemble``); with ``address`` the sweep runs on an existing cluster instead.
Results land in ``<storage>/<name>-<time>/`` next to Ray's experiment files: ``results.csv``
(one row per trial) and ``sweep.yaml`` (the spec).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import raytune_hpo.ray_compat as ray_compat
import raytune_hpo.run.resources as resources
import raytune_hpo.run.snapshot as snapshot
import raytune_hpo.storage as storage
from raytune_hpo import secret_env
from raytune_hpo.errors import UserError
from raytune_hpo.names import SPEC_COPY
from raytune_hpo.plan.assemble import Plan, assemble
from raytune_hpo.results.live import read_schedule, with_exploits
from raytune_hpo.results.sweep_dir import (
    read_spec_copy,
    with_earlier_runs,
    write_results_csv,
    write_spec_copy,
)
from raytune_hpo.results.table import SweepResult, results_table
from raytune_hpo.sweep.spec import SweepSpec


def init_ray(
    address: str | None = None, num_cpus: int | None = None, env_vars: dict | None = None
) -> None:
    """Start (or join) Ray; ``env_vars`` (the sweep's ``runtime_env.env_vars``, redacted
    ones filled in by ``secret_env.reveal``) reach every worker of the sweep."""
    import ray

    runtime_env = {"env_vars": secret_env.reveal(env_vars)} if env_vars else None
    # Every epoch checkpoints (num_to_keep=2 forces a state snapshot, which is what makes a
    # sweep resumable at any moment); Ray warns about that on every fast epoch otherwise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quiet()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env=runtime_env,
        )


# Ray's lines that tell our user nothing on every local run: the notice that token
# authentication is on (it is, and stays on), and where the result files were written (the
# summary says). Ray's warnings stay.
_QUIET = {
    ray_compat.AUTH_SETUP_LOGGER: logging.ERROR,
    "ray.tune.tune": logging.WARNING,
}


def quiet() -> None:
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)


def experiment_name(spec: SweepSpec) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def storage_root(spec: SweepSpec) -> str:
    """Absolute local path, or a URI (s3://, gs://) left as it is."""
    return storage.normalize(spec.storage_path)


def experiment_dir(spec: SweepSpec, name: str) -> str:
    return storage.join(storage_root(spec), name)


class Guards:
    """What watches a running sweep: the metric check (a trainable that never reports one of
    the sweep's objectives or constrained metrics stops the sweep with one line) and the trial
    watch (time limits, pending resources, trials cut by the time budget:
    ``raytune_hpo.run.watch``)."""

    def __init__(self, plan: Plan, exp: str) -> None:
        from raytune_hpo.run.fail_fast import FailFast
        from raytune_hpo.run.metric_check import MetricCheck
        from raytune_hpo.run.watch import Limits, TrialWatch

        spec = plan.spec
        self.exp = exp
        checked = plan.checked_metrics()  # objectives, constraints, stop:, checkpoints.score
        self.check = MetricCheck(list(checked), checked)
        self.stop = plan.stopper()  # the sweep's stop: criteria
        self.fail_fast = FailFast(spec.fail_fast, exp)
        self.watch = TrialWatch(Limits.of(spec), exp)  # workers: all of a trial's ranks

    def stopper(self):
        from ray.tune.stopper import CombinedStopper

        stoppers = (self.check, self.watch.stopper, self.fail_fast.stopper, self.stop)
        return CombinedStopper(*(s for s in stoppers if s is not None))

    def error(self, plan: Plan) -> UserError | None:
        return self.check.error(plan) or ended(self.exp).error() or failed_fast(self.exp)


def ended(exp: str):
    from raytune_hpo.results.trial_ends import read_ends

    return read_ends(exp)


def failed_fast(exp: str) -> UserError | None:
    from raytune_hpo.run.fail_fast import error

    return error(exp)


def build_tuner(plan: Plan, name: str, *, guards: Guards | None = None, prepare=None):
    """The ``tune.Tuner`` for an assembled sweep (Ray must be importable, not running).
    ``prepare(searcher)``: called on the run's searcher before Tune gets it (``extend``)."""
    from ray import tune

    from raytune_hpo.run.resume_point import ResumePoint

    # A result without the sweep's metric is caught by MetricCheck (one line, the whole sweep
    # stopped) instead of Ray's check, which fails the driver with the whole result dict.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    from ray.tune.search import BasicVariantGenerator

    spec = plan.spec
    exp = experiment_dir(spec, name)
    guards = guards or Guards(plan, exp)
    searcher = plan.searcher(name)
    if prepare is not None:
        prepare(searcher)
    # Ray's generator limits itself (the Tuner's limit is ignored for it, with a warning).
    limit = None if isinstance(searcher, BasicVariantGenerator) else spec.max_concurrent
    root = storage_root(spec)
    objective = plan.tune_objective()
    return tune.Tuner(
        plan.tune_trainable(),
        param_space=plan.param_space(),
        tune_config=tune.TuneConfig(
            # none with several objectives: the searcher and the scheduler have their own
            metric=objective.get("metric"),
            mode=objective.get("mode"),
            search_alg=searcher,
            scheduler=plan.scheduler(),
            num_samples=plan.samples,
            max_concurrent_trials=limit,
            time_budget_s=spec.time_budget_s,
            reuse_actors=plan.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root,
            storage_filesystem=storage.ray_filesystem(root),  # local: each file written whole
            stop=guards.stopper(),
            failure_config=plan.failure_config(),
            checkpoint_config=plan.checkpoint_config(),
            verbose=1,
            callbacks=[
                *plan.callbacks(name, exp),
                guards.watch,
                guards.fail_fast,
                ResumePoint(exp),
            ],
        ),
    )


def run_sweep(
    spec: SweepSpec,
    *,
    trainable: Any = None,
    address: str | None = None,
    num_cpus: int | None = None,
    name: str | None = None,
    plan: Plan | None = None,
) -> SweepResult:
    """Run ``spec`` to the end; failed trials are recorded, never raised. ``trainable``: a
    function or ``Trainable`` class of yours instead of the sweep file's. The spec is copied
    into the experiment directory first, so ``resume`` can pick the sweep up if interrupted."""
    plan = plan or assemble(spec, trainable=trainable)  # checked before Ray starts
    if address is None:
        resources.check_local(resources.demand(spec), num_cpus=num_cpus)
    name = name or experiment_name(spec)
    exp = experiment_dir(spec, name)
    write_spec_copy(spec, exp)  # also proves the storage is reachable before Ray starts
    init_ray(address, num_cpus, (spec.runtime_env or {}).get("env_vars"))
    if address is not None and (
        short := resources.check_cluster(resources.demand(spec), spec.pending_timeout_s)
    ):
        print(f"raytune-hpo: warning: {short}", file=sys.stderr)
    guards = Guards(plan, exp)
    grid, interrupted = _fit(build_tuner(plan, name, guards=guards))
    return _finish(grid, plan, guards, exp, interrupted)


def resume(
    path: str | Path,
    *,
    trainable: Any = None,
    address: str | None = None,
    num_cpus: int | None = None,
    plan: Plan | None = None,
) -> SweepResult:
    """Continue an interrupted sweep (``Tuner.restore``): finished trials are kept as they are,
    unfinished ones continue from their last checkpoint, and the searcher and scheduler
    continue from their saved state. ``plan``: the sweep copy's, already assembled (the
    command announced it).

    Whenever the driver was killed, the newest whole snapshot is put back where Ray reads it
    (``resume_point``) and mended to agree with storage (``snapshot``); one line on stderr says
    what is resumed and from what."""
    from ray import tune

    import raytune_hpo.run.resume_point as resume_point

    where = storage.normalize(path)  # a local path or a URI (s3://, gs://)
    if plan is None:
        plan = assemble(read_spec_copy(where), trainable=trainable)
    spec = plan.spec
    with storage.errors(where):
        if not tune.Tuner.can_restore(where):
            raise UserError(
                "no Ray Tune experiment state here to resume", source=storage.display(path)
            )
    if address is None:
        resources.check_local(resources.demand(spec), num_cpus=num_cpus)
    restored = resume_point.restore(where, again=_again(where))
    storage.remove_leftovers(where)
    init_ray(address, num_cpus, (spec.runtime_env or {}).get("env_vars"))
    staging = _staging_here(where, restored.state)
    mended = snapshot.mend(where, restored, staging)
    if staging is not None:  # a driver killed on this Ray: Ray would copy its files back
        shutil.rmtree(staging, ignore_errors=True)
    print(mended.line(restored.used), file=sys.stderr, flush=True)
    tuner = tune.Tuner.restore(
        where,
        trainable=plan.tune_trainable(),
        resume_errored=False,
        storage_filesystem=storage.ray_filesystem(where),
    )
    grid, interrupted = _fit(tuner)
    return _finish(grid, plan, None, where, interrupted)


def _again(exp: str) -> str:
    return f"`raytune-hpo run {storage.join(exp, SPEC_COPY)}`"


def _staging_here(exp: str, state: dict) -> Path | None:
    """The staging directory a restored run of ``exp`` uses on this Ray session, when it is
    already there: the killed driver ran on this Ray (a cluster's head, a driver joining it)."""
    trials = state.get("trial_data") or []
    if not trials:
        return None
    stamp = ray_compat.trial_staging_stamp(json.loads(trials[0][0]))
    path = ray_compat.session_staging_dir(stamp, storage.name(exp))
    return path if path.is_dir() else None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended the sweep; Ray saved its state, so ``resume(path)`` continues it."""

    def __init__(self, path: str, result: SweepResult | None = None) -> None:
        super().__init__(path)
        self.path, self.result = path, result


# Ray Tune adds its TensorBoard logger by itself unless this is "1": importing tensorboardX
# imports torch into the driver (1.6 s of CPU on the 2-core machine) and every result is written
# once more. The sweep's record loggers (JSON, CSV) are always given; TensorBoard only when
# `loggers` names it (docs/performance.md).
_NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def _fit(tuner) -> tuple[Any, bool]:
    """``tuner.fit()`` (without Ray's automatic loggers, Ray's usage tag of our callbacks taken
    by name: ``ray_compat.callbacks_tagged_by_name``) and whether a Ctrl-C ended it."""
    previous = os.environ.get(_NO_AUTO_LOGGERS)
    os.environ[_NO_AUTO_LOGGERS] = "1"
    try:
        with ray_compat.callbacks_tagged_by_name():
            return _fit_catching_sigint(tuner)
    finally:
        if previous is None:
            os.environ.pop(_NO_AUTO_LOGGERS, None)
        else:
            os.environ[_NO_AUTO_LOGGERS] = previous


def _fit_catching_sigint(tuner) -> tuple[Any, bool]:
    """Ray Tune catches the first SIGINT itself (it saves the experiment state and returns
    normally) and then puts back the handler it found: ours, which turns a second Ctrl-C into
    KeyboardInterrupt at once. So the handler in place after fit tells whether Tune saw a
    SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False

    def second(sig, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, second)
    try:
        grid = tuner.fit()
    finally:
        interrupted = signal.getsignal(signal.SIGINT) is second
        signal.signal(signal.SIGINT, previous)
    return grid, interrupted


def _finish(grid, plan: Plan, guards, exp: str, interrupted: bool = False) -> SweepResult:
    """``exp``: the sweep directory as given (Ray's ``experiment_path`` drops a URI's
    scheme, so a table written there would land in a relative local folder). ``guards``: the
    run's own (None after ``resume``: the restored run's watch left its record on storage).
    Trials of earlier runs in the same directory (an extended sweep) keep their rows."""
    ends = ended(exp)
    error = guards.error(plan) if guards is not None else ends.error() or failed_fast(exp)
    if error is not None:
        raise error
    spec = plan.spec
    table = results_table(grid, spec, ends=ends.trials)
    table = with_earlier_runs(with_exploits(table, read_schedule(exp)), exp, spec)
    write_results_csv(table, exp)
    result = SweepResult(exp, table, spec.metric, spec.mode, objectives=spec.objectives)
    if interrupted:
        raise Interrupted(exp, result)
    return result


__all__ = [
    "Interrupted",
    "build_tuner",
    "experiment_dir",
    "experiment_name",
    "init_ray",
    "resume",
    "run_sweep",
    "storage_root",
]
