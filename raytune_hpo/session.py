"""Resumable trials without Ray's checkpoint API: ``report(metrics, state=...)`` and
``restore_state()`` inside a user's trainable function.

    import raytune_hpo

    def train(config):
        state = raytune_hpo.restore_state() or {"epoch": 0, "weights": init(config)}
        for epoch in range(state["epoch"] + 1, 21):
            state["weights"] = step(state["weights"], config)
            state["epoch"] = epoch
            raytune_hpo.report({"score": evaluate(state["weights"])}, state=state)

``state`` is any picklable object (tensors, numpy arrays, dicts of them). It is saved with
each result as the trial's checkpoint, so a trial that HyperBand or BOHB pauses, that fails
and is retried (``max_failures``), or whose sweep is resumed (``raytune-hpo resume``) starts
again from its last state instead of from scratch.

Inside the ranks of a data-parallel trial (``workers:``) both go through Ray Train:
``report`` is ``ray.train.report`` on every rank, rank 0's with the state as the checkpoint
(Tune records rank 0's result), and ``restore_state`` gives every rank that checkpoint's state.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

STATE_FILE = "raytune_hpo_state.pkl"


def train_rank() -> int | None:
    """This process's rank in a Ray Train run (a data-parallel trial); None outside one."""
    try:
        import ray.train

        return ray.train.get_context().get_world_rank()
    except (RuntimeError, DeprecationWarning):  # not a Train worker / a Tune trial's process
        return None


def report(metrics: dict[str, Any], *, state: Any = None) -> None:
    """``ray.tune.report(metrics)``, with ``state`` (if given) saved as the checkpoint; in a
    Ray Train worker ``ray.train.report``, the state saved by rank 0 only."""
    from ray import tune

    rank = train_rank()
    if rank is not None:
        import ray.train

        reporter, kind = ray.train.report, ray.train.Checkpoint
        state = state if rank == 0 else None
    else:
        reporter, kind = tune.report, tune.Checkpoint
    if state is None:
        reporter(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, STATE_FILE), "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        reporter(metrics, checkpoint=kind.from_directory(d))


def restore_state() -> Any:
    """The ``state`` of this trial's last ``report``, or None when it starts afresh."""
    from ray import tune

    if train_rank() is not None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
    else:
        checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        path = os.path.join(d, STATE_FILE)
        if not os.path.isfile(path):
            return None  # a checkpoint the trainable wrote itself, not through report()
        with open(path, "rb") as f:
            return pickle.load(f)


__all__ = ["report", "restore_state"]
