"""A sweep's resume point: Ray Tune's experiment state and the searcher's state, saved together
in one file each time Ray snapshots the sweep, so that a resume always finds a pair that
belongs together, whole, whenever the driver was killed.

Ray writes a snapshot into the driver's local staging directory (the experiment state, then
the search algorithm's files, then the callbacks' states) and copies that directory to storage
in a background thread, file by file: a kill during the copy leaves a new experiment state
beside an old searcher state, or (on a local disk, before ``raytune_hpo.storage``'s whole-file
writes) a file cut short. ``ResumePoint`` is a Tune callback whose ``get_state`` runs inside
that snapshot, after the search algorithm's files are written: it reads them back from staging
and writes them, with the result rows the trials reported lately, as one file under
``.raytune-hpo/`` (two slots, alternately, each written whole). ``resume`` then restores Ray's
files from the newest resume point that reads (``choose``) before Ray reads them.
"""

from __future__ import annotations

import fnmatch
import json
import pickle
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

import raytune_hpo.ray_compat as ray_compat
import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import RESUME_DIR, SEARCH_STATE_GLOBS, STATE_GLOB

SLOTS = ("resume-0.pkl", "resume-1.pkl")
FORMAT = 1
# Result rows kept in a resume point: those reported since this many snapshots ago. Ray copies
# a snapshot before it starts the next one's copy, so storage lags by fewer.
ROWS_WINDOW = 4


def session_of(name: str) -> str:
    """The session a Ray state file belongs to (``experiment_state-<session>.json``,
    ``searcher-state-<session>.pkl``, ...): the time the run's driver started."""
    return name.split("state-", 1)[1].rsplit(".", 1)[0] if "state-" in name else ""


def _session_files(names: list[str], session: str) -> list[str]:
    patterns = (STATE_GLOB, *SEARCH_STATE_GLOBS)
    return [
        n
        for n in names
        if session_of(n) == session and any(fnmatch.fnmatch(n, p) for p in patterns)
    ]


class ResumePoint(Callback):
    """Writes a resume point under ``<exp>/.raytune-hpo/`` at every snapshot of Ray's (see the
    module docstring). ``exp``: the sweep directory, local or a URI."""

    def __init__(self, exp: str) -> None:
        self.exp = exp
        self._reset()

    def _reset(self) -> None:
        self._staging: str | None = None
        self._count = 0
        self._rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._warned = False

    def __getstate__(self) -> dict:  # pickled into Ray's tuner.pkl: the address only
        return {"exp": self.exp}

    def __setstate__(self, state: dict) -> None:
        self.exp = state["exp"]
        self._reset()

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._reset()

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self._staging is None and trials:
            self._staging = ray_compat.staging_dir(trials[0])

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._rows[trial.trial_id].append((self._count, ray_compat.result_line(result)))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        """A trial that failed (its worker or node killed) runs again from its last checkpoint
        (``max_failures``): the rows it reported after that checkpoint are dropped from its
        ``result.json`` and ``progress.csv``, on storage and in staging (Ray's JSON logger would
        keep them and append the same epochs again)."""
        try:
            _trim_to_checkpoint(trial)
        except Exception as e:
            self._warn(f"could not trim the rows of trial {trial.trial_id}", e)

    def _warn(self, what: str, e: Exception) -> None:
        if not self._warned:
            self._warned = True
            print(
                f"raytune-hpo: warning: {what} in {self.exp} ({type(e).__name__}: {e})",
                file=sys.stderr,
                flush=True,
            )

    def get_state(self) -> None:
        """Ray calls this while it snapshots the sweep, after writing the experiment state and
        the searcher's; nothing is returned (Ray keeps no state of ours)."""
        if self._staging is not None:
            try:
                self._write(self._staging)
            except Exception as e:  # never the sweep's end: say it once
                self._warn("could not save a resume point (a resume relies on Ray's files)", e)
        return None

    def _write(self, staging_dir: str) -> None:
        staging = Path(staging_dir)
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        states = [n for n in names if fnmatch.fnmatch(n, STATE_GLOB)]
        if not states:
            return
        session = session_of(max(states))
        files = {n: (staging / n).read_bytes() for n in _session_files(names, session)}
        oldest = self._count - ROWS_WINDOW
        rows = {}
        for tid, kept in list(self._rows.items()):
            kept[:] = [(c, line) for c, line in kept if c >= oldest]
            if kept:
                rows[tid] = [line for _, line in kept]
            else:
                del self._rows[tid]
        point = {
            "format": FORMAT,
            "session": session,
            "count": self._count,
            "saved": time.time(),
            "files": files,
            "rows": rows,
        }
        slot = SLOTS[self._count % len(SLOTS)]
        storage.write_bytes(storage.join(self.exp, RESUME_DIR, slot), pickle.dumps(point))
        self._count += 1


def _trim_to_checkpoint(trial) -> None:
    from raytune_hpo.names import RESULT_FILE
    from raytune_hpo.run.snapshot import PROGRESS_FILE, progress_csv, whole_lines

    local = Path(trial.local_path, RESULT_FILE)
    if not local.is_file():
        return
    lines = whole_lines(local.read_text())
    checkpoint = trial.checkpoint
    name = checkpoint.path.rstrip("/").rsplit("/", 1)[-1] if checkpoint else None
    keep = 0
    for i, line in enumerate(lines):
        if name is not None and json.loads(line).get("checkpoint_dir_name") == name:
            keep = i + 1
    if keep == len(lines):
        return
    rows, csv = "".join(f"{x}\n" for x in lines[:keep]), progress_csv(lines[:keep])
    local.write_text(rows)
    Path(trial.local_path, PROGRESS_FILE).write_text(csv)
    fs = trial.storage.storage_filesystem
    for file, text in ((RESULT_FILE, rows), (PROGRESS_FILE, csv)):
        with fs.open_output_stream(f"{trial.path}/{file}") as f:
            f.write(text.encode())


