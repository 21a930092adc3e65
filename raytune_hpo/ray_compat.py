"""Every use of a private Ray name in raytune-hpo: ``ray._private`` and ``_internal`` modules,
underscored attributes and methods of Ray's objects, Ray's process and log layout.

Nothing else in the package touches them. Each name says the Ray version it was written for;
``tests/test_ray_compat.py`` checks every one against the installed Ray and names the symbol
that moved when an upgrade changes one. A function that meets a changed Ray raises
``RayMoved`` (a ``RuntimeError``) naming the symbol (``changed``), never a bare ``AttributeError``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Ray classes the mixins below come before, for the type checker only
    from ray.tune.logger import LoggerCallback as _LoggerBase
    from ray.tune.schedulers import PopulationBasedTraining as _PBTBase
else:
    _LoggerBase = _PBTBase = object

WRITTEN_FOR = "2.60.0"  # the Ray every function here was written for (pyproject's range)

# Ray 2.60: the logger of `ray start`/`ray.init`'s notice that token authentication is on.
AUTH_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"
# Ray 2.60: the logger of the HTTP clients' warning that token mode found no token.
HTTP_AUTH_LOGGER = "ray._private.authentication.http_token_authentication"
# Ray 2.60: the resource only the head node carries (ray.nodes()[i]["Resources"]).
HEAD_NODE_RESOURCE = "node:__internal_head__"
# Ray 2.60: the `ray start` flag of the dashboard agent's HTTP port (default 52365), the port
# the Job Submission API's agent listens on.
AGENT_PORT_FLAG = "--dashboard-agent-listen-port"
# Ray 2.60: attributes Ray's Searcher keeps its metric and mode in (no setter exists; every
# searcher of Ray's sets them in set_search_properties).
SEARCHER_METRIC_ATTRS = ("_metric", "_mode")

# Ray 2.60: what our population-based training (``raytune_hpo.schedulers._pbt``) overrides
# or reads on Ray's ``PopulationBasedTraining``: the exploit step, the new config of an exploit,
# the exploit's log line, the interval, the mutations and each trial's state.
PBT_HOOKS = (
    "_exploit",
    "_get_new_config",
    "_log_config_on_step",
    "_perturbation_interval",
    "_hyperparam_mutations",
    "_trial_state",
)
# Ray 2.60: the state PBT keeps per trial (``_PBTTrialState``): what an exploit copies.
PBT_STATE_FIELDS = ("last_checkpoint", "last_result")
# Ray 2.60: the handler ``tune.run`` installs for SIGINT and SIGUSR1 (``ray/tune/tune.py``).
TUNE_STOP_HANDLER = "signal_interrupt_tune_run"


class RayMoved(RuntimeError):
    """A private Ray name this module relies on is gone or changed."""


def changed(symbol: str, error: BaseException) -> RayMoved:
    """The error for a private Ray name that is not what this module was written for."""
    import ray

    return RayMoved(
        f"Ray {ray.__version__} changed {symbol} ({type(error).__name__}: {error}); "
        f"raytune_hpo.ray_compat was written for Ray {WRITTEN_FOR} and must follow it"
    )


# ------------------------------------------------------------------ job submission (jobs)
def upload_limit() -> int:
    """Ray 2.60: the largest package a job may upload
    (``ray._private.runtime_env.packaging.GCS_STORAGE_MAX_SIZE``)."""
    from ray._private.runtime_env import packaging

    return packaging.GCS_STORAGE_MAX_SIZE


def package_size(path: str, excludes: list[str]) -> int:
    """Ray 2.60: the size of ``path`` zipped as Ray ships a ``working_dir`` (its own
    ``packaging.create_package``, honouring ``.gitignore``, ``.rayignore``, ``excludes``)."""
    import tempfile

    from ray._private.runtime_env import packaging

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "package.zip"
        packaging.create_package(path, target, include_gitignore=True, excludes=excludes)
        return target.stat().st_size


def head_log_dir(dashboard_port: int) -> Path | None:
    """Ray 2.60: the log directory of the head whose dashboard listens on ``dashboard_port``
    on this machine (its ``dashboard.py`` process's ``--log-dir``, which follows the head's
    temp dir); None when no process of ours here listens there."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    pids = {c.pid for c in conns if c.pid and c.laddr and c.laddr.port == dashboard_port}
    for pid in pids:
        try:
            args = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        for arg in args:
            if arg.startswith("--log-dir="):
                return Path(arg.split("=", 1)[1])
    return None


