"""Fused trials under Ray Tune: each Tune trial is one member of a fused group.

``train_fused(config, gpu=share)`` is a function trainable like ``train_cnn``. A trial holds
its CPUs but does not train: it joins the group of the trials that share its ``group_key`` and
its start epoch (on CPUs: also its node). The group is a named Ray actor (``FusedGroup``)
created by the first member. On a GPU the group itself holds its members' shares through Ray
(``num_gpus`` = ``fused`` x ``gpu``, at most one device; the members ask Tune for no GPU), so
Ray counts the GPU taken for as long as the group trains on it and gives the group its device
(``CUDA_VISIBLE_DEVICES``); on CPUs it asks for nothing and runs on its members' node, whose
CPUs they hold. It waits up to ``fused_wait_s`` for ``fused`` members, then
trains them with ``FusedTrainer`` in lockstep epochs: epoch e starts when every member still in
the group has asked for epoch e - ``fused_lookahead``. A trial asks for epoch e + 1 once Tune
has let it continue after epoch e, so with lookahead 0 the group waits for Tune's decisions on
epoch e - 1, and with lookahead 1 (the default) it trains epoch e while the trials report epoch
e - 1, hiding Tune's per-report work; a trial stopped after epoch e - 1 was then trained one
epoch in vain. Each trial reports its member's metrics and checkpoint (``fit``'s format) per
epoch, so searchers and schedulers see N ordinary trials. A trial the scheduler stops (or
pauses) leaves the group on its way out (``tune.report`` ends the trial's thread with
``SystemExit``); the others go on, and the group shrinks its stacked tensors. A paused trial
resumes from its checkpoint in a new group with the trials resuming at the same epoch (or
alone). A member that neither asks nor leaves within ``MEMBER_TIMEOUT_S`` is dropped, so a
killed trial cannot stall its group.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import time
import traceback
from typing import Any

import torch

from raytune_hpo.sweep.sections import defaults
from raytune_hpo.train import checkpoint
from raytune_hpo.train.checkpoint import TrialState
from raytune_hpo.train.trainable import DivergedError

NAMESPACE = "raytune_hpo_fused"
MEMBER_TIMEOUT_S = 600.0
_MAX_CONCURRENCY = 256


class FusedGroup:
    """The actor that trains one group (use through ``train_fused``)."""

    def __init__(self, size: int, wait_s: float, lookahead: int) -> None:
        self.size, self.wait_s, self.lookahead = size, wait_s, lookahead
        self.cond = threading.Condition()
        self.members: dict[str, tuple[dict, TrialState | None, float]] = {}
        self.asked: dict[str, int] = {}  # member -> epoch it waits for
        self.results: dict[str, dict[int, Any]] = {}  # member -> epoch -> payload
        self.final: dict[str, int] = {}  # member -> its last epoch (done or failed)
        self.left: set[str] = set()
        self.closed = False
        self.failure: str | None = None
        self.finished = False
        self.delivered_at = time.monotonic()
        self.thread: threading.Thread | None = None

    def join(self, member: str, config: dict, state: TrialState | None, cpus: float) -> bool:
        with self.cond:
            if self.closed or len(self.members) >= self.size:
                return False
            self.members[member] = (config, state, cpus)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True)
                self.thread.start()
            self.cond.notify_all()
            return True

    def next(self, member: str, epoch: int) -> tuple[str, Any]:
        """Block until ``member``'s result for ``epoch``: ("ok", (metrics, state)),
        ("error", exception) or ("done", None)."""
        with self.cond:
            self.asked[member] = epoch
            self.cond.notify_all()
            while True:
                got = self.results.get(member, {})
                if epoch in got:
                    return got.pop(epoch)
                if self.failure is not None:
                    return ("error", f"fused group failed: {self.failure}")
                if self.finished or member in self.left:
                    return ("error", f"fused group trains no epoch {epoch} for this trial")
                self.cond.wait(1.0)

    def held(self) -> dict[str, float]:
        """What Ray gave this group (its assigned resources)."""
        import ray

        return dict(ray.get_runtime_context().get_assigned_resources())

    def leave(self, member: str) -> None:
        with self.cond:
            self.left.add(member)
            self.cond.notify_all()

    def _wait_for_members(self) -> list[str]:
        deadline = time.monotonic() + self.wait_s
        with self.cond:
            while len(self.members) < self.size and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            self.closed = True
            return list(self.members)

    def _barrier(self, active: list[str], epoch: int) -> list[str]:
        """Wait until each active member asked for ``epoch - lookahead`` or left; the ones
        who left. With lookahead 1, epoch e trains while the members report epoch e - 1."""
        with self.cond:
            while True:
                gone = [m for m in active if m in self.left]
                waiting = [
                    m
                    for m in active
                    if m not in gone and self.asked.get(m, 0) < epoch - self.lookahead
                ]
                if not waiting:
                    return gone
                if time.monotonic() - self.delivered_at > MEMBER_TIMEOUT_S:
                    self.left.update(waiting)
                    continue
                self.cond.wait(1.0)

    def _run(self) -> None:
        try:
            self._train()
        except Exception:  # the whole group failed (e.g. out of memory): tell every member
            with self.cond:
                self.failure = traceback.format_exc(limit=5)
                self.cond.notify_all()
        with self.cond:
            self.finished = True
            self.cond.notify_all()
        self._exit_when_left()

    def _train(self) -> None:
        from raytune_hpo.train.fused import FusedTrainer

        ids = self._wait_for_members()
        configs = [self.members[m][0] for m in ids]
        states = [self.members[m][1] for m in ids]
        if configs and str(configs[0].get("device", "auto")) != "cuda":
            # The members' whole CPUs, as Ray sets OMP_NUM_THREADS for a trial: more threads
            # than cores makes a loaded CPU ten times slower, not faster.
            cpus = int(sum(self.members[m][2] for m in ids))
            torch.set_num_threads(max(1, min(cpus, os.cpu_count() or 1)))
        trainer = FusedTrainer(configs, states)
        while trainer.members:
            active = [ids[i] for i in trainer.members]
            gone = self._barrier(active, trainer.epoch + 1)
            trainer.remove([ids.index(m) for m in gone])
            if not trainer.members:
                break
            out = trainer.train_epoch()
            with self.cond:
                for i, r in out.items():
                    payload = ("error", r) if isinstance(r, Exception) else ("ok", r)
                    self.results.setdefault(ids[i], {})[trainer.epoch] = payload
                    if ids[i] not in [ids[j] for j in trainer.members]:
                        self.final[ids[i]] = trainer.epoch
                self.delivered_at = time.monotonic()
                self.cond.notify_all()

    def _exit_when_left(self) -> None:
        import ray

        with self.cond:
            while not set(self.members) <= self.left | set(self.final):
                if time.monotonic() - self.delivered_at > MEMBER_TIMEOUT_S:
                    break
                self.cond.wait(1.0)
        time.sleep(1.0)  # let the last replies go out
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def _group_name(config: dict, start_epoch: int, k: int, *, on_gpu: bool) -> str:
    import ray

    from raytune_hpo.train.fused import group_key

    ctx = ray.get_runtime_context()
    place = "gpu" if on_gpu else ctx.get_node_id()  # on CPUs: the members' node
    where = f"{ctx.get_job_id()}|{place}|{start_epoch}"
    digest = hashlib.sha1((where + group_key(config)).encode()).hexdigest()[:16]
    return f"fused-{digest}-{k}"


@functools.lru_cache(maxsize=1)
def _actor_class():
    import ray

    return ray.remote(FusedGroup)


def group_options(*, gpu: float, size: int, node: str) -> dict[str, Any]:
    """The group actor's Ray options. ``gpu`` (each member's share) above 0: the group holds
    its members' shares of one device (``size`` x ``gpu``, at most 1), placed by Ray wherever
    that is free; else no resources, on ``node`` (its members' CPUs pay for it)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {
        "namespace": NAMESPACE,
        "lifetime": "detached",  # outlives the trial that created it; exits when all left
        "get_if_exists": True,
        "num_cpus": 0,
        "num_gpus": min(1.0, gpu * size) if gpu > 0 else 0,
        "max_concurrency": _MAX_CONCURRENCY,
    }
    # An explicit strategy keeps the group out of its creator trial's placement group (Tune
    # has a trial's children join it): "DEFAULT" places it by its own resources.
    on_cpus = NodeAffinitySchedulingStrategy(node, soft=False)
    options["scheduling_strategy"] = "DEFAULT" if gpu > 0 else on_cpus
    return options


