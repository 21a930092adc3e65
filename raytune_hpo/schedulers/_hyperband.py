"""HyperBand schedulers that survive ``Tuner.restore`` (ray-project/ray#39900).

Ray does not checkpoint HyperBand's brackets: a restored sweep gets the scheduler as it was at
the start, and the unfinished trials it re-adds land in fresh brackets at the wrong rung,
where paused ones wait forever (seen with Ray 2.60: "9 PAUSED | 18 TERMINATED", no progress).
Here a trial that already reported results before the restore is kept out of the brackets:
it continues from its checkpoint to the full budget, as under FIFO. Nothing finished is lost
or run again; trials not yet started go through the brackets as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandForBOHB, HyperBandScheduler, TrialScheduler

from raytune_hpo import ray_compat
from raytune_hpo.names import BUDGET_ATTR

if TYPE_CHECKING:  # the scheduler the mixin comes before, for the type checker only
    _Base = HyperBandScheduler
else:
    _Base = object


class _RestoreSafe(_Base):
    """Mixin for HyperBand schedulers: restored, already-started trials bypass the brackets."""

    def _restored_set(self) -> set[str]:
        if not hasattr(self, "_restored_ids"):
            self._restored_ids: set[str] = set()
        return self._restored_ids

    def _is_restored(self, trial: Trial) -> bool:
        return trial.trial_id in self._restored_set()

    def on_trial_add(self, tune_controller, trial: Trial):
        if (trial.last_result or {}).get(BUDGET_ATTR, 0) > 0:
            self._restored_set().add(trial.trial_id)
            return None
        return super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if self._is_restored(trial):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        if self._is_restored(trial):
            return None
        return super().on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial: Trial):
        if self._is_restored(trial):
            return None
        return super().on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: Trial):
        # HyperBand stops a PAUSED trial (no live actor), and Ray 2.60's controller then never
        # re-snapshots it: the experiment state would keep "PAUSED" for a finished trial, so
        # `results`, the report and `resume` would take it for unfinished. Ask for a snapshot.
        ray_compat.mark_trial_to_checkpoint(tune_controller, trial)
        if self._is_restored(trial):
            return None
        return super().on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller, *args, **kwargs):
        for trial in tune_controller.get_trials():
            if self._is_restored(trial) and trial.status in (Trial.PENDING, Trial.PAUSED):
                return trial
        return super().choose_trial_to_run(tune_controller, *args, **kwargs)


class RestorableHyperBand(_RestoreSafe, HyperBandScheduler):
    """Synchronous HyperBand (Li et al., JMLR 2018) that can be restored."""


class RestorableHyperBandForBOHB(_RestoreSafe, HyperBandForBOHB):
    """HyperBand as BOHB runs it (Falkner et al., 2018) that can be restored."""


__all__ = ["RestorableHyperBand", "RestorableHyperBandForBOHB"]