# "Failed to start HTTP server with exception: [Errno 98] error while attempting to bind on
# address ('HOST', PORT): address already in use" (dashboard/agent.py, Ray 2.60).
_AGENT_BIND = re.compile(r"Failed to start HTTP server.*?, (\d+)\)\S*: address already in use")
AGENT_LOG = "dashboard_agent.log"


def agent_port_taken(log_dir: Path) -> int | None:
    """Ray 2.60: the port the head's dashboard agent could not bind (its log says so), or
    None. That agent serves the Job Submission API: without it every submit is refused."""
    try:
        text = (log_dir / AGENT_LOG).read_text(errors="replace")
    except OSError:
        return None
    found = _AGENT_BIND.findall(text)
    return int(found[-1]) if found else None


# ------------------------------------------------------------ Tune's experiment state (run)
def load_run_metadata(meta_json: str) -> Any:
    """A trial's run metadata (last result, checkpoint manager) from the experiment state's
    JSON. Ray 2.60: ``ray.tune.trainable.metadata._TrainingRunMetadata.from_json_state``."""
    try:
        from ray.tune.trainable.metadata import _TrainingRunMetadata

        return _TrainingRunMetadata.from_json_state(meta_json)
    except (ImportError, AttributeError) as e:
        raise changed("_TrainingRunMetadata.from_json_state", e) from None


def checkpoint_results(meta: Any) -> tuple[Any, list[Any]]:
    """``(latest, kept)``: the trial's latest registered checkpoint result and every one its
    checkpoint manager keeps (each with ``.checkpoint`` and ``.metrics``). Ray 2.60:
    ``_CheckpointManager.latest_checkpoint_result`` and ``._checkpoint_results``."""
    try:
        manager = meta.checkpoint_manager
        if manager is None:
            return None, []
        return manager.latest_checkpoint_result, list(manager._checkpoint_results)
    except AttributeError as e:
        raise changed("_CheckpointManager._checkpoint_results", e) from None


def set_checkpoint_results(meta: Any, latest: Any, kept: list[Any]) -> None:
    """Make ``latest`` the trial's latest checkpoint result and ``kept`` the ones its manager
    keeps (Ray deletes the oldest of them when a new one comes). Ray 2.60:
    ``_CheckpointManager._latest_checkpoint_result``, ``._checkpoint_results``."""
    try:
        manager = meta.checkpoint_manager
        if manager is None:
            return
        manager._latest_checkpoint_result = latest
        manager._checkpoint_results = list(kept)
        meta.invalidate_cache()  # its JSON is cached until an attribute of its own changes
    except AttributeError as e:
        raise changed("_CheckpointManager._latest_checkpoint_result", e) from None


def checkpoint_result(path: str, filesystem: Any, metrics: dict) -> Any:
    """A checkpoint result (a checkpoint at ``path`` reported with ``metrics``). Ray 2.60:
    ``ray.train._internal.session._TrainingResult``."""
    try:
        from ray.train import Checkpoint
        from ray.train._internal.session import _TrainingResult

        return _TrainingResult(checkpoint=Checkpoint(path, filesystem=filesystem), metrics=metrics)
    except (ImportError, AttributeError, TypeError) as e:
        raise changed("ray.train._internal.session._TrainingResult", e) from None


def _trial_storage(trial: dict) -> Any:
    """The ``StorageContext`` a trial's state (its JSON in the experiment state, parsed) holds,
    which Ray encodes as a cloudpickle fallback (``TuneFunctionEncoder``)."""
    from ray import cloudpickle

    field = trial["storage"]
    if not isinstance(field, dict) or field.get("_type") != "CLOUDPICKLE_FALLBACK":
        raise KeyError("storage")
    return cloudpickle.loads(bytes.fromhex(field["value"]))


