"""Every private Ray name ``raytune_hpo.ray_compat`` relies on is still where it was: a Ray
upgrade that moves one fails here, naming it. Nothing here starts Ray."""

from __future__ import annotations

import signal
import threading

import pytest

import raytune_hpo.ray_compat as compat


def test_pbt_keeps_the_hooks_and_state_our_scheduler_uses():
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers.pbt import _PBTTrialState

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        metric="acc",
        mode="max",
        hyperparam_mutations={"lr": [0.1, 0.2]},
    )
    for name in compat.PBT_HOOKS:
        assert hasattr(pbt, name), f"PopulationBasedTraining.{name} is gone"
    state = _PBTTrialState.__new__(_PBTTrialState)
    _PBTTrialState.__init__(state, type("T", (), {"experiment_tag": "t"})())
    for name in compat.PBT_STATE_FIELDS:
        assert hasattr(state, name), f"_PBTTrialState.{name} is gone"
    assert compat.pbt_interval(pbt) == 60  # Ray's default
    with compat.pbt_mutations(pbt, lambda m: {}) as narrowed:
        assert pbt._hyperparam_mutations is narrowed == {}
    assert pbt._hyperparam_mutations == {"lr": [0.1, 0.2]}


def test_a_trials_storage_has_the_paths_we_read(tmp_path):
    from types import SimpleNamespace

    from ray.train._internal.storage import StorageContext

    storage = StorageContext(str(tmp_path), "exp", trial_dir_name="trial")
    fs, trial_dir, exp_dir = compat.trial_storage(SimpleNamespace(storage=storage))
    assert trial_dir == f"{exp_dir}/trial" and exp_dir.endswith("/exp")
    assert fs.get_file_info(str(tmp_path)).is_file is False


def test_tune_stops_gracefully_on_sigusr1_with_the_handler_we_look_for():
    from ray.tune.tune import _setup_signal_catching

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # a Tuner.fit before leaves Tune's
        assert not compat.stop_tune_gracefully()  # not Tune's handler: nothing raised
        event = _setup_signal_catching()
        handler = signal.getsignal(signal.SIGUSR1)
        assert compat.TUNE_STOP_HANDLER in handler.__qualname__, handler.__qualname__
        assert compat.stop_tune_gracefully() and event.is_set()
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_not_from_another_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(compat.stop_tune_gracefully()))
    t.start()
    t.join()
    assert out == [False]


@pytest.mark.parametrize(
    ("ours", "where", "name"),
    [
        ("CHECKPOINT_DIR_NAME", "ray.train.constants", "CHECKPOINT_DIR_NAME"),
        ("ERROR_FILE", "ray.tune.result", "EXPR_ERROR_FILE"),
    ],
)
def test_the_names_we_repeat_are_rays(ours, where, name):
    import importlib

    import raytune_hpo.names as names

    assert getattr(names, ours) == getattr(importlib.import_module(where), name)
