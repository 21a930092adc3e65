"""A sweep never hangs and never lies: per-trial time limits, pending resources, and an honest
account of how each trial ended.

Ray Tune has no hard per-trial timeout (ray-project/ray#47475): a trainable that reports once
and then blocks (a dead data loader, a deadlock) holds its slot until the whole sweep's
``time_budget_s``. ``TrialWatch`` is a Tune callback that looks at the running trials once a
second and ends a trial that ran longer than ``trial_timeout_s`` (wall clock while running) or
reported nothing for ``stall_timeout_s``: its actor is killed, so Ray records the trial as
failed (retried under ``max_failures``), tells the searcher it failed and gives its slot to the
next trial. A sweep whose trials wait for resources that never appear (no trial running, some
pending, for ``pending_timeout_s``) is stopped and ends with one line naming the resources.
Trials cut off by ``time_budget_s`` are recorded as such. What it saw goes to
``trial_ends.json`` in the sweep directory, where ``raytune_hpo.results.table`` reads it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback, Stopper

import raytune_hpo.storage as storage
from raytune_hpo import ray_compat
from raytune_hpo.names import TRIAL_ENDS
from raytune_hpo.results.trial_ends import CUT, STALLED, TIMEOUT

CHECK_EVERY_S = 1.0


@dataclass
class _Clock:
    running_since: float | None = None  # when it last started running
    ran_s: float = 0.0  # running time before that
    last_news: float = 0.0  # its start or its last result


@dataclass
class Limits:
    trial_timeout_s: float | None = None
    stall_timeout_s: float | None = None
    pending_timeout_s: float | None = None
    time_budget_s: float | None = None
    resources: dict[str, float] = field(default_factory=dict)  # per trial, for the message
    ranks: int = 1  # the trial's processes (workers.count): resources is all of theirs

    @classmethod
    def of(cls, spec: Any) -> Limits:
        """A sweep's limits; what a trial asks for is all of its ranks' (``workers:``: ranks x
        per-rank resources), else its ``resources:``."""
        from raytune_hpo.run.resources import demand

        asked = demand(spec)
        whole = asked.total
        return cls(
            trial_timeout_s=spec.trial_timeout_s,
            stall_timeout_s=spec.stall_timeout_s,
            pending_timeout_s=spec.pending_timeout_s,
            time_budget_s=spec.time_budget_s,
            resources={"CPU": whole.cpu, "GPU": whole.gpu, "memory GB": whole.memory_gb or 0},
            ranks=asked.ranks,
        )


class PendingStop(Stopper):
    """Stops the whole sweep once ``TrialWatch`` saw resources that never appear."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.reason is not None


class TrialWatch(Callback):
    """Per-trial timeouts, the pending bound and the time-budget record (see the module)."""

    def __init__(self, limits: Limits, exp_dir: str) -> None:
        self.limits, self.exp_dir = limits, exp_dir
        self.stopper = PendingStop()
        self.ends: dict[str, dict[str, str]] = {}
        self._clocks: dict[str, _Clock] = {}
        self._live: set[str] = set()
        self._start = time.monotonic()
        self._last_check = 0.0
        self._idle_since: float | None = None

    # ------------------------------------------------------------------ Tune hooks
    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._start = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._clock(trial.trial_id).last_news = time.monotonic()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._live.discard(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._live.discard(trial.trial_id)

    def on_step_begin(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if now - self._last_check < CHECK_EVERY_S:
            return
        self._last_check = now
        running = [t for t in trials if t.status == "RUNNING"]
        self._live = {t.trial_id for t in trials if t.status in ("RUNNING", "PAUSED", "PENDING")}
        self._tick(running, now)
        for t in running:
            reason = self._overdue(t.trial_id, now)
            if reason is not None:
                self._end(t, reason)
        self._check_pending(trials, running, now)

    def on_experiment_end(self, trials, **info) -> None:
        budget = self.limits.time_budget_s
        if budget is not None and time.monotonic() - self._start >= budget * 0.999:
            for t in trials:
                if t.trial_id in self._live and t.status == "TERMINATED":
                    self.ends.setdefault(
                        t.trial_id,
                        {
                            "status": "CUT",
                            "reason": f"{CUT}: cut off when time_budget_s {budget:g} s ran out",
                        },
                    )
        self._save()

    # ------------------------------------------------------------------ the checks
    def _clock(self, trial_id: str) -> _Clock:
        return self._clocks.setdefault(trial_id, _Clock(last_news=time.monotonic()))

    def _tick(self, running: list, now: float) -> None:
        """Start the clocks of trials that run now, stop those of trials that stopped."""
        ids = {t.trial_id for t in running}
        for tid, c in self._clocks.items():
            if c.running_since is not None and tid not in ids:
                c.ran_s += now - c.running_since
                c.running_since = None
        for tid in ids:
            c = self._clock(tid)
            if c.running_since is None:
                c.running_since, c.last_news = now, now

    def _overdue(self, trial_id: str, now: float) -> str | None:
        c, lim = self._clocks[trial_id], self.limits
        ran = c.ran_s + (now - (c.running_since or now))
        if lim.trial_timeout_s is not None and ran > lim.trial_timeout_s:
            return f"{TIMEOUT}: ran longer than trial_timeout_s {lim.trial_timeout_s:g} s"
        if lim.stall_timeout_s is not None and now - c.last_news > lim.stall_timeout_s:
            return f"{STALLED}: no result for stall_timeout_s {lim.stall_timeout_s:g} s"
        return None

    def _end(self, trial, reason: str) -> None:
        """Kill the trial's actor: Ray records the failure and frees the slot."""
        import ray

        actor = ray_compat.trial_actor(trial)
        if actor is None or trial.trial_id in self.ends:
            return
        self.ends[trial.trial_id] = {"status": "ERROR", "reason": reason}
        self._clocks.pop(trial.trial_id, None)
        self._save()
        ray.kill(actor, no_restart=True)

    def _check_pending(self, trials: list, running: list, now: float) -> None:
        bound = self.limits.pending_timeout_s
        pending = [t for t in trials if t.status == "PENDING"]
        if running or not pending or bound is None:
            self._idle_since = None
            return
        self._idle_since = self._idle_since or now
        if now - self._idle_since > bound and self.stopper.reason is None:
            self.stopper.reason = pending_message(self.limits, bound)
            self._save()

    def _save(self) -> None:
        if self.ends or self.stopper.reason:
            data = {"trials": self.ends, "stopped": self.stopper.reason}
            storage.write_text(storage.join(self.exp_dir, TRIAL_ENDS), json.dumps(data))


def pending_message(limits: Limits, bound: float) -> str:
    want = ", ".join(f"{k} {v:g}" for k, v in limits.resources.items() if v) or "its resources"
    if limits.ranks > 1:
        want = f"{want} in all, over {limits.ranks} ranks"
    try:
        import ray

        have = ray.cluster_resources()
        seen = ", ".join(f"{k} {have.get(k, 0):g}" for k in ("CPU", "GPU", "memory") if k in have)
    except Exception:  # Ray gone already: say what was asked only
        seen = "unknown"
    return (
        f"no trial could start for {bound:g} s: the resources a trial asks for ({want}) never "
        f"appeared (the cluster has {seen}); raise pending_timeout_s if nodes are still coming"
    )


__all__ = ["Limits", "PendingStop", "TrialWatch", "pending_message"]