def trial_staging_stamp(trial: dict) -> str:
    """The time stamp naming the driver's staging directory of the run a trial belongs to (a
    restored run reuses its first trial's). Ray 2.60: ``Trial.storage._timestamp``."""
    try:
        return _trial_storage(trial)._timestamp
    except (KeyError, AttributeError) as e:
        raise changed("Trial.storage._timestamp", e) from None


def raise_checkpoint_index(trial: dict, index: int) -> bool:
    """Make the trial's next checkpoint directory ``checkpoint_<index + 1>`` at least (Ray
    numbers them from the index its state holds: a trial continuing from a checkpoint the
    state did not know yet would otherwise write over it). Whether it changed. Ray 2.60:
    ``StorageContext.current_checkpoint_index`` inside the trial's state."""
    from ray import cloudpickle

    try:
        context = _trial_storage(trial)
        if context.current_checkpoint_index >= index:
            return False
        context.current_checkpoint_index = index
    except (KeyError, AttributeError) as e:
        raise changed("StorageContext.current_checkpoint_index", e) from None
    trial["storage"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(context).hex()}
    return True


def staging_dir(trial: Any) -> str:
    """The driver's local staging directory of a running trial's experiment, where Ray writes
    the experiment state and the searcher's before copying them to storage. Ray 2.60:
    ``StorageContext.experiment_driver_staging_path`` (``ray.train._internal.storage``)."""
    try:
        return trial.storage.experiment_driver_staging_path
    except AttributeError as e:
        raise changed("StorageContext.experiment_driver_staging_path", e) from None


def session_staging_dir(stamp: str, experiment: str) -> Path:
    """Where a run stamped ``stamp`` stages ``experiment`` on this Ray session (Ray must be
    initialised; a driver that joins a cluster shares the head's session). Ray 2.60:
    ``ray.train.constants._get_ray_train_session_dir``."""
    try:
        from ray.train.constants import _get_ray_train_session_dir

        return Path(_get_ray_train_session_dir(), stamp, experiment, "driver_artifacts")
    except (ImportError, AttributeError) as e:
        raise changed("ray.train.constants._get_ray_train_session_dir", e) from None


def result_line(result: dict) -> str:
    """A result as Ray's JSON logger writes it to ``result.json`` (one line, no newline).
    Ray 2.60: ``ray.air._internal.json.SafeFallbackEncoder``."""
    import json

    try:
        from ray.air._internal.json import SafeFallbackEncoder
    except ImportError as e:
        raise changed("ray.air._internal.json.SafeFallbackEncoder", e) from None
    return json.dumps(result, cls=SafeFallbackEncoder)


def result_grid_trials(grid: Any) -> list | None:
    """Ray 2.60: the trials of a ``ResultGrid`` in its order
    (``ResultGrid._experiment_analysis.trials``); None when Ray does not say."""
    return getattr(getattr(grid, "_experiment_analysis", None), "trials", None)


def trial_actor(trial: Any) -> Any:
    """Ray 2.60: the actor running a trial now, or None (``Trial.temporary_state``, a
    ``_TemporaryTrialState``, holds it as ``ray_actor``)."""
    return getattr(getattr(trial, "temporary_state", None), "ray_actor", None)


def seed_train_checkpoint(checkpoint: Any) -> bool:
    """Ray 2.60 (Train V2): inside a rank of a run that has no checkpoint of its own, make
    ``ray.train.get_checkpoint()`` return ``checkpoint`` (a ``ray.train.Checkpoint``), the one a
    trial starts from (V2 refuses ``resume_from_checkpoint``). Sets the rank's ``TrainContext``
    (``ray.train.v2._internal.execution.context``) ``checkpoint`` under its
    ``report_order_condition``; whether it was set (False: the run has its own)."""
    from ray.train.v2._internal.execution.context import get_train_context

    context = get_train_context()
    with context.report_order_condition:
        if context.checkpoint is not None:
            return False
        context.checkpoint = checkpoint
        return True


