"""What our population-based training keeps on the sweep's storage (local or a bucket): the
schedule of exploits (``pbt_schedule.jsonl``, read by ``results --schedule`` and the report)
and, when Ray deletes old checkpoints (``checkpoints.keep``), the copies of donors'
checkpoints that exploiting trials restore from."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from ray.tune.result import SHOULD_CHECKPOINT

import raytune_hpo.ray_compat as compat
from raytune_hpo.names import CHECKPOINT_DIR_NAME, PBT_SCHEDULE

COPY_PREFIX = "pbt_copy_"  # not Ray's checkpoint_*: never taken for one of the trial's own


def append_schedule(trial: Any, line: bytes) -> None:
    """Add a line to the schedule in the experiment directory on its storage, not in the
    driver's staging copy: a resumed sweep's driver starts a new staging directory, whose copy
    would replace the stored one when Ray syncs (seen: 3 exploits, then 1). The file is
    rewritten whole (a temporary file moved over it; an object store's single PUT), so a kill
    leaves the schedule before or after the exploit, never a line cut short."""
    fs, _, exp = compat.trial_storage(trial)
    path = f"{exp}/{PBT_SCHEDULE}"
    old = _read(fs, path)
    if old and not old.endswith(b"\n"):  # one cut short by an older writer: not a row
        old = old[: old.rfind(b"\n") + 1]
    if fs.type_name in ("s3", "gcs"):
        with fs.open_output_stream(path) as f:
            f.write(old + line)
        return
    part = f"{exp}/.{PBT_SCHEDULE}.{uuid.uuid4().hex[:8]}.part"  # as raytune_hpo.storage names
    with fs.open_output_stream(part) as f:
        f.write(old + line)
    fs.move(part, path)


def read_schedule(trial: Any) -> list[dict[str, Any]]:
    """The exploits recorded so far in the sweep ``trial`` belongs to (none: [])."""
    fs, _, exp = compat.trial_storage(trial)
    out = []
    for line in _read(fs, f"{exp}/{PBT_SCHEDULE}").decode().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut off by a kill
            continue
        if isinstance(entry, dict) and "trial_id" in entry:
            out.append(entry)
    return out


def _read(fs: Any, path: str) -> bytes:
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except (OSError, FileNotFoundError):
        return b""


class Copies:
    """Copies of donors' checkpoints in the exploiting trials' own directories: Ray deletes a
    trial's older checkpoints (``num_to_keep``) while a trial that copies it has yet to
    restore it. A trial's copies go once it has a newer checkpoint of its own."""

    def __init__(self) -> None:
        self._made: dict[str, list[Any]] = {}  # trial id -> its copies, oldest first
        self._pending: dict[str, str | None] = {}  # trial id -> the result's checkpoint
        self._count = 0

    def take(self, trial: Any, donor: Any, checkpoint: Any, result: Any) -> tuple | None:
        """A copy of ``checkpoint`` (the donor's one PBT chose, taken with ``result``), or of
        the donor's newest when Ray deleted that one, with its result; None when the donor has
        no checkpoint on storage."""
        from ray.tune import Checkpoint

        if checkpoint is None or not _exists(checkpoint):
            latest = donor.latest_checkpoint_result
            if latest is None or latest.checkpoint is None or not _exists(latest.checkpoint):
                return None
            checkpoint, result = latest.checkpoint, latest.metrics
        import pyarrow.fs as pafs

        fs, trial_dir, _ = compat.trial_storage(trial)
        self._count += 1
        path = f"{trial_dir}/{COPY_PREFIX}{self._count:06d}"
        fs.create_dir(path, recursive=True)
        pafs.copy_files(
            checkpoint.path,
            path,
            source_filesystem=checkpoint.filesystem,
            destination_filesystem=fs,
        )
        copy = Checkpoint(path, filesystem=fs)
        self._made.setdefault(trial.trial_id, []).append(copy)
        return copy, result

    def reported(self, trial: Any, result: dict) -> None:
        """The checkpoint that came with ``trial``'s result now being decided, if any."""
        name = result.get(CHECKPOINT_DIR_NAME) if result.get(SHOULD_CHECKPOINT) else None
        self._pending[trial.trial_id] = name

    def drop_unregistered(self, trial: Any) -> None:
        """An exploit pauses ``trial`` before Ray registers the checkpoint it reported with
        this result: Ray never keeps count of it, nor deletes it. It goes now (the trial
        continues from the donor's)."""
        name = self._pending.pop(trial.trial_id, None)
        if name:
            fs, trial_dir, _ = compat.trial_storage(trial)
            with contextlib.suppress(OSError):
                fs.delete_dir(f"{trial_dir}/{name}")

    def drop_replaced(self, trial: Any) -> None:
        """Delete ``trial``'s copies once its newest checkpoint is one of its own."""
        made = self._made.get(trial.trial_id)
        latest = trial.checkpoint
        if not made or latest is None or any(latest.path == c.path for c in made):
            return
        for copy in self._made.pop(trial.trial_id):
            with contextlib.suppress(OSError):  # gone already
                copy.filesystem.delete_dir(copy.path)


def _exists(checkpoint: Any) -> bool:
    import pyarrow.fs as pafs

    info = checkpoint.filesystem.get_file_info(checkpoint.path)
    return info.type != pafs.FileType.NotFound


__all__ = ["COPY_PREFIX", "Copies", "append_schedule", "read_schedule"]
