"""Data-parallel trials, the Ray 2.60 way: each Tune trial is a function that runs one Ray
Train V2 ``TorchTrainer`` of ``workers.count`` ranks (``ScalingConfig``), and the ranks'
results reach Tune through ``ray.tune.integration.ray_train.TuneReportCallback`` (rank 0's
result, once per step). The trial itself asks Ray for almost nothing (``TRIAL_RESOURCES``): its
ranks hold the resources, in a placement group of Train's own.

Checkpoints are Train's: rank 0 reports one with ``ray.train.report``; Train keeps them under
the trial's directory in a run named after the trial, so a trial started again with the same
id (a paused HyperBand trial, a sweep resumed after a driver kill, a retried failure) finds
its last one with ``ray.train.get_checkpoint()`` on every rank.

Imports neither torch nor Ray Train at import time: the driver hands Tune
``trial_function(...)`` and only the trial's process builds the trainer."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

TRIAL_RESOURCES = {
    "cpu": 0.01
}  # the Tune trial's own (Ray takes no empty bundle): its ranks hold the rest
TRAIN_DIR = "train"  # under the trial's directory: Train's runs and checkpoints
PG_FILE = "placement_group"  # in TRAIN_DIR: the id of the ranks' placement group


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


def rank_loop(loop: Callable, record_to: str | None) -> Callable[[dict], None]:
    """``loop`` as every rank runs it; rank 0 first writes the id of the ranks' placement
    group to ``record_to`` (read by ``ReleaseRanks``)."""
    takes_config = bool(inspect.signature(loop).parameters)

    def run(config: dict[str, Any]) -> None:
        import ray.train
        from ray.util import get_current_placement_group

        group = get_current_placement_group()
        if record_to and group is not None and ray.train.get_context().get_world_rank() == 0:
            os.makedirs(os.path.dirname(record_to), exist_ok=True)
            with open(record_to + ".tmp", "w") as f:
                f.write(group.id.hex())
            os.replace(record_to + ".tmp", record_to)
        loop(config) if takes_config else loop()

    return run


def run_trainer(config: dict[str, Any], *, loop: Callable, workers: Any) -> None:
    """Inside a Tune trial: train ``loop`` on ``workers.count`` ranks with ``config``; their
    results go to Tune. Raises what the training raised (a failed trial)."""
    from ray import tune
    from ray.train import CheckpointConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    torch_config = None if workers.backend == "auto" else TorchConfig(backend=workers.backend)
    train_dir = os.path.join(context.get_trial_dir(), TRAIN_DIR)
    trainer = TorchTrainer(
        rank_loop(loop, os.path.join(train_dir, PG_FILE)),
        train_loop_config=config,
        scaling_config=scaling_config(workers),
        torch_config=torch_config,
        run_config=RunConfig(
            name=f"trial_{context.get_trial_id()}",
            storage_path=train_dir,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # Ray's annotation
        ),
    )
    trainer.fit()


def trial_function(loop: Callable, workers: Any, *, name: str) -> Callable[[dict], None]:
    """The Tune function trainable of a data-parallel trial: ``loop`` on every rank."""

    def trial(config: dict[str, Any]) -> None:
        run_trainer(config, loop=loop, workers=workers)

    trial.__name__ = trial.__qualname__ = name
    return trial


class ReleaseRanks(Callback):
    """In the driver: when a data-parallel trial ends (finished, stopped by a scheduler, or
    failed) or is paused (HyperBand, BOHB), remove its ranks' placement group if it is still
    there. Ray Train's own cleaner asks the State API, which a local Ray without the dashboard
    does not serve: there the ranks of a trial that ASHA stopped kept their CPUs and the next
    trial waited forever. Tune tells callbacks of no pause: paused trials are looked at before
    each step."""

    def __init__(self) -> None:
        self.done: set[str] = set()  # trials ended and released

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release(trial.local_path)
        self.done.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release(trial.local_path)
        self.done.add(trial.trial_id)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            if trial.status == "PAUSED" and trial.trial_id not in self.done:
                release(trial.local_path)


def release(trial_dir: str | None) -> bool:
    """Remove the placement group recorded under ``trial_dir`` if it is still there; whether
    one was removed."""
    import ray
    from ray.util import placement_group_table, remove_placement_group
    from ray.util.placement_group import PlacementGroup

    path = os.path.join(trial_dir or "", TRAIN_DIR, PG_FILE)
    try:
        with open(path) as f:
            hex_id = f.read().strip()
    except OSError:
        return False
    entry = placement_group_table().get(hex_id)
    if not entry or entry.get("state") == "REMOVED":
        return False
    remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id))))
    return True


__all__ = [
    "PG_FILE",
    "ReleaseRanks",
    "rank_loop",
    "release",
    "TRAIN_DIR",
    "TRIAL_RESOURCES",
    "rank_resources",
    "run_trainer",
    "scaling_config",
]