@dataclass
class Point:
    """A resume point read back: Ray's files of one snapshot and the rows reported lately."""

    session: str
    count: int
    saved: float
    files: dict[str, bytes]
    rows: dict[str, list[str]] = field(default_factory=dict)
    slot: str = ""

    @property
    def state_name(self) -> str:
        return next(n for n in self.files if fnmatch.fnmatch(n, STATE_GLOB))

    @property
    def key(self) -> tuple[str, int]:
        return self.session, self.count


def read_points(exp: str) -> tuple[list[Point], list[str]]:
    """The resume points of a sweep directory that read, newest first, and the slots that do
    not (cut short, or of another format)."""
    points, bad = [], []
    for slot in SLOTS:
        path = storage.join(exp, RESUME_DIR, slot)
        if not storage.is_file(path):
            continue
        try:
            data = pickle.loads(storage.read_bytes(path))
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            point = Point(
                data["session"], data["count"], data["saved"], data["files"], data["rows"], slot
            )
            point.state_name  # noqa: B018 - a point without an experiment state is no point
        except Exception:
            bad.append(slot)
            continue
        points.append(point)
    return sorted(points, key=lambda p: p.key, reverse=True), bad


@dataclass
class Restored:
    """What ``restore`` put in place for Ray: the experiment state it will read (its file
    name and content), the rows the trials reported lately, and what was used, when it was not
    Ray's own files as they were (one clause, for the resume line)."""

    state_name: str
    state: dict
    rows: dict[str, list[str]]
    used: str | None = None


def _search_files(names: list[str], session: str) -> list[str]:
    return [n for n in _session_files(names, session) if not fnmatch.fnmatch(n, STATE_GLOB)]


def restore(exp: str, *, again: str) -> Restored:
    """Put the newest whole snapshot of the sweep at ``exp`` where Ray reads it: the newest
    resume point that reads when it is not older than Ray's files (its files written back
    where Ray's copies differ, Ray's files of later sessions moved into ``.raytune-hpo/``),
    else Ray's own files when they read. Neither: a ``UserError`` (``again``: the command that
    starts the sweep anew)."""
    import json

    names = storage.listdir(exp)
    ray_states = sorted(n for n in names if fnmatch.fnmatch(n, STATE_GLOB))
    newest = session_of(ray_states[-1]) if ray_states else None
    points, bad = read_points(exp)
    point = points[0] if points else None
    if point is not None and (newest is None or point.session >= newest):
        return _from_point(exp, names, point, bad)
    if newest is not None:
        files = _search_files(names, newest)
        data = {n: storage.read_bytes(storage.join(exp, n)) for n in [ray_states[-1], *files]}
        broken = [n for n, d in data.items() if not readable(d, n)]
        base = [n for n in files if not n.startswith("search_gen_state-")]  # the searcher's own
        if base and not broken:
            state = json.loads(data[ray_states[-1]])
            return Restored(ray_states[-1], state, {})
        if point is not None:  # Ray's newer files do not read: the last whole snapshot
            return _from_point(exp, names, point, bad)
        what = (
            "cannot be read (cut short by a kill while Ray copied it)"
            if base
            else "is missing: the sweep stopped before its first checkpoint"
        )
        raise UserError(
            "the searcher's saved state (searcher-state-*.pkl or basic-variant-state-*.json) "
            f"{what}; start the sweep again with {again}",
            source=storage.join(exp, broken[0]) if broken else exp,
        )
    raise UserError("no Ray Tune experiment state here to resume", source=exp)


def _from_point(exp: str, names: list[str], point: Point, bad: list[str]):
    import json

    differ: dict[str, str] = {}
    for name, data in point.files.items():
        path = storage.join(exp, name)
        if name not in names:
            differ[name] = "missing"
        else:
            old = storage.read_bytes(path)
            if old != data:
                differ[name] = "cut short" if not readable(old, name) else "older"
        if name in differ:
            storage.write_bytes(path, data)
    later = [
        n
        for n in names
        if session_of(n) > point.session and n in _session_files(names, session_of(n))
    ]
    for name in later:  # a later session that never saved a whole snapshot
        storage.move(storage.join(exp, name), storage.join(exp, RESUME_DIR, "superseded", name))
    used = None
    if differ or later or bad:
        when = time.strftime("%H:%M:%S", time.localtime(point.saved))
        parts = [f"{n} {why}" for n, why in sorted(differ.items())]
        parts += [f"{n} of a later run set aside" for n in later]
        if bad:
            parts.append(f"resume point {', '.join(bad)} unreadable")
        used = f"the resume point of {when} (Ray's {'; '.join(parts)})"
    return Restored(point.state_name, json.loads(point.files[point.state_name]), point.rows, used)


def readable(data: bytes, name: str) -> bool:
    """Whether one of Ray's state files reads (the experiment state is JSON; the search
    algorithm's are Ray's cloudpickle, ``*.json`` names included)."""
    try:
        if fnmatch.fnmatch(name, STATE_GLOB):
            import json

            json.loads(data)
        else:
            from ray import cloudpickle

            cloudpickle.loads(data)
    except Exception:
        return False
    return True


__all__ = [
    "SLOTS",
    "Point",
    "Restored",
    "ResumePoint",
    "read_points",
    "readable",
    "restore",
    "session_of",
]