def gpus_here() -> int:
    """Ray 2.60: the GPUs Ray's NVIDIA accelerator manager sees on this machine
    (``ray._private.accelerators``); 0 when it sees none or cannot look."""
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        return int(manager.get_current_node_num_accelerators()) if manager else 0
    except Exception:  # no NVIDIA library or driver: no GPU
        return 0


def mark_trial_to_checkpoint(tune_controller: Any, trial: Any) -> None:
    """Ray 2.60: ask Tune's controller to write the trial into the next experiment snapshot
    (``TuneController._mark_trial_to_checkpoint``); nothing where the controller has none."""
    mark = getattr(tune_controller, "_mark_trial_to_checkpoint", None)
    if mark is not None:
        mark(trial)


# ------------------------------------------------------------------------- searchers
def experiment_list(experiments: Any) -> list:
    """Ray 2.60: what a search algorithm's ``add_configurations`` receives, as a list of
    ``Experiment`` (``ray.tune.experiment._convert_to_experiment_list``)."""
    from ray.tune.experiment import _convert_to_experiment_list

    return _convert_to_experiment_list(experiments)


def add_points_to_evaluate(generator: Any, points: Iterable[dict]) -> None:
    """Ray 2.60: append ``points`` to a ``BasicVariantGenerator``'s own points to evaluate
    before it expands its configurations (``._points_to_evaluate``)."""
    generator._points_to_evaluate = [*generator._points_to_evaluate, *points]


def forget_live_trial(generator: Any, trial_id: str) -> None:
    """Ray 2.60: a trial a ``BasicVariantGenerator`` made but that will not run no longer
    counts against its ``max_concurrent`` (``._live_trials``)."""
    generator._live_trials.discard(trial_id)


def reopen_variant_generator(generator: Any) -> None:
    """Ray 2.60: a restored ``BasicVariantGenerator`` goes on making trials (``._finished``:
    its sequence was used up) and takes the Tuner's metric again (``._metric`` set means
    "set_search_properties refused" to the Tuner)."""
    generator._finished, generator._metric = False, None


def set_metric_mode(searcher: Any, metric: Any = None, mode: Any = None) -> None:
    """Ray 2.60: set a ``Searcher``'s metric and mode (kept in ``._metric`` / ``._mode``;
    Ray has no setter); None leaves one as it is."""
    if metric is not None:
        searcher._metric = metric
    if mode is not None:
        searcher._mode = mode


# ------------------------------------------------------------------------- schedulers
def pbt_interval(scheduler: Any) -> int:
    """Ray 2.60: a ``PopulationBasedTraining``'s ``perturbation_interval``
    (``._perturbation_interval``)."""
    return scheduler._perturbation_interval


def pbt_state(scheduler: Any, trial: Any) -> Any:
    """Ray 2.60: PBT's state of ``trial`` (``._trial_state[trial]``): ``last_checkpoint`` (what
    an exploit copies, a checkpoint or a pending save) and ``last_result`` (the result it was
    taken with)."""
    return scheduler._trial_state[trial]


@contextlib.contextmanager
def pbt_mutations(scheduler: Any, narrow: Callable[[dict[str, Any]], dict[str, Any]]):
    """Ray 2.60: PBT's ``hyperparam_mutations`` (``._hyperparam_mutations``) replaced by
    ``narrow(mutations)`` for a while (an exploit that must leave a trial's inactive parameters
    alone). Yields that dict, which the caller may narrow further in place."""
    full = scheduler._hyperparam_mutations
    scheduler._hyperparam_mutations = narrowed = narrow(full)
    try:
        yield narrowed
    finally:
        scheduler._hyperparam_mutations = full


