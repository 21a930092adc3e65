"""Ray Tune's experiment state mended before a resume, so that what Ray restores agrees with
what storage holds after a kill at any moment.

A snapshot (``raytune_hpo.run.resume_point``) names, per trial, its status, last result and the
checkpoints Ray keeps; storage holds each trial's checkpoints (written by the trial before it
reports) and its ``result.json`` (copied by the driver, later or earlier than the snapshot).
Without mending, a kill leaves:

- a recorded checkpoint that Ray deleted after the snapshot (``CheckpointConfig(num_to_keep)``
  deletes the oldest as soon as a new one registers): ``Tuner.restore`` fails the trial
  ("Could not recover from checkpoint as it does not exist on storage anymore"), or, for an
  older kept one, logs a traceback when it deletes it again ("Error handling checkpoint ...
  FileNotFoundError");
- result rows the trial reported after the snapshot: the trial repeats those epochs from its
  checkpoint and Ray appends them again (rows twice);
- rows the snapshot knows but storage does not have yet: missing rows.

``mend`` makes each trial's record agree: an unfinished trial continues from its newest
checkpoint that exists and whose rows up to it are all known (from storage, the driver's
staging copy when this machine has it, and the rows the resume point kept); its ``result.json``
(and ``progress.csv``) holds exactly those rows; a trial with no such checkpoint starts again
with no rows; a finished trial keeps its rows up to its last result. Population-based
training's exploits that the kept rows do not show are dropped from ``pbt_schedule.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import raytune_hpo.ray_compat as ray_compat
import raytune_hpo.storage as storage
from raytune_hpo.names import BUDGET_ATTR, PBT_SCHEDULE, RESULT_FILE, STATE_GLOB, TRIAL_ID

CHECKPOINT_GLOB = "checkpoint_*"
PROGRESS_FILE = "progress.csv"  # Ray's CSV logger: one row per result, like result.json
FINISHED = ("TERMINATED", "ERROR")


def newest_state(exp: str) -> str | None:
    """The newest experiment state file of a sweep directory (Ray names them by time)."""
    found = storage.glob(exp, STATE_GLOB)
    return max(found, key=storage.name) if found else None


@dataclass
class Mended:
    """What ``mend`` found and did, for the resume's one line."""

    finished: int = 0
    continuing: dict[str, int] = field(default_factory=dict)  # trial id -> its budget
    restarting: list[str] = field(default_factory=list)
    pending: int = 0
    repointed: list[str] = field(default_factory=list)  # recorded checkpoint gone
    rows_dropped: int = 0  # reported after the snapshot: redone
    rows_added: int = 0  # known to the snapshot, missing on storage
    gaps: list[str] = field(default_factory=list)  # finished trials with rows not recovered
    exploits_dropped: int = 0
    pending_exploits: dict[str, int] = field(default_factory=dict)  # trial -> donor's budget

    def line(self, used: str | None) -> str:
        source = used or "Ray's last snapshot"
        parts = [f"{self.finished} trial(s) finished"]
        if self.continuing:
            at = ", ".join(f"{t} at {BUDGET_ATTR} {i}" for t, i in self.continuing.items())
            parts.append(f"{len(self.continuing)} continue from their checkpoints ({at})")
        if self.restarting:
            parts.append(f"{len(self.restarting)} start again (no checkpoint)")
        if self.pending:
            parts.append(f"{self.pending} not started")
        notes = []
        if self.repointed:
            notes.append(f"recorded checkpoint gone, newest used: {', '.join(self.repointed)}")
        if self.rows_dropped:
            notes.append(f"{self.rows_dropped} result row(s) after the snapshot redone")
        if self.rows_added:
            notes.append(f"{self.rows_added} result row(s) restored")
        if self.exploits_dropped:
            notes.append(f"{self.exploits_dropped} PBT exploit(s) after the snapshot dropped")
        if self.gaps:
            notes.append(f"rows of {', '.join(self.gaps)} incomplete")
        tail = f"; {'; '.join(notes)}" if notes else ""
        return f"raytune-hpo: resuming from {source}: {', '.join(parts)}{tail}"


