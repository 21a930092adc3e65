"""Data-parallel trials, the Ray 2.60 way: each Tune trial is a function that runs one Ray
Train V2 ``TorchTrainer`` of ``workers.count`` ranks (``ScalingConfig``), and the ranks'
results reach Tune through ``ToTune``, a Train callback in the way of Ray's
``TuneReportCallback`` (rank 0's result, once per step), which the trial's own thread reports
with ``tune.report`` (Ray's callback cannot hand Tune a checkpoint). The trial itself asks
Ray for almost nothing (``TRIAL_RESOURCES``): its ranks hold the resources, in a placement
group of Train's own.

Checkpoints are Train's: rank 0 reports one with ``ray.train.report``; Train keeps them under
the trial's directory (``get_trial_dir()``, which Tune syncs to the sweep's storage) in a run
named after the trial, so a trial started again with the same id (a paused HyperBand trial, a
sweep resumed after a driver kill, a retried failure) finds its last one with
``ray.train.get_checkpoint()`` on every rank. (Train writing straight to the sweep's storage
instead left the trial's result.json empty after ``resume`` in tests/test_workers_kill.py,
for a reason not found yet.) The id of the ranks' placement group is recorded on the sweep's
storage, where the driver reads it whichever node ran the trial.

Under population-based training Tune gets them too (``to_tune``): ``tune.report`` with each of
rank 0's checkpoints, so that PBT and PB2 can copy a donor's. A trial that Tune starts from a
checkpoint (an exploit's copy, or its own after a resume) runs Train afresh in a run named
after that checkpoint, and every rank's ``ray.train.get_checkpoint()`` gives it until the run
has one of its own.

Imports neither torch nor Ray Train at import time: the driver hands Tune
``trial_function(...)`` and only the trial's process builds the trainer."""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import threading
from collections.abc import Callable
from typing import Any

from ray.train import UserCallback
from ray.tune import Callback

TRIAL_RESOURCES = {
    "cpu": 0.01
}  # the Tune trial's own (Ray takes no empty bundle): its ranks hold the rest
TRAIN_DIR = "train"  # under the trial's directory: Train's runs and checkpoints
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"  # Ray Train's, 60 s by default
PG_FILE = "placement_group"  # in TRAIN_DIR: the id of the ranks' placement group
CHECKPOINT_PATH = "checkpoint_path"  # a result's key: where Train put rank 0's checkpoint


def rank_resources(workers: Any) -> dict[str, float]:
    """One rank's resources under Ray's names (memory in bytes); zeros left out."""
    asked = {"CPU": workers.cpu, "GPU": workers.gpu}
    if workers.memory_gb:
        asked["memory"] = workers.memory_gb * 1024**3
    return {k: float(v) for k, v in asked.items() if v}


def scaling_config(workers: Any):
    """Ray Train's ``ScalingConfig`` of the sweep's ``workers:``."""
    from ray.train import ScalingConfig

    return ScalingConfig(
        num_workers=workers.count,
        use_gpu=workers.gpu > 0,
        resources_per_worker=rank_resources(workers),
        placement_strategy=workers.placement,
    )


def rank_loop(
    loop: Callable, record_to: tuple[Any, str] | None, *, start_from: Any = None
) -> Callable[[dict], None]:
    """``loop`` as every rank runs it; rank 0 first writes the id of the ranks' placement
    group to ``record_to`` (a pyarrow file system and a path on it; read by ``ReleaseRanks``).
    ``start_from`` (a ``ray.train.Checkpoint``): what ``ray.train.get_checkpoint()`` gives
    while the run has no checkpoint of its own."""
    takes_config = bool(inspect.signature(loop).parameters)

    def run(config: dict[str, Any]) -> None:
        import ray.train
        from ray.util import get_current_placement_group

        from raytune_hpo.ray_compat import seed_train_checkpoint

        group = get_current_placement_group()
        if record_to and group is not None and ray.train.get_context().get_world_rank() == 0:
            fs, path = record_to
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(path) as f:
                f.write(group.id.hex().encode())
        if start_from is not None:
            seed_train_checkpoint(start_from)
        loop(config) if takes_config else loop()

    return run