class ExploitHook(_PBTBase):
    """Ray 2.60: mixin for ``PopulationBasedTraining`` (before it in the bases) that turns its
    private exploit steps into public hooks: ``exploit(trial, donor, proceed)`` around Ray's
    exploit (``_exploit``; ``proceed()`` runs it), ``new_config(config, operations)`` after Ray
    draws an exploit's config (``_get_new_config``), ``on_exploit(...)`` after Ray logs it
    (``_log_config_on_step``, same arguments)."""

    def exploit(self, trial, trial_to_clone, proceed: Callable[[], None]) -> None:
        """Around each exploit; override (call ``proceed()`` for Ray's)."""
        proceed()

    def new_config(self, config: dict, operations: dict) -> tuple[dict, dict]:
        """Each exploit's new config and Ray's operations on it; override."""
        return config, operations

    def on_exploit(self, trial_state, new_state, trial, trial_to_clone, new_config) -> None:
        """Called after each exploit; override."""

    def _exploit(self, tune_controller, trial, trial_to_clone):
        parent = super()
        self.exploit(
            trial, trial_to_clone, lambda: parent._exploit(tune_controller, trial, trial_to_clone)
        )

    def _get_new_config(self, trial, trial_to_clone):
        return self.new_config(*super()._get_new_config(trial, trial_to_clone))

    def _log_config_on_step(self, trial_state, new_state, trial, trial_to_clone, new_config):
        super()._log_config_on_step(trial_state, new_state, trial, trial_to_clone, new_config)
        self.on_exploit(trial_state, new_state, trial, trial_to_clone, new_config)


def trial_storage(trial: Any) -> tuple[Any, str, str]:
    """Ray 2.60: where a trial's files live on the sweep's storage (not the driver's staging
    copy): the pyarrow file system, the trial's directory and the experiment's, as paths on it
    (``Trial.storage``, a ``ray.train._internal.storage.StorageContext``)."""
    storage = trial.storage
    return storage.storage_filesystem, storage.trial_fs_path, storage.experiment_fs_path


def is_worker_group_startup_timeout(error: BaseException) -> bool:
    """Ray 2.60 (Train V2): whether ``error`` (a ``ControllerError``'s ``controller_failure``)
    is ``WorkerGroupStartupTimeoutError`` (``ray.train.v2._internal.exceptions``): the ranks'
    placement group was not ready within ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    return isinstance(error, WorkerGroupStartupTimeoutError)


def session_trial_storage() -> tuple[Any, str]:
    """Ray 2.60: inside a Tune trial, where its files live on the sweep's storage (every node
    reaches it; ``get_trial_dir()`` is this node's staging copy): the pyarrow file system and
    the trial's directory on it (the session's ``StorageContext``, ``ray.train._internal``)."""
    from ray.train._internal.session import get_session

    session = get_session()
    if session is None:
        raise RuntimeError("not inside a Tune trial")
    return session.storage.storage_filesystem, session.storage.trial_fs_path


def stop_tune_gracefully() -> bool:
    """Ray 2.60: end the running ``Tuner.fit`` as a Ctrl-C would: Tune saves the experiment
    state with every trial as it is (resumable: nothing marked finished) and returns. Only from
    the thread ``tune.run`` installed its handler in (the main thread), and only when that
    handler is Tune's; False when it is not (``tune.run`` handles SIGUSR1 like SIGINT)."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(usr1)
    if TUNE_STOP_HANDLER not in getattr(handler, "__qualname__", ""):
        return False
    signal.raise_signal(usr1)  # Python runs the handler before raise_signal returns
    return True


# ---------------------------------------------------------------------------- usage tags
# Ray 2.60: the callbacks Ray's own tag counts by name (``usage._count_callbacks``), besides
# Ray's default loggers.
INTEGRATION_CALLBACKS = (
    "WandbLoggerCallback",
    "MLflowLoggerCallback",
    "CometLoggerCallback",
    "AimLoggerCallback",
)


