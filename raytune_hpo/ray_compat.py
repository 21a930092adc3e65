"""Ray's private names that raytune-hpo relies on, in one place (``tests/test_ray_compat.py``
names each one when a Ray upgrade moves it). Each function says the Ray version it was written
for. Nothing here is imported at package import time; each function imports what it needs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any

# What our population-based training (``raytune_hpo.schedulers._pbt``) overrides or reads on
# Ray's ``PopulationBasedTraining`` (Ray 2.60): the exploit step, the new config of an exploit,
# the exploit's log line, the interval, the mutations and each trial's state.
PBT_HOOKS = (
    "_exploit",
    "_get_new_config",
    "_log_config_on_step",
    "_perturbation_interval",
    "_hyperparam_mutations",
    "_trial_state",
)
# The state PBT keeps per trial (Ray 2.60's ``_PBTTrialState``): what an exploit copies.
PBT_STATE_FIELDS = ("last_checkpoint", "last_result")
# The handler ``tune.run`` installs for SIGINT and SIGUSR1 (Ray 2.60, ``ray/tune/tune.py``).
TUNE_STOP_HANDLER = "signal_interrupt_tune_run"


def pbt_interval(scheduler: Any) -> int:
    """PBT's ``perturbation_interval`` (Ray 2.60)."""
    return scheduler._perturbation_interval


def pbt_state(scheduler: Any, trial: Any) -> Any:
    """PBT's state of ``trial``: ``last_checkpoint`` (what an exploit copies, a checkpoint or a
    pending save) and ``last_result`` (the result it was taken with) (Ray 2.60)."""
    return scheduler._trial_state[trial]


@contextlib.contextmanager
def pbt_mutations(scheduler: Any, narrow: Callable[[dict[str, Any]], dict[str, Any]]):
    """PBT's ``hyperparam_mutations`` replaced by ``narrow(mutations)`` for a while (an exploit
    that must leave a trial's inactive parameters alone) (Ray 2.60). Yields that dict, which
    the caller may narrow further in place."""
    full = scheduler._hyperparam_mutations
    scheduler._hyperparam_mutations = narrowed = narrow(full)
    try:
        yield narrowed
    finally:
        scheduler._hyperparam_mutations = full


def trial_storage(trial: Any) -> tuple[Any, str, str]:
    """Where a trial's files live on the sweep's storage (not the driver's staging copy): the
    pyarrow file system, the trial's directory and the experiment's, as paths on it (Ray 2.60:
    ``Trial.storage``, a ``ray.train._internal.storage.StorageContext``)."""
    storage = trial.storage
    return storage.storage_filesystem, storage.trial_fs_path, storage.experiment_fs_path


def stop_tune_gracefully() -> bool:
    """End the running ``Tuner.fit`` as a Ctrl-C would: Tune saves the experiment state with
    every trial as it is (resumable: nothing marked finished) and returns. Only from the
    thread ``tune.run`` installed its handler in (the main thread), and only when that handler
    is Tune's; False when it is not (Ray 2.60: ``tune.run`` handles SIGUSR1 like SIGINT)."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(usr1)
    if TUNE_STOP_HANDLER not in getattr(handler, "__qualname__", ""):
        return False
    signal.raise_signal(usr1)  # Python runs the handler before raise_signal returns
    return True


__all__ = [
    "PBT_HOOKS",
    "PBT_STATE_FIELDS",
    "TUNE_STOP_HANDLER",
    "pbt_interval",
    "pbt_mutations",
    "pbt_state",
    "stop_tune_gracefully",
    "trial_storage",
]
