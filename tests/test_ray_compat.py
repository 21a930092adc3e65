"""Every private Ray name raytune-hpo uses is in ``raytune_hpo/ray_compat.py`` and still exists
in the installed Ray: when an upgrade moves one, the failing case is named after the symbol
(``-k`` selects it) and says which function of ``ray_compat`` follows it. And no other module
of the package uses a private Ray name (read from the source with ``ast``). No Ray is started."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from raytune_hpo import ray_compat

PACKAGE = Path(__file__).resolve().parents[1] / "raytune_hpo"


def _attr(module: str, *names: str):
    obj = importlib.import_module(module)
    for name in names:
        obj = getattr(obj, name)
    return obj


def _instance_attrs(factory, *names: str) -> None:
    obj = factory()
    missing = [n for n in names if not hasattr(obj, n)]
    assert not missing, f"{type(obj).__name__} has no {missing}"


def _variant_generator():
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator()


def _pbt():
    from ray.tune.schedulers import PopulationBasedTraining

    return PopulationBasedTraining(
        time_attr="training_iteration", hyperparam_mutations={"x": [1, 2]}
    )


def _checkpoint_manager():
    from ray.train import CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager

    return _CheckpointManager(checkpoint_config=CheckpointConfig())


def _storage_context():
    import tempfile

    from ray.train._internal.storage import StorageContext

    return StorageContext(tempfile.gettempdir(), "exp", trial_dir_name="t")


def _source_has(obj, text: str) -> None:
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", obj))
    assert text in inspect.getsource(obj), f"{name} no longer mentions {text!r}"


def _flag(command: str, flag: str) -> None:
    from ray.scripts import scripts

    options = {o for p in getattr(scripts, command).params for o in p.opts}
    assert flag in options, f"`ray {command}` has no {flag}"


# (the symbol as Ray 2.60 names it, the ray_compat name that uses it, a check that it exists)
SYMBOLS = [
    (
        "ray._private.runtime_env.packaging.GCS_STORAGE_MAX_SIZE",
        "upload_limit",
        lambda: _attr("ray._private.runtime_env.packaging", "GCS_STORAGE_MAX_SIZE"),
    ),
    (
        "ray._private.runtime_env.packaging.create_package",
        "package_size",
        lambda: _attr("ray._private.runtime_env.packaging", "create_package"),
    ),
    (
        ray_compat.AUTH_SETUP_LOGGER,
        "AUTH_SETUP_LOGGER",
        lambda: importlib.import_module(ray_compat.AUTH_SETUP_LOGGER),
    ),
    (
        ray_compat.HTTP_AUTH_LOGGER,
        "HTTP_AUTH_LOGGER",
        lambda: _source_has(
            importlib.import_module(ray_compat.HTTP_AUTH_LOGGER), "no token was found"
        ),
    ),
    (
        "ray._common.constants.HEAD_NODE_RESOURCE_NAME",
        "HEAD_NODE_RESOURCE",
        lambda: _eq(
            _attr("ray._common.constants", "HEAD_NODE_RESOURCE_NAME"), "HEAD_NODE_RESOURCE"
        ),
    ),
    (
        f"ray start {ray_compat.AGENT_PORT_FLAG}",
        "AGENT_PORT_FLAG",
        lambda: _flag("start", ray_compat.AGENT_PORT_FLAG),
    ),
    (
        "ray/dashboard/dashboard.py --log-dir",
        "head_log_dir",
        lambda: _source_has(importlib.import_module("ray.dashboard.dashboard"), '"--log-dir"'),
    ),
    (
        "ray/dashboard/agent.py 'Failed to start HTTP server'",
        "agent_port_taken",
        lambda: _source_has(
            importlib.import_module("ray.dashboard.agent"), "Failed to start HTTP server"
        ),
    ),
    (
        "ray.tune.trainable.metadata._TrainingRunMetadata.from_json_state",
        "load_run_metadata",
        lambda: _attr("ray.tune.trainable.metadata", "_TrainingRunMetadata", "from_json_state"),
    ),
    (
        "ray.train._internal.session._TrainingResult",
        "checkpoint_result",
        lambda: _attr("ray.train._internal.session", "_TrainingResult"),
    ),
    (
        "_CheckpointManager._latest_checkpoint_result, ._checkpoint_results",
        "checkpoint_results, set_checkpoint_results",
        lambda: _instance_attrs(
            _checkpoint_manager,
            "_latest_checkpoint_result",
            "_checkpoint_results",
            "latest_checkpoint_result",
        ),
    ),
    (
        "StorageContext._timestamp, .current_checkpoint_index",
        "trial_staging_stamp, raise_checkpoint_index",
        lambda: _instance_attrs(_storage_context, "_timestamp", "current_checkpoint_index"),
    ),
    (
        "StorageContext.experiment_driver_staging_path",
        "staging_dir",
        lambda: _attr(
            "ray.train._internal.storage", "StorageContext", "experiment_driver_staging_path"
        ),
    ),
    (
        "ray.train.constants._get_ray_train_session_dir",
        "session_staging_dir",
        lambda: _attr("ray.train.constants", "_get_ray_train_session_dir"),
    ),
    (
        "ray.air._internal.json.SafeFallbackEncoder",
        "result_line",
        lambda: _attr("ray.air._internal.json", "SafeFallbackEncoder"),
    ),
    (
        "ResultGrid._experiment_analysis",
        "result_grid_trials",
        lambda: _source_has(
            _attr("ray.tune", "ResultGrid", "__init__"), "self._experiment_analysis"
        ),
    ),
    (
        "Trial.temporary_state.ray_actor",
        "trial_actor",
        lambda: _instance_attrs(
            _attr("ray.tune.experiment.trial", "_TemporaryTrialState"), "ray_actor"
        ),
    ),
    (
        "ray.train.v2._internal.exceptions.WorkerGroupStartupTimeoutError",
        "is_worker_group_startup_timeout",
        lambda: _attr("ray.train.v2._internal.exceptions", "WorkerGroupStartupTimeoutError"),
    ),
    (
        "ray.train._internal.session.get_session().storage.trial_fs_path",
        "session_trial_storage",
        lambda: [
            _attr("ray.train._internal.session", "get_session"),
            _instance_attrs(_storage_context, "storage_filesystem", "trial_fs_path"),
        ],
    ),
    (
        "ray.train.v2._internal.execution.context.TrainContext.checkpoint",
        "seed_train_checkpoint",
        lambda: [
            _attr("ray.train.v2._internal.execution.context", "get_train_context"),
            _source_has(
                _attr("ray.train.v2._internal.execution.context", "TrainContext", "get_checkpoint"),
                "self.checkpoint",
            ),
            _source_has(
                _attr("ray.train.v2._internal.execution.context", "TrainContext", "get_checkpoint"),
                "self.report_order_condition",
            ),
        ],
    ),
    (
        "ray._private.accelerators.get_accelerator_manager_for_resource",
        "gpus_here",
        lambda: _attr("ray._private.accelerators", "get_accelerator_manager_for_resource"),
    ),
    (
        "TuneController._mark_trial_to_checkpoint",
        "mark_trial_to_checkpoint",
        lambda: _attr(
            "ray.tune.execution.tune_controller", "TuneController", "_mark_trial_to_checkpoint"
        ),
    ),
    (
        "ray.tune.experiment._convert_to_experiment_list",
        "experiment_list",
        lambda: _attr("ray.tune.experiment", "_convert_to_experiment_list"),
    ),
    (
        "BasicVariantGenerator._points_to_evaluate, ._live_trials, ._finished, ._metric",
        "add_points_to_evaluate, forget_live_trial, reopen_variant_generator",
        lambda: _instance_attrs(
            _variant_generator, "_points_to_evaluate", "_live_trials", "_finished", "_metric"
        ),
    ),
    (
        "Searcher._metric, ._mode",
        "set_metric_mode",
        lambda: _instance_attrs(
            _attr("ray.tune.search", "Searcher"), *ray_compat.SEARCHER_METRIC_ATTRS
        ),
    ),
    (
        "PopulationBasedTraining._perturbation_interval",
        "pbt_interval",
        lambda: _instance_attrs(_pbt, "_perturbation_interval"),
    ),
    (
        "PopulationBasedTraining._exploit, ._get_new_config, ._log_config_on_step",
        "ExploitHook",
        lambda: _instance_attrs(_pbt, "_exploit", "_get_new_config", "_log_config_on_step"),
    ),
    (
        "PopulationBasedTraining._trial_state, ._hyperparam_mutations",
        "pbt_state, pbt_mutations",
        lambda: _instance_attrs(_pbt, "_trial_state", "_hyperparam_mutations"),
    ),
    (
        "ray.air._internal.usage.tag_callbacks, ._count_callbacks, .record_extra_usage_tag",
        "callbacks_tagged_by_name, callback_counts",
        lambda: [
            _attr("ray.air._internal.usage", name)
            for name in ("tag_callbacks", "_count_callbacks", "record_extra_usage_tag", "TagKey")
        ],
    ),
    (
        "LoggerCallback._restore_from_remote",
        "RestoreHook",
        lambda: _attr("ray.tune.logger", "LoggerCallback", "_restore_from_remote"),
    ),
]


def _eq(value, name: str) -> None:
    assert value == getattr(ray_compat, name), f"Ray says {value!r}"


@pytest.mark.parametrize(("symbol", "user", "check"), SYMBOLS, ids=[s[0] for s in SYMBOLS])
def test_each_private_ray_name_still_exists(symbol, user, check):
    import ray

    try:
        check()
    except (ImportError, AttributeError, AssertionError, TypeError) as e:
        pytest.fail(
            f"Ray {ray.__version__} moved or changed {symbol} (raytune_hpo.ray_compat.{user}, "
            f"written for Ray {ray_compat.WRITTEN_FOR}): {type(e).__name__}: {e}"
        )


def test_the_ray_installed_is_the_one_ray_compat_was_written_for():
    import ray

    assert ray.__version__ == ray_compat.WRITTEN_FOR


def test_every_function_names_the_ray_it_was_written_for():
    for name in set(ray_compat.__all__) - {"changed", "RayMoved"}:  # ours: the error
        obj = getattr(ray_compat, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__ and "Ray 2.60" in obj.__doc__, name
    lines = (PACKAGE / "ray_compat.py").read_text().splitlines()
    for name in ("AUTH_SETUP_LOGGER", "HTTP_AUTH_LOGGER", "HEAD_NODE_RESOURCE", "AGENT_PORT_FLAG"):
        at = next(i for i, ln in enumerate(lines) if ln.startswith(f"{name} ="))
        start = at
        while lines[start - 1].startswith("#"):
            start -= 1
        assert "Ray 2.60" in "\n".join(lines[start:at]), f"{name}: no comment naming Ray 2.60"


def test_the_helpers_do_what_their_callers_rely_on():
    from ray.tune.search import BasicVariantGenerator, Searcher

    s = Searcher()
    ray_compat.set_metric_mode(s, "loss", None)
    ray_compat.set_metric_mode(s, None, "min")
    assert (s.metric, s.mode) == ("loss", "min")
    g = BasicVariantGenerator(points_to_evaluate=[{"x": 1}])
    ray_compat.add_points_to_evaluate(g, [{"x": 2}])
    assert g._points_to_evaluate == [{"x": 1}, {"x": 2}]
    g._live_trials.add("t1")
    ray_compat.forget_live_trial(g, "t1")
    assert not g._live_trials
    g.set_finished()
    ray_compat.reopen_variant_generator(g)
    assert not g.is_finished() and g.metric is None
    assert ray_compat.pbt_interval(_pbt()) == 60.0  # Ray's default
    assert ray_compat.trial_actor(object()) is None
    assert ray_compat.result_grid_trials(object()) is None
    with pytest.raises(RuntimeError, match=r"changed _CheckpointManager.* .*ray_compat"):
        ray_compat.checkpoint_results(object())


def test_the_agent_log_reading_finds_the_port_it_could_not_bind(tmp_path):
    line = (
        "2026-01-01 00:00:00,000\tERROR agent.py:233 -- Failed to start HTTP server with "
        "exception: [Errno 98] error while attempting to bind on address ('10.0.0.1', 52365): "
        "address already in use. The agent will stay alive but the HTTP service will be disabled."
    )
    assert ray_compat.agent_port_taken(tmp_path) is None  # no log
    (tmp_path / ray_compat.AGENT_LOG).write_text("INFO all well\n")
    assert ray_compat.agent_port_taken(tmp_path) is None
    (tmp_path / ray_compat.AGENT_LOG).write_text(f"INFO starting\n{line}\n")
    assert ray_compat.agent_port_taken(tmp_path) == 52365


# ------------------------------------------------------------ nothing private elsewhere
# Underscored attributes of Ray's objects the package has used; any use outside ray_compat is
# one too many. `_metric` / `_mode` are Ray's Searcher convention for subclasses: allowed on
# `self` in a Searcher subclass, never on another object.
PRIVATE_ATTRS = {
    "_points_to_evaluate",
    "_live_trials",
    "_finished",
    "_perturbation_interval",
    "_experiment_analysis",
    "_mark_trial_to_checkpoint",
    "_latest_checkpoint_result",
    "_checkpoint_results",
    "_restore_from_remote",
    "_log_config_on_step",
    "_exploit",
    "_get_new_config",
    "_hyperparam_mutations",
    "_trial_state",
    "temporary_state",
}
SELF_ONLY = set(ray_compat.SEARCHER_METRIC_ATTRS)


def private_ray_uses(source: str) -> list[str]:
    """Each private Ray name ``source`` uses, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ray" and any(
                    p.startswith("_") for p in a.name.split(".")
                ):
                    found.append(f"{line}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            parts = node.module.split(".")
            if any(p.startswith("_") for p in parts) or any(
                a.name.startswith("_") for a in node.names
            ):
                found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute):
            on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
            if node.attr in PRIVATE_ATTRS or (node.attr in SELF_ONLY and not on_self):
                found.append(f"{line}: .{node.attr}")
        elif (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in PRIVATE_ATTRS
        ):
            found.append(f"{line}: def {node.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith("ray.") and "._" in text or "__internal_head__" in text:
                found.append(f"{line}: {text!r}")
    return found


def test_no_module_but_ray_compat_uses_a_private_ray_name():
    uses = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "ray_compat.py" and path.parent == PACKAGE:
            continue
        found = private_ray_uses(path.read_text())
        if found:
            uses[str(path.relative_to(PACKAGE.parent))] = found
    assert not uses, f"private Ray names outside raytune_hpo/ray_compat.py: {uses}"


def test_the_scan_catches_each_kind_of_private_use():
    snippet = """
import ray._private.worker
from ray.train._internal.session import x
from ray.tune.experiment import _convert_to_experiment_list
quiet = {"ray._private.authentication.authentication_token_setup": 1}
head = "node:__internal_head__"
searcher.inner._metric = "loss"
gen._live_trials.discard(1)
self._metric = "ok: a Searcher subclass's own"
class Hook:
    def _restore_from_remote(self, name, trial): ...
"""
    found = private_ray_uses(snippet)
    lines = {int(f.split(":")[0]) for f in found}
    assert lines == {2, 3, 4, 5, 6, 7, 8, 11}, found  # 9, self._metric, is allowed


@pytest.fixture
def trial(tmp_path):
    """A trial's state (its JSON and its run metadata's) as Ray writes them."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment.trial import Trial

    storage = StorageContext(str(tmp_path), "exp", trial_dir_name="t")
    state, meta = Trial("train", stub=True, storage=storage, config={"x": 1}).get_json_state()
    return json.loads(state), meta, storage


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


def test_pbt_keeps_the_hooks_and_state_our_scheduler_uses():
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers.pbt import _PBTTrialState

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        metric="acc",
        mode="max",
        hyperparam_mutations={"lr": [0.1, 0.2]},
    )
    for name in ray_compat.PBT_HOOKS:
        assert hasattr(pbt, name), f"PopulationBasedTraining.{name} is gone"
    state = _PBTTrialState.__new__(_PBTTrialState)
    _PBTTrialState.__init__(state, type("T", (), {"experiment_tag": "t"})())
    for name in ray_compat.PBT_STATE_FIELDS:
        assert hasattr(state, name), f"_PBTTrialState.{name} is gone"
    assert ray_compat.pbt_interval(pbt) == 60  # Ray's default
    with ray_compat.pbt_mutations(pbt, lambda m: {}) as narrowed:
        assert pbt._hyperparam_mutations is narrowed == {}
    assert pbt._hyperparam_mutations == {"lr": [0.1, 0.2]}


def test_a_trials_storage_has_the_paths_we_read(tmp_path):
    from types import SimpleNamespace

    from ray.train._internal.storage import StorageContext

    storage = StorageContext(str(tmp_path), "exp", trial_dir_name="trial")
    fs, trial_dir, exp_dir = ray_compat.trial_storage(SimpleNamespace(storage=storage))
    assert trial_dir == f"{exp_dir}/trial" and exp_dir.endswith("/exp")
    assert fs.get_file_info(str(tmp_path)).is_file is False


def test_tune_stops_gracefully_on_sigusr1_with_the_handler_we_look_for():
    from ray.tune.tune import _setup_signal_catching

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # a Tuner.fit before leaves Tune's
        assert not ray_compat.stop_tune_gracefully()  # not Tune's handler: nothing raised
        event = _setup_signal_catching()
        handler = signal.getsignal(signal.SIGUSR1)
        assert ray_compat.TUNE_STOP_HANDLER in handler.__qualname__, handler.__qualname__
        assert ray_compat.stop_tune_gracefully() and event.is_set()
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_not_from_another_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(ray_compat.stop_tune_gracefully()))
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


COUNT_TAGS = """
import json, sys
from ray.air._internal import usage
from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback
from raytune_hpo import ray_compat
from raytune_hpo.plan.loggers import record_loggers

class Watch(Callback):
    pass

class Lines(LoggerCallback):
    pass

callbacks = [*record_loggers(), JsonLoggerCallback(), CSVLoggerCallback(), Watch(), Lines(), 3]
recorded = []
usage.record_extra_usage_tag = lambda key, value: recorded.append((key, value))
with ray_compat.callbacks_tagged_by_name():
    assert usage.tag_callbacks(callbacks) and not usage.tag_callbacks([])
ours = ray_compat.callback_counts(callbacks)
print(json.dumps({"mlflow": "mlflow" in sys.modules, "ours": ours, "recorded": recorded[0][1],
                  "rays": dict(usage._count_callbacks(callbacks))}))
"""


def test_rays_usage_tag_of_our_callbacks_counts_what_rays_does_without_importing_mlflow():
    pytest.importorskip("mlflow")
    done = subprocess.run(
        [sys.executable, "-c", COUNT_TAGS], capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["mlflow"]  # counted while Ray's integrations stayed unimported
    assert seen["ours"] == seen["rays"] == json.loads(seen["recorded"])
    assert seen["ours"] == {
        "CustomLoggerCallback": 3,  # the record loggers are subclasses of Ray's, and Lines
        "JsonLoggerCallback": 1,
        "CSVLoggerCallback": 1,
        "CustomCallback": 1,
    }