def mend(exp: str, restored: Any, staging: Path | None = None) -> Mended:
    """Mend the snapshot ``restored`` (``resume_point.Restored``) of the sweep at ``exp``
    (local or a URI) and write it back where Ray reads it; ``staging``: the driver's staging
    copy of the sweep on this machine, if any (read for rows, not changed)."""
    out = Mended()
    state = restored.state
    cut: dict[str, list[dict]] = {}
    done: set[str] = set()
    changed = False
    for entry in state.get("trial_data", []):
        trial = json.loads(entry[0])
        meta = ray_compat.load_run_metadata(entry[1])
        tid = trial["trial_id"]
        logdir = trial.get("relative_logdir")
        if not logdir:
            out.pending += 1
            continue
        trial_dir = storage.join(exp, logdir)
        lines = _known_rows(trial_dir, staging / logdir if staging else None, restored.rows, tid)
        if trial["status"] in FINISHED:
            out.finished += 1
            done.add(tid)
            rows, note = _finished_rows(lines, meta.last_result)
        elif not lines and not storage.glob(trial_dir, CHECKPOINT_GLOB):
            out.pending += 1  # started, never reported
            ray_compat.set_checkpoint_results(meta, None, [])
            _write_rows(trial_dir, [], out)  # Ray reads a trial's rows when it restores
            entry[1], changed = meta.get_json_state(), True
            continue
        else:
            rows, note = _unfinished_rows(exp, trial_dir, lines, meta, tid, out)
            changed = True
            if _config_of_rows(trial, rows):
                entry[0] = json.dumps(trial, indent=2)
            on_disk = storage.glob(trial_dir, CHECKPOINT_GLOB)
            top = max((int(storage.name(p).rsplit("_", 1)[1]) for p in on_disk), default=-1)
            if ray_compat.raise_checkpoint_index(trial, top):
                entry[0] = json.dumps(trial, indent=2)
        if note == "gap":
            out.gaps.append(tid)
        cut[tid] = [json.loads(x) for x in rows]
        _write_rows(trial_dir, rows, out)
        entry[1] = meta.get_json_state()
    out.exploits_dropped = _mend_schedule(exp, cut, out.pending_exploits, done)
    if changed:
        storage.write_text(storage.join(exp, restored.state_name), json.dumps(state))
    return out


# ---------------------------------------------------------------- result rows
def whole_lines(text: str) -> list[str]:
    """The whole JSON lines of a result file (a line cut short by a kill is no row)."""
    out = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            continue
        out.append(line)
    return out


def _read_lines(path: str) -> list[str]:
    return whole_lines(storage.read_text(path)) if storage.is_file(path) else []


def _known_rows(trial_dir: str, staged: Path | None, kept: dict, tid: str) -> list[str]:
    """Every row of the trial known anywhere, in order: the longer of storage's and the
    staging copy's ``result.json`` (both prefixes of what the trial reported), continued by
    the rows the resume point kept."""
    rows = _read_lines(storage.join(trial_dir, RESULT_FILE))
    if staged is not None and (staged / RESULT_FILE).is_file():
        local = whole_lines((staged / RESULT_FILE).read_text())
        if len(local) > len(rows) and local[: len(rows)] == rows:
            rows = local
    return _merge_rows(rows, kept.get(tid) or [])


def _merge_rows(rows: list[str], window: list[str]) -> list[str]:
    """``rows`` (a trial's first rows) continued by ``window`` (its latest rows) where the two
    overlap or meet; where a gap lies between them, ``rows`` alone (what is sure)."""
    if not window:
        return rows
    if window[0] in rows:
        at = len(rows) - 1 - rows[::-1].index(window[0])
        tail = rows[at:]
        return rows[:at] + window if window[: len(tail)] == tail else rows
    first = json.loads(window[0])
    if not rows and first.get(BUDGET_ATTR) == 1:
        return window
    if rows and json.loads(rows[-1]).get(BUDGET_ATTR, 0) + 1 == first.get(BUDGET_ATTR):
        return rows + window
    return rows


def _same(row: dict, result: dict) -> bool:
    keys = (BUDGET_ATTR, "time_total_s", "timestamp")
    return all(row.get(k) == result.get(k) for k in keys)