def callback_counts(callbacks: Iterable[Any]) -> dict[str, int]:
    """Ray 2.60: what ``ray.air._internal.usage._count_callbacks`` counts (a callback's class
    name when it is one of Ray's, else ``CustomLoggerCallback`` or ``CustomCallback``), from
    class names, without importing Ray's Comet, MLflow, Wandb and Aim integrations."""
    from ray.tune import Callback
    from ray.tune.logger import LoggerCallback
    from ray.tune.utils.callback import DEFAULT_CALLBACK_CLASSES

    named = {*INTEGRATION_CALLBACKS, *(c.__name__ for c in DEFAULT_CALLBACK_CLASSES)}
    counts: dict[str, int] = {}
    for callback in callbacks:
        if not isinstance(callback, Callback):
            continue
        name = type(callback).__name__
        if name not in named:
            name = (
                "CustomLoggerCallback" if isinstance(callback, LoggerCallback) else "CustomCallback"
            )
        counts[name] = counts.get(name, 0) + 1
    return counts


@contextlib.contextmanager
def callbacks_tagged_by_name():
    """Ray 2.60: while in this block, ``tune.run`` records its usage tag of the callbacks it is
    given (``ray.air._internal.usage.tag_callbacks``) from ``callback_counts``. Ray's own count
    imports its Comet, MLflow, Wandb and Aim integrations, and with them MLflow itself where
    it is installed: 1.5-5 s before the first trial on the 2-core machine, in every sweep
    (a sweep always passes callbacks; a bare ``Tuner`` without callbacks skips the tag)."""
    import json

    try:
        from ray.air._internal import usage

        original = usage.tag_callbacks
        record, key = usage.record_extra_usage_tag, usage.TagKey.AIR_CALLBACKS
    except (ImportError, AttributeError) as e:
        raise changed("ray.air._internal.usage.tag_callbacks", e) from e

    def tag_by_name(callbacks) -> bool:
        if not callbacks:
            return False
        counts = callback_counts(callbacks)
        if counts:
            record(key, json.dumps(counts))
        return True

    usage.tag_callbacks = tag_by_name
    try:
        yield
    finally:
        usage.tag_callbacks = original


# ---------------------------------------------------------------------------- loggers
class RestoreHook(_LoggerBase):
    """Ray 2.60: mixin for Ray's ``LoggerCallback`` (before it in the bases): Ray copies a
    trial's stored file back over the local one whenever a trial with a checkpoint starts
    (``_restore_from_remote``); ``should_restore(file_name, trial)`` decides whether it does."""

    def should_restore(self, file_name: str, trial) -> bool:
        return True

    def _restore_from_remote(self, file_name: str, trial) -> None:
        if self.should_restore(file_name, trial):
            super()._restore_from_remote(file_name, trial)


__all__ = [
    "AGENT_PORT_FLAG",
    "AUTH_SETUP_LOGGER",
    "HEAD_NODE_RESOURCE",
    "HTTP_AUTH_LOGGER",
    "INTEGRATION_CALLBACKS",
    "PBT_HOOKS",
    "PBT_STATE_FIELDS",
    "SEARCHER_METRIC_ATTRS",
    "TUNE_STOP_HANDLER",
    "WRITTEN_FOR",
    "ExploitHook",
    "RayMoved",
    "RestoreHook",
    "add_points_to_evaluate",
    "agent_port_taken",
    "callback_counts",
    "callbacks_tagged_by_name",
    "changed",
    "checkpoint_result",
    "checkpoint_results",
    "experiment_list",
    "forget_live_trial",
    "gpus_here",
    "is_worker_group_startup_timeout",
    "head_log_dir",
    "load_run_metadata",
    "mark_trial_to_checkpoint",
    "package_size",
    "pbt_interval",
    "pbt_mutations",
    "pbt_state",
    "raise_checkpoint_index",
    "reopen_variant_generator",
    "result_grid_trials",
    "result_line",
    "seed_train_checkpoint",
    "session_staging_dir",
    "session_trial_storage",
    "set_checkpoint_results",
    "set_metric_mode",
    "staging_dir",
    "stop_tune_gracefully",
    "trial_actor",
    "trial_staging_stamp",
    "trial_storage",
    "upload_limit",
]
