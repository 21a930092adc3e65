"""A user's train_loop_per_worker for the PBT tests of tests/test_workers.py: its weights are one
float64 tensor that every rank steps alike (no DDP to even them out), so the ranks agree only
if each restored the same state. Rank 0 reports every rank's weight checksum (``sum_r<k>``),
and after a restore every rank's checksum of what it restored (``restored_r<k>``; -1 without).

It steps at least ``steps`` times and then goes on (up to ``cap``) until a file matching
``config["until"]`` (a glob: the sweep's ``pbt_schedule.jsonl``, written on an exploit) exists,
so the population lives until PBT has exploited once."""

import glob

import ray.train
import torch
import torch.distributed as dist

import raytune_hpo


def _all(value: float) -> list[float]:
    """``value`` of every rank, in rank order."""
    mine = torch.tensor([value], dtype=torch.float64)
    parts = [torch.zeros(1, dtype=torch.float64) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    return [float(p) for p in parts]


def train_loop(config):
    ranks = ray.train.get_context().get_world_size()
    source = config.get("source", "state")
    if source == "state":
        state = raytune_hpo.restore_state()
    else:  # Ray's own API: the checkpoint raytune_hpo.report wrote
        found = ray.train.get_checkpoint()
        state = None if found is None else _read(found)
    restored = -1.0 if state is None else float(state["w"].sum())
    if state is None:
        state = {"step": 0, "w": torch.full((16,), float(config["init"]), dtype=torch.float64)}
    w = state["w"].clone()
    restored_all = _all(restored)
    step = state["step"]
    while True:
        step += 1
        w += float(config["lr"]) * torch.linspace(1.0, 2.0, 16, dtype=torch.float64)
        sums = _all(float(w.sum()))
        metrics = {"score": float(w.mean()), "step": step}
        metrics.update({f"sum_r{k}": sums[k] for k in range(ranks)})
        metrics.update({f"restored_r{k}": restored_all[k] for k in range(ranks)})
        restored_all = [-1.0] * ranks
        raytune_hpo.report(metrics, state={"step": step, "w": w.clone()})
        if step >= int(config["cap"]):
            return
        if step >= int(config["steps"]) and glob.glob(config["until"], recursive=True):
            return


def _read(checkpoint):
    import os
    import pickle

    from raytune_hpo.session import STATE_FILE

    with checkpoint.as_directory() as d, open(os.path.join(d, STATE_FILE), "rb") as f:
        return pickle.load(f)