def _finished_rows(lines: list[str], last: dict) -> tuple[list[str], str | None]:
    """A finished trial's rows up to its last result (the snapshot's). Under PBT the last
    result of a trial that ended on its donor's final checkpoint is the donor's: its own rows
    are all there is."""
    if not last or (lines and json.loads(lines[0]).get(TRIAL_ID) != last.get(TRIAL_ID)):
        return lines, None
    for i in range(len(lines) - 1, -1, -1):
        if _same(json.loads(lines[i]), last):
            return lines[: i + 1], None
    n = last.get(BUDGET_ATTR, 0)
    if lines and json.loads(lines[-1]).get(BUDGET_ATTR, 0) + 1 == n:
        return [*lines, ray_compat.result_line(last)], None
    return lines, "gap"


def _unfinished_rows(exp, trial_dir, lines, meta, tid, out: Mended):
    """Pick the checkpoint an unfinished trial continues from: its newest one on storage
    whose row is known; its rows up to it. The checkpoints Ray then keeps (and deletes in
    turn) are the ones on storage up to it: a deleted one would fail Ray's deletion."""
    latest, kept = ray_compat.checkpoint_results(meta)
    donor = _donor(exp, trial_dir, latest)
    if donor:  # PBT's exploit, decided before the snapshot: continue it from the donor's
        out.continuing[tid] = latest.metrics.get(BUDGET_ATTR, 0)
        out.pending_exploits[tid] = latest.metrics.get(BUDGET_ATTR, 0)
        return _finished_rows(lines, meta.last_result)
    index = {}  # checkpoint name -> index of the row reported with it
    for i, line in enumerate(lines):
        name = json.loads(line).get("checkpoint_dir_name")
        if name:
            index[name] = i
    known = {_name(r): r for r in [*kept, *([latest] if latest else [])]}
    on_disk = {storage.name(p) for p in storage.glob(trial_dir, CHECKPOINT_GLOB)}
    usable = sorted((n for n in on_disk if n in index), key=index.__getitem__)
    if not usable:
        ray_compat.set_checkpoint_results(meta, None, [])
        out.restarting.append(tid)
        _drop_strays(trial_dir, on_disk, set())
        return [], None
    best = usable[-1]
    if latest is not None and _name(latest) != best and _name(latest) not in on_disk:
        out.repointed.append(f"{tid} {_name(latest)} -> {best}")
    template = latest or next(iter(known.values()), None)
    results = []
    for name in usable:
        result = known.get(name)
        if result is None:
            path, fs = _checkpoint_path(exp, trial_dir, template, name)
            result = ray_compat.checkpoint_result(path, fs, json.loads(lines[index[name]]))
        results.append(result)
    ray_compat.set_checkpoint_results(meta, results[-1], results)
    _drop_strays(trial_dir, on_disk, set(usable))
    row = json.loads(lines[index[best]])
    meta.last_result = row
    out.continuing[tid] = row.get(BUDGET_ATTR, 0)
    return lines[: index[best] + 1], None


def _config_of_rows(trial: dict, rows: list[str]) -> bool:
    """Give the trial the config of the last row it keeps, when the two differ: a PBT exploit
    after the snapshot whose rows are kept (it stays in the schedule) left the snapshot's
    config older (seen: the trial resumed and ended under its config from before the
    exploit). Whether it changed."""
    if not rows:
        return False
    config = json.loads(rows[-1]).get("config")
    if not isinstance(config, dict) or not isinstance(trial.get("config"), dict):
        return False
    if config == trial["config"]:
        return False
    trial["config"] = config
    return True


def _drop_strays(trial_dir: str, on_disk: set[str], kept: set[str]) -> None:
    """Delete the trial's checkpoints that Ray will no longer know: written after the snapshot
    with rows it lost (redone, under a higher index) or left by a kill between Ray's writing a
    checkpoint and deleting an older one. Ray deletes only those it knows, so these stayed
    (seen: two checkpoints left with ``checkpoints.keep: 1``)."""
    for name in sorted(on_disk - kept):
        storage.delete_tree(storage.join(trial_dir, name))


def _donor(exp: str, trial_dir: str, latest: Any) -> bool:
    """Whether the trial's latest checkpoint is another trial's, there on storage: Ray's PBT
    points an exploiting trial at its donor's checkpoint until it restores from it."""
    if latest is None:
        return False
    parts = latest.checkpoint.path.rstrip("/").rsplit("/", 2)
    if len(parts) < 3 or parts[1] == storage.name(trial_dir):
        return False
    return storage.exists(storage.join(exp, parts[1], parts[2]))