class ToTune(UserCallback):
    """In Train's controller: rank 0's metrics of each report (with ``checkpoint_path`` where
    it has a checkpoint, as Ray's ``TuneReportCallback``; the checkpoint itself too with
    ``to_tune``) go to the trial's process through ``items``; the controller then waits on
    ``acks`` until Tune has taken the result, so no checkpoint is deleted (Train keeps two)
    while Tune copies it."""

    def __init__(self, *, items: Any, acks: Any, to_tune: bool) -> None:
        self.items, self.acks, self.to_tune = items, acks, to_tune

    def after_report(self, run_context: Any, metrics: list[dict], checkpoint: Any) -> None:
        out = dict(metrics[0])
        if checkpoint is not None:
            out[CHECKPOINT_PATH] = checkpoint.path
        self.items.put((out, checkpoint if self.to_tune else None))
        self.acks.get()


def run_name(trial_id: str, start_from: Any) -> str:
    """Train's run of a trial: named after the trial, and the checkpoint Tune started it from
    (a new run for each: Train's own would restore its latest over it)."""
    if start_from is None:
        return f"trial_{trial_id}"
    return f"trial_{trial_id}_{hashlib.sha1(str(start_from.path).encode()).hexdigest()[:10]}"


class RanksNeverPlaced(RuntimeError):
    """A data-parallel trial's ranks found no room for as long as the sweep waits."""


def startup_retries(wait_s: float | None) -> int:
    """How many times Train may retry starting the ranks (each try waits
    ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``) within ``wait_s`` (``pending_timeout_s``);
    -1 (Train's default, forever) without a bound."""
    if wait_s is None:
        return -1
    each = float(os.environ.get(START_TIMEOUT_ENV, 60.0))
    return max(0, math.ceil(wait_s / each) - 1)


def never_placed(workers: Any, wait_s: float | None) -> RanksNeverPlaced:
    """The one line for ranks that Train could not start within ``wait_s``."""
    each = ", ".join(f"{k} {v:g}" for k, v in rank_resources(workers).items())
    return RanksNeverPlaced(
        f"workers: the trial's {workers.count} ranks ({each} each, {workers.placement}) found "
        f"no room within pending_timeout_s {wait_s:g} s (Ray Train could not start them); "
        "lower workers.count or its per-rank resources, or give the cluster more"
    )


def run_trainer(
    config: dict[str, Any],
    *,
    loop: Callable,
    workers: Any,
    to_tune: bool = False,
    wait_s: float | None = None,
) -> None:
    """Inside a Tune trial: train ``loop`` on ``workers.count`` ranks with ``config``; rank 0's
    results go to Tune (with its checkpoints: ``to_tune``), and the checkpoint Tune started the
    trial from (``tune.get_checkpoint()``) to every rank. Raises what the training raised;
    ``RanksNeverPlaced`` (one line) when the ranks found no room within ``wait_s``."""
    import ray.train
    from ray import tune
    from ray.train import CheckpointConfig, ControllerError, FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    from raytune_hpo.ray_compat import is_worker_group_startup_timeout, session_trial_storage

    context = tune.get_context()
    given = tune.get_checkpoint()
    start_from = (
        None if given is None else ray.train.Checkpoint(given.path, filesystem=given.filesystem)
    )
    torch_config = None if workers.backend == "auto" else TorchConfig(backend=workers.backend)
    fs, trial_path = session_trial_storage()  # where the driver reads the record
    items, acks = (Queue(maxsize=1, actor_options={"num_cpus": 0}) for _ in range(2))
    trainer = TorchTrainer(
        rank_loop(loop, (fs, f"{trial_path}/{TRAIN_DIR}/{PG_FILE}"), start_from=start_from),
        train_loop_config=config,
        scaling_config=scaling_config(workers),
        torch_config=torch_config,
        run_config=RunConfig(
            name=run_name(context.get_trial_id(), start_from),
            storage_path=os.path.join(context.get_trial_dir(), TRAIN_DIR),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(  # type: ignore[call-arg]  # V2's at run time
                controller_failure_limit=startup_retries(wait_s)
            ),
            callbacks=[ToTune(items=items, acks=acks, to_tune=to_tune)],  # type: ignore[list-item]
        ),
    )
    failed: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # raised in the trial's own thread below
            failed.append(e)
        finally:
            items.put(None)

    fitting = threading.Thread(target=fit, name="fit", daemon=True)
    fitting.start()
    while (item := items.get()) is not None:
        metrics, checkpoint = item
        if checkpoint is None:
            tune.report(metrics)
        else:
            tune.report(
                metrics,
                checkpoint=tune.Checkpoint(checkpoint.path, filesystem=checkpoint.filesystem),
            )
        acks.put(True)
    fitting.join()
    if failed:
        error = failed[0]
        if isinstance(error, ControllerError) and is_worker_group_startup_timeout(
            error.controller_failure
        ):
            raise never_placed(workers, wait_s) from None
        raise error


