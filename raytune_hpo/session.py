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
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

STATE_FILE = "raytune_hpo_state.pkl"


def report(metrics: dict[str, Any], *, state: Any = None) -> None:
    """``ray.tune.report(metrics)``, with ``state`` (if given) saved as the checkpoint."""
    from ray import tune

    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, STATE_FILE), "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def restore_state() -> Any:
    """The ``state`` of this trial's last ``report``, or None when it starts afresh."""
    from ray import tune

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