def _name(result: Any) -> str:
    return result.checkpoint.path.rstrip("/").rsplit("/", 1)[-1]


def _checkpoint_path(exp: str, trial_dir: str, template: Any, name: str) -> tuple[str, Any]:
    if template is not None:
        parent = template.checkpoint.path.rstrip("/").rsplit("/", 1)[0]
        return f"{parent}/{name}", template.checkpoint.filesystem
    fs, path = storage.filesystem(storage.join(trial_dir, name))
    return path, storage.ray_filesystem(exp) or fs


def _write_rows(trial_dir: str, rows: list[str], out: Mended) -> None:
    """The trial's ``result.json`` and ``progress.csv`` (Ray's CSV logger's, rebuilt the way
    it writes: flat keys but ``config``, the first row's keys as the header) hold ``rows``."""
    path = storage.join(trial_dir, RESULT_FILE)
    stored = _read_lines(path)
    if rows == stored and storage.is_file(path):
        return
    common = 0
    while common < min(len(rows), len(stored)) and rows[common] == stored[common]:
        common += 1
    out.rows_dropped += len(stored) - common
    out.rows_added += len(rows) - common
    storage.write_text(path, "".join(f"{x}\n" for x in rows))
    storage.write_text(storage.join(trial_dir, PROGRESS_FILE), progress_csv(rows))


def progress_csv(rows: list[str]) -> str:
    import csv
    import io

    from ray.tune.utils import flatten_dict

    if not rows:
        return ""
    flat = []
    for line in rows:
        result = json.loads(line)
        result.pop("config", None)
        flat.append(flatten_dict(result, delimiter="/"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, flat[0].keys())
    writer.writeheader()
    for result in flat:
        writer.writerow({k: v for k, v in result.items() if k in writer.fieldnames})
    return buf.getvalue()


# ---------------------------------------------------------------- population-based training
def _mend_schedule(
    exp: str, rows: dict[str, list[dict]], pending: dict[str, int], finished: set[str]
) -> int:
    """Drop the exploits (``pbt_schedule.jsonl``) that a trial's kept rows do not show: each
    exploit at ``training_iteration`` t copying another trial's checkpoint at ``copied_at``
    is followed by a row of ``copied_at + 1`` reported first after a restore; the exploit a
    trial is about to continue from (``pending``: its donor's budget) is kept."""
    path = storage.join(exp, PBT_SCHEDULE)
    if not storage.is_file(path):
        return 0
    entries = [json.loads(x) for x in whole_lines(storage.read_text(path))]
    shown: dict[str, int] = {}
    for tid in {e[TRIAL_ID] for e in entries}:
        mine = [e for e in entries if e[TRIAL_ID] == tid]
        shown[tid] = _exploits_shown(mine, rows.get(tid))
        last = (rows.get(tid) or [{}])[-1].get(BUDGET_ATTR)
        if len(mine) > shown[tid] and mine[shown[tid]].get(BUDGET_ATTR) == last:
            # the exploit it is about to continue from, or the one that ended it (a donor's
            # checkpoint at the last budget leaves nothing to run)
            copied = mine[shown[tid]].get("copied_at")
            if tid in finished or (tid in pending and copied == pending[tid]):
                shown[tid] += 1
    keep, seen = [], dict.fromkeys(shown, 0)
    for e in entries:
        seen[e[TRIAL_ID]] += 1
        if seen[e[TRIAL_ID]] <= shown[e[TRIAL_ID]]:
            keep.append(e)
    if len(keep) == len(entries):
        return 0
    storage.write_text(path, "".join(json.dumps(e, default=str) + "\n" for e in keep))
    return len(entries) - len(keep)


def _exploits_shown(entries: list[dict], rows: list[dict] | None) -> int:
    if rows is None:  # unknown to the snapshot, or never reported there: it starts again
        return 0
    n = 0
    for prev, row in zip(rows, rows[1:], strict=False):
        if n == len(entries):
            break
        e = entries[n]
        if (
            row.get("iterations_since_restore") == 1
            and prev.get(BUDGET_ATTR) == e.get(BUDGET_ATTR)
            and row.get(BUDGET_ATTR) == (e.get("copied_at") or 0) + 1
        ):
            n += 1
    return n


__all__ = ["Mended", "mend", "newest_state", "progress_csv", "whole_lines"]