def _join(member: str, config: dict, state: TrialState | None, *, gpu: float):
    """The handle of the open group for this trial, created if need be."""
    import ray

    ctx = ray.get_runtime_context()
    if ray.get_gpu_ids():
        raise RuntimeError(
            "a fused trial holds no GPU itself: its group holds the members' shares; ask Tune "
            "for cpu only and pass the share as train_fused(config, gpu=share)"
        )
    size = int(config.get("fused", defaults()["fused"]))
    wait_s = float(config.get("fused_wait_s", defaults()["fused_wait_s"]))
    lookahead = int(config.get("fused_lookahead", defaults()["fused_lookahead"]))
    start = 0 if state is None else state.epoch
    cpus = float(ctx.get_assigned_resources().get("CPU", 1.0))
    options = group_options(gpu=gpu, size=size, node=ctx.get_node_id())
    actor = _actor_class()
    for k in range(10_000):
        name = _group_name(config, start, k, on_gpu=gpu > 0)
        for _attempt in range(3):  # a group that just finished may still hold its name
            group = actor.options(name=name, **options).remote(size, wait_s, lookahead)
            try:
                joined = ray.get(group.join.remote(member, config, state, cpus))
                break
            except ray.exceptions.RayActorError:
                time.sleep(0.5)
        else:
            continue
        if joined:
            return group
    raise RuntimeError("fused: found no group to join")


def train_fused(config: dict[str, Any], *, gpu: float = 0.0) -> None:
    """Ray Tune function trainable: this trial's member of a fused group; reports like
    ``train_cnn`` (plus ``fused_members``, the group's size that epoch). ``gpu``: this
    member's share of the group's GPU, which the group holds (the trial asks for none)."""
    import ray
    from ray import tune

    state = checkpoint.restore()
    member = tune.get_context().get_trial_id()
    group = _join(member, config, state, gpu=gpu)
    epoch = 1 if state is None else state.epoch + 1
    last = int({**defaults(), **config}["epochs"])
    try:
        while epoch <= last:
            kind, payload = ray.get(group.next.remote(member, epoch))
            if kind == "error":
                raise payload if isinstance(payload, DivergedError) else RuntimeError(payload)
            checkpoint.report(*payload)  # (metrics, state)
            epoch += 1
    finally:
        with contextlib.suppress(Exception):  # a group that is gone has no one to leave
            ray.get(group.leave.remote(member), timeout=10)
