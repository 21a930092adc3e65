"""The user trainable of tests/test_autoscale.py (copied into each sweep's folder as train.py).

Each step reports where it ran (Ray node id, the GPU ids Ray gave the trial) and checkpoints
its step (``raytune_hpo.report(state=...)``). A trial whose ``x`` is at least ``hold_from``
waits after step ``hold_at`` until the file ``gate`` exists, so a test can act while trials
are known to be running (or still hold their checkpoint) instead of guessing with sleeps.
"""

from __future__ import annotations

import os
import time

import ray

import raytune_hpo


def train(config: dict) -> None:
    state = raytune_hpo.restore_state() or {"step": 0}
    node = ray.get_runtime_context().get_node_id()
    gpus = ",".join(str(g) for g in ray.get_gpu_ids())
    for step in range(state["step"] + 1, int(config["steps"]) + 1):
        time.sleep(float(config["step_s"]))
        state = {"step": step}
        raytune_hpo.report({"score": config["x"] * step, "node": node, "gpus": gpus}, state=state)
        if step == config["hold_at"] and config["x"] >= config["hold_from"]:
            while not os.path.exists(config["gate"]):
                time.sleep(0.1)
