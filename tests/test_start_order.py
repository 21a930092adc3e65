"""Which pending trial gets a freed actor (``raytune_hpo.schedulers._start_order``): the newest,
so that the actors Ray is starting for older trials are not dropped mid-start."""

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from raytune_hpo.objectives import Objectives
from raytune_hpo.schedulers import create_scheduler


class Trials:
    """What a scheduler reads of Tune's controller to choose: its trials, oldest first."""

    def __init__(self, *statuses: str) -> None:
        self.trials = []
        for i, status in enumerate(statuses):
            trial = Trial("__fake", stub=True, trial_id=f"t{i}")
            trial.set_status(status)
            self.trials.append(trial)

    def get_trials(self):
        return self.trials


def schedulers():
    both = Objectives.from_fields(["a", "b"], ["max", "min"])
    return {
        "fifo": create_scheduler("fifo"),
        "asha": create_scheduler("asha", metric="m", mode="max", max_t=4),
        "median": create_scheduler("median", metric="m", mode="max"),
        "mo-asha": create_scheduler("asha", objectives=both, max_t=4),
    }


@pytest.mark.parametrize("name", ["fifo", "asha", "median", "mo-asha"])
def test_the_newest_pending_trial_runs_first_then_the_oldest_paused(name):
    scheduler = schedulers()[name]
    running = Trials(Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.PENDING, Trial.PAUSED)
    assert scheduler.choose_trial_to_run(running).trial_id == "t3"
    assert FIFOScheduler().choose_trial_to_run(running).trial_id == "t0"  # Ray's own order
    running.trials[3].set_status(Trial.TERMINATED)
    assert scheduler.choose_trial_to_run(running).trial_id == "t0"
    running.trials[0].set_status(Trial.RUNNING)
    assert scheduler.choose_trial_to_run(running).trial_id == "t2"  # paused: oldest first
    running.trials[2].set_status(Trial.TERMINATED)
    running.trials[4].set_status(Trial.TERMINATED)
    assert scheduler.choose_trial_to_run(running) is None