def trial_function(
    loop: Callable,
    workers: Any,
    *,
    name: str,
    to_tune: bool = False,
    wait_s: float | None = None,
) -> Callable[[dict], None]:
    """The Tune function trainable of a data-parallel trial: ``loop`` on every rank; with
    ``to_tune`` Tune gets rank 0's checkpoints too (population-based training copies them);
    ranks that find no room within ``wait_s`` fail the trial in one line."""

    def trial(config: dict[str, Any]) -> None:
        run_trainer(config, loop=loop, workers=workers, to_tune=to_tune, wait_s=wait_s)

    trial.__name__ = trial.__qualname__ = name
    return trial


class ReleaseRanks(Callback):
    """In the driver: when a data-parallel trial ends (finished, stopped by a scheduler, or
    failed) or is paused (HyperBand, BOHB, PBT), remove its ranks' placement group if it is
    still there. A trial that Tune stops mid-run takes Train's controller with it, and the
    placement group (the job's) stays; Ray Train's own cleaner asks the State API, which a local
    Ray without the dashboard does not serve (there the ranks of a trial that ASHA stopped kept
    their CPUs and the next trial waited forever), nor a machine with several Rays. Tune tells
    callbacks of no pause: paused trials are looked at before each step, once their actor has
    stopped (Tune marks a trial paused at once and stops it after; removing its ranks before
    failed the trial instead of pausing it)."""

    def __init__(self) -> None:
        self.done: set[str] = set()  # trials ended and released

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release(trial)
        self.done.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release(trial)
        self.done.add(trial.trial_id)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        from raytune_hpo.ray_compat import trial_actor

        for trial in trials:
            if trial.status != "PAUSED" or trial.trial_id in self.done:
                continue
            if trial_actor(trial) is None:
                release(trial)


def release(trial: Any) -> bool:
    """Remove the placement group recorded for ``trial`` (on the sweep's storage, under its
    directory) if it is still there; whether one was removed."""
    import ray
    from ray.util import placement_group_table, remove_placement_group
    from ray.util.placement_group import PlacementGroup

    from raytune_hpo.ray_compat import trial_storage

    fs, trial_path, _ = trial_storage(trial)
    try:
        with fs.open_input_stream(f"{trial_path}/{TRAIN_DIR}/{PG_FILE}") as f:
            hex_id = f.read().decode().strip()
    except (OSError, ValueError):  # none written (yet)
        return False
    entry = placement_group_table().get(hex_id)
    if not entry or entry.get("state") == "REMOVED":
        return False
    remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id))))
    return True


__all__ = [
    "CHECKPOINT_PATH",
    "PG_FILE",
    "RanksNeverPlaced",
    "ReleaseRanks",
    "rank_loop",
    "release",
    "TRAIN_DIR",
    "TRIAL_RESOURCES",
    "rank_resources",
    "run_name",
    "run_trainer",
    "scaling_config",
    "ToTune",
    "trial_function",
]
