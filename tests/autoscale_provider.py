"""The simulated autoscaling cluster of tests/test_autoscale.py: its config (the GPU node types
of cluster/aws-gpu.yaml) and its node provider, Ray's fake multi-node provider (its workers are
local processes of the head's autoscaler) with a runtime-env directory of its own per node.

Separate machines have separate disks. The simulated nodes share this one, and Ray unpacks a
job's ``working_dir`` into ``<session>/runtime_resources`` on every node, deleting a copy
already there first: the trials a node started earlier then run in a deleted directory and
fail at their first ``os.getcwd()`` (seen here: ``FileNotFoundError`` in
``Trainable._setup_logdir`` for the trials of the first node when the second came up). Each
node's own ``runtime_env_dir_name`` keeps the copies apart, as disks would. Loaded by the
autoscaler (``provider: {type: external, module: autoscale_provider.SeparateDisksProvider}``)
from this folder, which the head has on its path.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import yaml

CLOUD_CONFIG = Path(__file__).resolve().parent.parent / "cluster" / "aws-gpu.yaml"
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head's type
MAX_WORKERS = 2
# 30 s instead of the cloud config's 10 minutes. Not much less: a node counts as idle from
# its raylet's start, and on a loaded 2-core machine one took 10 s to start, so with 9 s the
# autoscaler removed it as idle the moment it came up, under the trials placed on it.
IDLE_TIMEOUT_MIN = 0.5


def simulated_node_types(cloud: dict) -> dict:
    """The cloud config's worker types for the fake provider: the CPUs and GPUs they declare
    (the provider starts each node with those; memory it cannot declare, a simulated node
    has this machine's), min 0 workers, at most ``MAX_WORKERS``."""
    head = cloud["head_node_type"]
    return {
        name: {
            "resources": {k: v for k, v in t["resources"].items() if k in ("CPU", "GPU")},
            "node_config": {},
            "min_workers": 0,
            "max_workers": min(t["max_workers"], MAX_WORKERS),
        }
        for name, t in cloud["available_node_types"].items()
        if name != head
    }


def autoscaling_config(gcs_port: int) -> dict:
    """A whole fake-multinode config (the pip wheel lacks the provider's example.yaml)."""
    cloud = yaml.safe_load(CLOUD_CONFIG.read_text())
    head = {"resources": {"CPU": 1, "GPU": 0}, "node_config": {}, "max_workers": 0}
    commands = ("initialization", "setup", "head_setup", "worker_setup")
    return {
        "cluster_name": "raytune-hpo-simulated",
        "max_workers": MAX_WORKERS,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {
            # Ray's fake_multinode provider, each node with a runtime-env dir of its own
            "type": "external",
            "module": "autoscale_provider.SeparateDisksProvider",
            "use_node_id_as_ip": True,
            "launch_multiple": True,  # else "Launching 2 nodes" starts one (and books two)
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"127.0.0.1:{gcs_port}",  # not 6379: other Rays live here
        },
        "head_node_type": HEAD_TYPE,
        "available_node_types": {HEAD_TYPE: head, **simulated_node_types(cloud)},
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        **{f"{c}_commands": [] for c in commands},
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@contextlib.contextmanager
def _params_with(**defaults):
    """Ray's ``RayParams`` as the provider builds it, with ``defaults`` added."""
    import ray._private.parameter

    original = ray._private.parameter.RayParams

    class Params(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**defaults, **kwargs})

    ray._private.parameter.RayParams = Params
    try:
        yield
    finally:
        ray._private.parameter.RayParams = original


@functools.lru_cache(maxsize=1)
def _provider_class() -> type:
    from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider

    class SeparateDisksProvider(FakeMultiNodeProvider):
        def _create_node_with_resources_and_labels(
            self, node_config, tags, count, resources, labels
        ):
            with self.lock:  # the provider numbers its nodes under this lock
                name = f"runtime_resources_{self._next_node_id + 1}"
                with _params_with(runtime_env_dir_name=name):
                    super()._create_node_with_resources_and_labels(
                        node_config, tags, count, resources, labels
                    )

    return SeparateDisksProvider


def __getattr__(name: str):
    """``SeparateDisksProvider``, made when the autoscaler asks for it by name: the tests read
    this module's config without importing Ray (Ray reads its auth mode when imported)."""
    if name == "SeparateDisksProvider":
        return _provider_class()
    raise AttributeError(name)
