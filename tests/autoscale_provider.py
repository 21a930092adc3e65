"""The node provider of tests/test_autoscale.py: Ray's fake multi-node provider (its workers are
local processes of the head's autoscaler), each node with a runtime-env directory of its own.

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

import ray._private.parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


@contextlib.contextmanager
def _params_with(**defaults):
    """Ray's ``RayParams`` as the provider builds it, with ``defaults`` added."""
    original = ray._private.parameter.RayParams

    class Params(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**defaults, **kwargs})

    ray._private.parameter.RayParams = Params
    try:
        yield
    finally:
        ray._private.parameter.RayParams = original


class SeparateDisksProvider(FakeMultiNodeProvider):
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with self.lock:  # the provider numbers its nodes under this lock
            name = f"runtime_resources_{self._next_node_id + 1}"
            with _params_with(runtime_env_dir_name=name):
                super()._create_node_with_resources_and_labels(
                    node_config, tags, count, resources, labels
                )
