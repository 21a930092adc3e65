"""``train_cnn_per_worker(config)``: the built-in CNN on every rank of a Ray Train run
(``raytune_hpo.train.distributed``), reusing ``raytune_hpo.train.trainable``'s pieces.

Each rank trains on its own shard of the training split (``shard``: strided, padded like
torch's ``DistributedSampler`` so every rank takes the same number of steps) with
``batch_size / ranks`` images a step, through Ray Train's ``prepare_model`` (DDP: the
gradients are averaged, so the effective batch is the config's); validation runs on a shard
of the validation split per rank and its sums are reduced across ranks before every rank
reports (with ``ranks`` and ``elapsed_s``, the seconds since this run's first epoch began).
Rank 0 writes the one checkpoint format (``raytune_hpo.train.checkpoint``); every
rank restores it. Runs only inside a Ray Train worker; nothing here runs at import time."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist

from raytune_hpo.sweep.sections import defaults
from raytune_hpo.train import checkpoint
from raytune_hpo.train.checkpoint import TrialState
from raytune_hpo.train.measure import model_metrics, sample_batch
from raytune_hpo.train.perf import SpeedPath
from raytune_hpo.train.trainable import _epoch_metrics, build_folds, prepare, restore


def shard(index: torch.Tensor, rank: int, ranks: int) -> torch.Tensor:
    """Rank ``rank``'s part of ``index``: every ``ranks``-th entry from ``rank``, the index
    padded first with its own head to a multiple of ``ranks`` (the shards are disjoint but for
    the padding and together cover ``index``)."""
    pad = (-len(index)) % ranks
    padded = torch.cat([index, index[:pad]]) if pad else index
    return padded[rank::ranks]


def _reduced(values: list[float], weight: int, device: torch.device) -> list[float]:
    """``values`` (means over ``weight`` items on this rank) as means over every rank's."""
    t = torch.tensor([v * weight for v in values] + [weight], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return [float(x) for x in t[:-1] / t[-1]]


def _report(metrics: dict[str, Any], state: TrialState, rank: int) -> None:
    """``ray.train.report`` from every rank; rank 0's with the checkpoint."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        checkpoint.save(state, d)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def _restored() -> TrialState | None:
    """The run's last checkpoint (rank 0's), on every rank; None when it starts afresh."""
    import ray.train

    found = ray.train.get_checkpoint()
    return None if found is None else checkpoint.load_checkpoint(found)


def train_cnn_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: ``fit``'s epochs on this rank's shard."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, ranks = ctx.get_world_rank(), ctx.get_world_size()
    cfg = {**defaults(), **config}
    cfg["batch_size"] = max(1, int(cfg["batch_size"]) // ranks)
    prep = prepare(cfg)
    path = SpeedPath(prep.opts)
    folds = build_folds(cfg, prep, path, wrap=lambda m: ray.train.torch.prepare_model(m))
    for fold in folds:
        fold.train, fold.val = shard(fold.train, rank, ranks), shard(fold.val, rank, ranks)
    gen = torch.Generator(device=prep.device)
    gen.manual_seed(int(cfg["seed"]) + rank)
    state = _restored()
    start = 1 if state is None else restore(folds, gen, state, cfg, prep.device)
    if state is not None and rank:
        gen.manual_seed(int(cfg["seed"]) + rank + state.epoch)  # rank 0's state: not this one's
    measured: dict[str, float] = {}
    began = time.perf_counter()
    for epoch in range(start, int(cfg["epochs"]) + 1):
        per_fold = []
        for fold in folds:
            train = _reduced(list(fold.train_epoch(prep, cfg, gen)), len(fold.train), prep.device)
            val = _reduced(list(fold.evaluate(prep)), len(fold.val), prep.device)
            per_fold.append(tuple(train + val))
        metrics = _epoch_metrics(per_fold, epoch, cfg)
        if not measured:
            x = sample_batch(prep.data, folds[0].val, prep.images)
            measured = model_metrics(folds[0].model, x, path, prep.device)
        metrics.update(measured, ranks=ranks, elapsed_s=time.perf_counter() - began)
        state_now = TrialState.capture(
            epoch,
            [f.model.state_dict() for f in folds],
            [f.opt.state_dict() for f in folds],
            gen,
            prep.device,
        )
        _report(metrics, state_now, rank)


__all__ = ["shard", "train_cnn_per_worker"]
