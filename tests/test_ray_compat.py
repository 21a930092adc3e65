"""raytune_hpo.ray_compat, the one module that touches Ray's private names: each function on
Ray's real objects (built in process, no Ray started), and each private name checked by name,
so that a Ray upgrade that moves one fails here saying which."""

from __future__ import annotations

import json

import pytest

from raytune_hpo import ray_compat


@pytest.fixture
def trial(tmp_path):
    """A trial's state (its JSON and its run metadata's) as Ray writes them."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment.trial import Trial

    storage = StorageContext(str(tmp_path), "exp", trial_dir_name="t")
    state, meta = Trial("train", stub=True, storage=storage, config={"x": 1}).get_json_state()
    return json.loads(state), meta, storage


def test_the_private_names_we_use_are_where_ray_260_had_them():
    from ray.air._internal import json as air_json
    from ray.train import constants
    from ray.train._internal import session
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.storage import StorageContext
    from ray.tune.trainable import metadata

    assert hasattr(metadata, "_TrainingRunMetadata")
    assert hasattr(session, "_TrainingResult")
    assert hasattr(constants, "_get_ray_train_session_dir")
    assert hasattr(air_json, "SafeFallbackEncoder")
    manager = _CheckpointManager(None)
    assert hasattr(manager, "_checkpoint_results") and hasattr(manager, "_latest_checkpoint_result")
    assert isinstance(StorageContext.experiment_driver_staging_path, property)


def test_checkpoint_results_round_trip_through_the_state(trial, tmp_path):
    _, meta_json, storage = trial
    meta = ray_compat.load_run_metadata(meta_json)
    assert ray_compat.checkpoint_results(meta) == (None, [])
    from ray.train._internal.checkpoint_manager import _CheckpointManager

    meta.checkpoint_manager = _CheckpointManager(None)
    fs = storage.storage_filesystem
    one = ray_compat.checkpoint_result(str(tmp_path / "c1"), fs, {"training_iteration": 1})
    two = ray_compat.checkpoint_result(str(tmp_path / "c2"), fs, {"training_iteration": 2})
    ray_compat.set_checkpoint_results(meta, two, [one, two])
    again = ray_compat.load_run_metadata(meta.get_json_state())  # the cached JSON was dropped
    latest, kept = ray_compat.checkpoint_results(again)
    assert latest.checkpoint.path == str(tmp_path / "c2")
    assert [r.metrics["training_iteration"] for r in kept] == [1, 2]


def test_the_trials_storage_context_is_read_and_changed_in_its_state(trial):
    state, _, storage = trial
    assert ray_compat.trial_staging_stamp(state) == storage._timestamp
    assert ray_compat.raise_checkpoint_index(state, 4)
    assert not ray_compat.raise_checkpoint_index(state, 2)  # never lowered
    from ray.tune.utils.serialization import TuneFunctionDecoder

    restored = json.loads(json.dumps(state), cls=TuneFunctionDecoder, allow_cloudpickle=True)
    assert restored["storage"].current_checkpoint_index == 4


def test_a_result_line_is_what_rays_json_logger_writes(tmp_path):
    import numpy as np

    result = {"score": np.float32(0.5), "n": 3, "config": {"f": print}}
    line = ray_compat.result_line(result)
    assert "\n" not in line and json.loads(line)["n"] == 3


def test_a_changed_private_name_fails_naming_it():
    with pytest.raises(ray_compat.RayMoved, match="_CheckpointManager._checkpoint_results"):
        ray_compat.checkpoint_results(type("Meta", (), {"checkpoint_manager": object()})())
    with pytest.raises(ray_compat.RayMoved, match="Trial.storage._timestamp"):
        ray_compat.trial_staging_stamp({"storage": "gone"})
    with pytest.raises(ray_compat.RayMoved, match="experiment_driver_staging_path"):
        ray_compat.staging_dir(object())
