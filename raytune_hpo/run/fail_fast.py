"""Fail fast: a sweep whose trials keep failing stops, with one line, instead of running its
whole budget into the same traceback.

``FailFast`` is a Tune callback that counts how trials end (``fail_fast:`` in the sweep file):
the first ``no_result`` trials to fail did so before any trial reported a result (the trainable
cannot run: a bug, a missing file), or more than ``share`` of the ended trials failed once
``min_ended`` ended. It then ends the run as a Ctrl-C does (Tune saves the experiment state
with every trial as it is and the search unfinished), so that ``raytune-hpo resume`` after a
fix runs the rest of the budget; Ray's own ``FailureConfig(fail_fast=True)`` marks the search
finished instead. What stopped the sweep is written to ``fail_fast.json`` in the sweep
directory (``fail_fast-<time>.json``, one per run and resume): the run (or the resume) ends
with that line, naming the first failed trial's error
file and the last line of its traceback.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from typing import Any

from ray.tune import Callback

import raytune_hpo.ray_compat as compat
import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import BUDGET_ATTR, ERROR_FILE, FAIL_FAST_GLOB


class FailFast(Callback):
    """Stops the sweep when failed trials say it cannot go well (see the module)."""

    def __init__(self, rule: Any, exp_dir: str) -> None:
        self.rule, self.exp_dir = rule, exp_dir
        self.reason: str | None = None
        self.stopper = _Stop(self)  # where Tune's graceful stop is not at hand (a thread)
        self.graceful = True
        self._ended = self._failed = self._failed_blank = 0
        self._any_result = False
        self._first: tuple[str, str, str] | None = None  # trial id, error file, last line
        self._record = _record_of(exp_dir)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Each run and each resume records in a file of its own, named by when it started:
        Ray copies a resumed sweep's earlier files back over whatever is rewritten in place,
        so the newest file is this run's (``{}`` unless it failed fast)."""
        self._record = _record_of(self.exp_dir)
        storage.write_text(self._record, "{}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._any_result = True

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended += 1
        self._judge()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended += 1
        self._failed += 1
        if not trial.last_result.get(BUDGET_ATTR):
            self._failed_blank += 1
        if self._first is None:
            self._first = (trial.trial_id, *self._error_of(trial))
        self._judge()

    def _judge(self) -> None:
        if self.reason is not None:
            return
        rule, why = self.rule, None
        blank = rule.no_result and not self._any_result and self._failed_blank >= rule.no_result
        if blank:
            why = (
                f"the first {self._failed_blank} trial(s) failed before any trial reported a result"
            )
        elif (
            rule.share is not None
            and self._ended >= rule.min_ended
            and self._failed > rule.share * self._ended
        ):
            why = (
                f"{self._failed} of the {self._ended} trials that ended failed (more than "
                f"fail_fast.share {rule.share:g})"
            )
        if why is None:
            return
        tid, error_file, last = self._first or ("?", "?", "?")
        self.reason = (
            f"{why}; the first, {tid}: {last} (error file: {error_file}); fix it and continue "
            f"with `raytune-hpo resume {self.exp_dir}`"
        )
        storage.write_text(self._record, json.dumps({"stopped": self.reason}))
        # Tune says it saw a stop signal and how to restore with Tuner.restore; our line says
        # what happened and how to resume (init_ray sets the level back on the next run).
        logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
        self.graceful = compat.stop_tune_gracefully()

    def _error_of(self, trial) -> tuple[str, str]:
        """The trial's error file in the sweep directory and its traceback's last line."""
        _, trial_dir, _ = compat.trial_storage(trial)
        where = storage.join(self.exp_dir, posixpath.basename(trial_dir), ERROR_FILE)
        try:
            with open(trial.error_file) as f:
                text = f.read()
        except (OSError, TypeError):  # not written (yet): Ray's message in memory
            text = str(trial.get_error() or "")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return where, (lines[-1][:300] if lines else "no traceback recorded")


class _Stop:
    """``FailFast`` as a stopper of the whole sweep, for a run Tune cannot stop gracefully
    (not in the main thread): the search is then marked finished, as Ray's fail_fast does."""

    def __init__(self, watch: FailFast) -> None:
        self.watch = watch

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.watch.reason is not None and not self.watch.graceful


def _record_of(exp: str) -> str:
    """A run's own record, named by when it started (``fail_fast-<ns>.json``)."""
    return storage.join(exp, FAIL_FAST_GLOB.replace("*", f"{time.time_ns():020d}"))


def error(exp: str) -> UserError | None:
    """The line a sweep that failed fast ends with, from the newest run's record in its
    directory; None if that run did not fail fast."""
    records = storage.glob(exp, FAIL_FAST_GLOB)
    if not records:
        return None
    try:
        data = json.loads(storage.read_text(max(records, key=storage.name)))
    except (UserError, ValueError):
        return None
    reason = data.get("stopped") if isinstance(data, dict) else None
    return UserError(reason, field="fail_fast") if reason else None


__all__ = ["FailFast", "error"]
