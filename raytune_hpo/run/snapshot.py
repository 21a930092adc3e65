"""Ray Tune's experiment state, mended where a killed driver left it naming a lost checkpoint.

With ``CheckpointConfig(num_to_keep=k)`` Ray deletes a trial's oldest checkpoint as soon as it
registers a new one, and writes the experiment state afterwards (it forces a snapshot every k
checkpoints, after the deletion). A driver killed in between leaves a state whose trial names a
checkpoint that no longer exists, and ``Tuner.restore`` then fails that trial ("Could not recover
from checkpoint as it does not exist on storage anymore"): a finished epoch lost, a trial lost.
``mend(exp)`` points each such trial at its newest checkpoint that does exist, with the result it
reported with that checkpoint, so the trial continues from there.

Ray keeps a trial's checkpoints in a pickled ``_CheckpointManager`` inside the state; that private
format is read and written only by ``load_run_metadata``, ``latest_checkpoint`` and
``set_latest_checkpoint`` of ``raytune_hpo.ray_compat``, which fail with a message naming what
changed when a Ray upgrade changes it (``tests/test_snapshot.py``).
"""

from __future__ import annotations

import json
from typing import Any

import raytune_hpo.storage as storage
from raytune_hpo.names import RESULT_FILE, STATE_GLOB
from raytune_hpo.ray_compat import latest_checkpoint, load_run_metadata, set_latest_checkpoint

CHECKPOINT_GLOB = "checkpoint_*"


def newest_state(exp: str) -> str | None:
    """The newest experiment state file of a sweep directory (Ray names them by time)."""
    found = storage.glob(exp, STATE_GLOB)
    return max(found, key=storage.name) if found else None


def mend(exp: str) -> list[str]:
    """Point every trial whose recorded checkpoint is gone at its newest one on storage; the
    ids of the trials mended. ``exp``: a sweep directory (local path or URI)."""
    path = newest_state(exp)
    if path is None:
        return []
    state = json.loads(storage.read_text(path))
    mended = []
    for entry in state.get("trial_data", []):
        trial = json.loads(entry[0])
        new_meta = _mended_entry(exp, trial, entry[1])
        if new_meta is not None:
            entry[1] = new_meta
            mended.append(trial["trial_id"])
    if mended:
        storage.write_text(path, json.dumps(state, indent=2))
    return mended


def _mended_entry(exp: str, trial: dict, meta_json: str) -> str | None:
    meta = load_run_metadata(meta_json)
    latest = latest_checkpoint(meta)
    if latest is None or _exists(latest.checkpoint):
        return None
    trial_dir = storage.join(exp, trial.get("relative_logdir") or "")
    on_disk = sorted(storage.glob(trial_dir, CHECKPOINT_GLOB), key=storage.name)
    for candidate in reversed(on_disk):  # the newest checkpoint Ray reported a result with
        metrics = _reported_with(trial_dir, storage.name(candidate))
        if metrics is not None:
            parent = latest.checkpoint.path.rsplit("/", 1)[0]
            set_latest_checkpoint(meta, f"{parent}/{storage.name(candidate)}", metrics)
            return meta.get_json_state()
    return None


def _exists(checkpoint: Any) -> bool:
    import pyarrow.fs as pafs

    info = checkpoint.filesystem.get_file_info(checkpoint.path)
    return info.type != pafs.FileType.NotFound


def _reported_with(trial_dir: str, checkpoint_name: str) -> dict | None:
    """The result a trial reported together with ``checkpoint_name`` (its result.json line)."""
    try:
        text = storage.read_text(storage.join(trial_dir, RESULT_FILE))
    except Exception:  # no results file: nothing to mend from
        return None
    for line in reversed(text.splitlines()):
        if line.strip():
            result = json.loads(line)
            if result.get("checkpoint_dir_name") == checkpoint_name:
                return result
    return None


__all__ = ["latest_checkpoint", "load_run_metadata", "mend", "newest_state"]
