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

import os
from collections.abc import Callable
from typing import Any

TRIAL_RESOURCES = {
    "cpu": 0.01
}  # the Tune trial's own (Ray takes no empty bundle): its ranks hold the rest
TRAIN_DIR = "train"  # under the trial's directory: Train's runs and checkpoints


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


def run_trainer(config: dict[str, Any], *, loop: Callable, workers: Any) -> None:
    """Inside a Tune trial: train ``loop`` on ``workers.count`` ranks with ``config``; their
    results go to Tune. Raises what the training raised (a failed trial)."""
    from ray import tune
    from ray.train import CheckpointConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    torch_config = None if workers.backend == "auto" else TorchConfig(backend=workers.backend)
    trainer = TorchTrainer(
        loop,
        train_loop_config=config,
        scaling_config=scaling_config(workers),
        torch_config=torch_config,
        run_config=RunConfig(
            name=f"trial_{context.get_trial_id()}",
            storage_path=os.path.join(context.get_trial_dir(), TRAIN_DIR),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def trial_function(loop: Callable, workers: Any, *, name: str) -> Callable[[dict], None]:
    """The Tune function trainable of a data-parallel trial: ``loop`` on every rank."""

    def trial(config: dict[str, Any]) -> None:
        run_trainer(config, loop=loop, workers=workers)

    trial.__name__ = trial.__qualname__ = name
    return trial


__all__ = ["TRAIN_DIR", "TRIAL_RESOURCES", "rank_resources", "run_trainer", "scaling_config"]
