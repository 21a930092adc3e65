"""Every use of Ray's private names (``_internal``, ``_private``, underscored attributes) in one
place, each function written for Ray 2.60 and failing with a message naming what moved when a
Ray upgrade moves it (``tests/test_ray_compat.py`` names each symbol).

What they reach: a trial's run metadata and its checkpoint bookkeeping inside Ray Tune's
experiment state (mended after a kill: ``raytune_hpo.run.snapshot``), and the driver's local
staging directory, where Ray writes the experiment state before it copies it to storage
(``raytune_hpo.run.resume_point``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RayMoved(RuntimeError):
    """A private Ray name this module relies on is gone or changed."""


def _moved(what: str, error: Exception) -> RayMoved:
    import ray

    return RayMoved(
        f"Ray {ray.__version__} changed {what} ({type(error).__name__}: {error}); "
        "raytune_hpo.ray_compat was written for Ray 2.60 and must follow it"
    )


def load_run_metadata(meta_json: str) -> Any:
    """A trial's run metadata (last result, checkpoint manager) from the experiment state's
    JSON. Ray 2.60: ``ray.tune.trainable.metadata._TrainingRunMetadata.from_json_state``."""
    try:
        from ray.tune.trainable.metadata import _TrainingRunMetadata

        return _TrainingRunMetadata.from_json_state(meta_json)
    except (ImportError, AttributeError) as e:
        raise _moved("_TrainingRunMetadata.from_json_state", e) from None


def checkpoint_results(meta: Any) -> tuple[Any, list[Any]]:
    """``(latest, kept)``: the trial's latest registered checkpoint result and every one its
    checkpoint manager keeps (each with ``.checkpoint`` and ``.metrics``). Ray 2.60:
    ``_CheckpointManager.latest_checkpoint_result`` and ``._checkpoint_results``."""
    try:
        manager = meta.checkpoint_manager
        if manager is None:
            return None, []
        return manager.latest_checkpoint_result, list(manager._checkpoint_results)
    except AttributeError as e:
        raise _moved("_CheckpointManager._checkpoint_results", e) from None


def set_checkpoint_results(meta: Any, latest: Any, kept: list[Any]) -> None:
    """Make ``latest`` the trial's latest checkpoint result and ``kept`` the ones its manager
    keeps (Ray deletes the oldest of them when a new one comes). Ray 2.60:
    ``_CheckpointManager._latest_checkpoint_result``, ``._checkpoint_results``."""
    try:
        manager = meta.checkpoint_manager
        if manager is None:
            return
        manager._latest_checkpoint_result = latest
        manager._checkpoint_results = list(kept)
        meta.invalidate_cache()  # its JSON is cached until an attribute of its own changes
    except AttributeError as e:
        raise _moved("_CheckpointManager._latest_checkpoint_result", e) from None


def checkpoint_result(path: str, filesystem: Any, metrics: dict) -> Any:
    """A checkpoint result (a checkpoint at ``path`` reported with ``metrics``). Ray 2.60:
    ``ray.train._internal.session._TrainingResult``."""
    try:
        from ray.train import Checkpoint
        from ray.train._internal.session import _TrainingResult

        return _TrainingResult(checkpoint=Checkpoint(path, filesystem=filesystem), metrics=metrics)
    except (ImportError, AttributeError, TypeError) as e:
        raise _moved("ray.train._internal.session._TrainingResult", e) from None


def _trial_storage(trial: dict) -> Any:
    """The ``StorageContext`` a trial's state (its JSON in the experiment state, parsed) holds,
    which Ray encodes as a cloudpickle fallback (``TuneFunctionEncoder``)."""
    from ray import cloudpickle

    field = trial["storage"]
    if not isinstance(field, dict) or field.get("_type") != "CLOUDPICKLE_FALLBACK":
        raise KeyError("storage")
    return cloudpickle.loads(bytes.fromhex(field["value"]))


def trial_staging_stamp(trial: dict) -> str:
    """The time stamp naming the driver's staging directory of the run a trial belongs to (a
    restored run reuses its first trial's). Ray 2.60: ``Trial.storage._timestamp``."""
    try:
        return _trial_storage(trial)._timestamp
    except (KeyError, AttributeError) as e:
        raise _moved("Trial.storage._timestamp", e) from None


def raise_checkpoint_index(trial: dict, index: int) -> bool:
    """Make the trial's next checkpoint directory ``checkpoint_<index + 1>`` at least (Ray
    numbers them from the index its state holds: a trial continuing from a checkpoint the
    state did not know yet would otherwise write over it). Whether it changed. Ray 2.60:
    ``StorageContext.current_checkpoint_index`` inside the trial's state."""
    from ray import cloudpickle

    try:
        context = _trial_storage(trial)
        if context.current_checkpoint_index >= index:
            return False
        context.current_checkpoint_index = index
    except (KeyError, AttributeError) as e:
        raise _moved("StorageContext.current_checkpoint_index", e) from None
    trial["storage"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(context).hex()}
    return True


def staging_dir(trial: Any) -> str:
    """The driver's local staging directory of a running trial's experiment, where Ray writes
    the experiment state and the searcher's before copying them to storage. Ray 2.60:
    ``StorageContext.experiment_driver_staging_path`` (``ray.train._internal.storage``)."""
    try:
        return trial.storage.experiment_driver_staging_path
    except AttributeError as e:
        raise _moved("StorageContext.experiment_driver_staging_path", e) from None


def session_staging_dir(stamp: str, experiment: str) -> Path:
    """Where a run stamped ``stamp`` stages ``experiment`` on this Ray session (Ray must be
    initialised; a driver that joins a cluster shares the head's session). Ray 2.60:
    ``ray.train.constants._get_ray_train_session_dir``."""
    try:
        from ray.train.constants import _get_ray_train_session_dir

        return Path(_get_ray_train_session_dir(), stamp, experiment, "driver_artifacts")
    except (ImportError, AttributeError) as e:
        raise _moved("ray.train.constants._get_ray_train_session_dir", e) from None


def result_line(result: dict) -> str:
    """A result as Ray's JSON logger writes it to ``result.json`` (one line, no newline).
    Ray 2.60: ``ray.air._internal.json.SafeFallbackEncoder``."""
    import json

    try:
        from ray.air._internal.json import SafeFallbackEncoder
    except ImportError as e:
        raise _moved("ray.air._internal.json.SafeFallbackEncoder", e) from None
    return json.dumps(result, cls=SafeFallbackEncoder)


__all__ = [
    "RayMoved",
    "checkpoint_result",
    "checkpoint_results",
    "load_run_metadata",
    "raise_checkpoint_index",
    "result_line",
    "session_staging_dir",
    "set_checkpoint_results",
    "staging_dir",
    "trial_staging_stamp",
]
