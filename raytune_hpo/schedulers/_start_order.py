"""Which pending trial gets a freed actor: the newest.

Ray Tune (2.60) asks the scheduler which pending trial to run next and gives it a cached actor
when one is free (``reuse_actors``); a trial whose own actor is still starting then drops that
actor, and its worker process is killed mid-start. Ray's first-in-first-out choice names the
oldest pending trial, which is the one whose actor Ray started first: with short trials every
finished trial kills a starting actor, and the pool never grows to the sweep's slots (16 slots
of one-second trials on 2 cores: 30-38 worker processes started, 5-6 ever ran a trial;
``docs/performance.md``). Naming the newest pending trial instead gives the freed actor to a
trial whose request Ray has not granted yet, so the actors already starting live to run their
own trials. Every trial still runs; paused trials keep Ray's order.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler


class NewestPendingFirst:
    """A scheduler mixin: ``choose_trial_to_run`` names the newest pending trial, then the
    oldest paused one (Ray's FIFO order for those)."""

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        for trial in reversed(trials):
            if trial.status == Trial.PENDING:
                return trial
        for trial in trials:
            if trial.status == Trial.PAUSED:
                return trial
        return None


class FIFO(NewestPendingFirst, FIFOScheduler):
    """Ray's FIFO scheduler, starting the newest pending trial first."""


class ASHA(NewestPendingFirst, ASHAScheduler):
    """Ray's ASHA (Li et al., 2020), starting the newest pending trial first."""


__all__ = ["ASHA", "FIFO", "NewestPendingFirst"]
