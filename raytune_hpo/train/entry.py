"""What Ray Tune runs for the built-in CNN, named without importing torch: the driver hands Tune
these functions (Ray pickles them by reference) and only a trial's worker imports the training
loop. A driver that imported ``raytune_hpo.train.trainable`` paid for torch (about 4.6 s of a
20 s one-trial ``raytune-hpo run`` on a 2-core machine) without training anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def train_cnn(config: dict[str, Any]) -> None:
    """``raytune_hpo.train.trainable.train_cnn``: one trial of the built-in CNN."""
    from raytune_hpo.train.trainable import train_cnn as run

    run(config)


def train_fused(config: dict[str, Any]) -> None:
    """``raytune_hpo.train.fused_tune.train_fused``: one member of a fused group."""
    from raytune_hpo.train.fused_tune import train_fused as run

    run(config)


def fused_members(gpu: float) -> Callable[[dict[str, Any]], None]:
    """``train_fused`` for trials that ask Tune for no GPU: their group holds ``gpu`` (each
    member's share) of a device through Ray for them."""

    def train_fused(config: dict[str, Any]) -> None:
        from raytune_hpo.train.fused_tune import train_fused as run

        run(config, gpu=gpu)

    return train_fused


def train_cnn_per_worker(config: dict[str, Any]) -> None:
    """``raytune_hpo.train.data_parallel.train_cnn_per_worker``: one rank of a data-parallel
    trial of the built-in CNN (Ray Train's ``train_loop_per_worker``)."""
    from raytune_hpo.train.data_parallel import train_cnn_per_worker as run

    run(config)


__all__ = ["fused_members", "train_cnn", "train_cnn_per_worker", "train_fused"]
