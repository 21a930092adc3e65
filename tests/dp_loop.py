"""A user's train_loop_per_worker for tests/test_workers.py: every rank reports its rank and
``x`` per step through ``raytune_hpo.report`` (rank 0's with its state), restoring the step
from ``raytune_hpo.restore_state``."""

import time

import ray.train

import raytune_hpo


def train_loop(config):
    ctx = ray.train.get_context()
    rank, ranks = ctx.get_world_rank(), ctx.get_world_size()
    state = raytune_hpo.restore_state() or {"step": 0}
    for step in range(state["step"] + 1, int(config["steps"]) + 1):
        state = {"step": step}
        score = float(config["x"]) * step + rank * 1000  # rank 1's would stand out
        raytune_hpo.report({"score": score, "rank": rank, "ranks": ranks}, state=state)
        time.sleep(float(config.get("pause", 0)))
