"""``train_cnn(config)``: the Ray Tune function trainable of the trainable contract.

Reports every epoch ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss`` and
``val_accuracy`` (with k-fold: means over the folds plus ``val_accuracy_std`` and
``val_loss_std``), and checkpoints every epoch so that a paused or failed trial resumes from
its last epoch. A diverging trial raises :class:`DivergedError`, which Tune records as a
failed trial. Nothing here runs at import time: Ray workers import this module.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from raytune_hpo.train.data import ImageData, batches, load_dataset, make_splits, normalised
from raytune_hpo.train.models import build_model
from raytune_hpo.train.perf import PerfOptions, TrainStep, autocast, resolve_options
from raytune_hpo.train.settings import OPTIMIZERS, defaults

_CHECKPOINT_FILE = "state.pt"
_log = logging.getLogger("raytune_hpo.train")


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: the trial failed, the sweep goes on."""


Report = Callable[[dict[str, Any], dict[str, Any]], None]


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _optimizer(
    params, cfg: dict[str, Any], *, cuda: bool = False, capturable: bool = False
) -> torch.optim.Optimizer:
    """The configured optimizer; on CUDA the fused (one-kernel) implementation, or the
    capturable one when steps are replayed from a CUDA graph."""
    name, lr, wd = cfg["optimizer"], float(cfg["lr"]), float(cfg["weight_decay"])
    fast: dict[str, Any] = {"capturable": True} if capturable else {"fused": True} if cuda else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fast)
    if name == "sgd":
        fast.pop("capturable", None)  # SGD keeps no step count: graph-safe as it is
        return torch.optim.SGD(
            params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd, **fast
        )
    if name == "rmsprop":
        fast.pop("fused", None)
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, **fast)
    raise ValueError(f"optimizer: unknown {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def _load(cfg: dict[str, Any]) -> ImageData:
    opts = dict(cfg.get("data") or {})
    return load_dataset(cfg["dataset"], seed=int(cfg["seed"]), **opts)


def _forward(model: nn.Module, opts: PerfOptions) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` in the memory format and compilation ``opts`` ask for, as a function."""
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    run = torch.compile(model, mode=opts.compile_mode) if opts.compile_mode else model
    if opts.channels_last:
        return lambda x: run(x.contiguous(memory_format=torch.channels_last))
    return run


def _evaluate(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: ImageData,
    index: torch.Tensor,
    opts: PerfOptions,
    images: torch.Tensor | None,
) -> tuple[float, float]:
    model.eval()
    loss = torch.zeros((), device=data.images.device)
    correct = torch.zeros((), device=data.images.device)
    with torch.no_grad(), autocast(opts, data.images.device):
        for x, y in batches(data, index, batch_size=1024, images=images):
            out = forward(x)
            loss += nn.functional.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    n = len(index)
    return float(loss) / n, float(correct) / n


def _train_epoch(
    step: TrainStep,
    model: nn.Module,
    data: ImageData,
    index: torch.Tensor,
    cfg: dict[str, Any],
    gen: torch.Generator,
    images: torch.Tensor | None,
) -> tuple[float, float]:
    model.train()
    for x, y in batches(
        data,
        index,
        batch_size=int(cfg["batch_size"]),
        gen=gen,
        augmentation=bool(cfg["augment"]),
        images=images,
    ):
        step(x, y)
    loss_sum, correct, n = step.epoch_metrics()  # the epoch's one host sync
    return float(loss_sum) / n, float(correct) / n


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = nn.functional.cross_entropy(out, y)
    return loss, loss


class Prepared(NamedTuple):
    device: torch.device
    opts: PerfOptions
    data: ImageData  # on the device
    images: torch.Tensor  # normalised, on the device
    splits: list  # (train, validation) index pairs, one per fold


def prepare(cfg: dict[str, Any], *, fused: bool = False) -> Prepared:
    """What training ``cfg`` needs before its first model: the device, the performance options
    (one notice per option ignored), the data and its folds. Seeds torch with ``cfg["seed"]``
    (dropout / DropBlock masks in this process)."""
    seed = int(cfg["seed"])
    device = _device(str(cfg["device"]))
    opts, notices = resolve_options(cfg, device, fused=fused)
    for notice in notices:
        _log.warning(notice)
    torch.manual_seed(seed)
    data = _load(cfg)
    splits = make_splits(
        data.labels.numpy(),
        k_folds=int(cfg["k_folds"]),
        val_fraction=float(cfg["val_fraction"]),
        seed=seed,
    )
    data = data.to(device)
    return Prepared(device, opts, data, normalised(data), splits)


def fit(config: dict[str, Any], *, report: Report, state: dict[str, Any] | None = None) -> None:
    """Train ``config`` for its epochs, calling ``report(metrics, state)`` after each one;
    ``state`` (from an earlier report) resumes at the epoch after it."""
    cfg = {**defaults(), **config}
    seed = int(cfg["seed"])
    device, opts, data, images, splits = prepare(cfg)
    folds = []
    for i, (tr, va) in enumerate(splits):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            model = build_model(
                cfg["model"], in_shape=data.shape, num_classes=data.num_classes, options=cfg
            ).to(device)
        forward = _forward(model, opts)  # memory format first: the optimizer's state follows
        opt = _optimizer(
            model.parameters(), cfg, cuda=device.type == "cuda", capturable=opts.cuda_graphs
        )
        step = TrainStep(
            forward=forward,
            objective=_cross_entropy,
            opt_step=opt.step,
            zero_grad=lambda opt=opt: opt.zero_grad(set_to_none=True),
            opts=opts,
            device=device,
        )
        idx = (torch.as_tensor(tr, device=device), torch.as_tensor(va, device=device))
        folds.append((model, opt, *idx, forward, step))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    start = 1
    if state is not None:
        for (model, opt, *_), ms, os_ in zip(
            folds, state["models"], state["optimizers"], strict=True
        ):
            model.load_state_dict(ms)
            opt.load_state_dict(os_)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start = int(state["epoch"]) + 1

    for epoch in range(start, int(cfg["epochs"]) + 1):
        per_fold = []
        for model, _, tr, va, forward, step in folds:
            train_loss, train_acc = _train_epoch(step, model, data, tr, cfg, gen, images)
            val_loss, val_acc = _evaluate(model, forward, data, va, opts, images)
            per_fold.append((train_loss, train_acc, val_loss, val_acc))
        arr = np.asarray(per_fold)
        if not np.isfinite(arr[:, [0, 2]]).all():
            raise DivergedError(
                f"loss diverged at epoch {epoch} (train_loss={arr[:, 0].mean()}, "
                f"lr={cfg['lr']}, optimizer={cfg['optimizer']})"
            )
        mean = arr.mean(0)
        metrics = {
            "epoch": epoch,
            "train_loss": float(mean[0]),
            "train_accuracy": float(mean[1]),
            "val_loss": float(mean[2]),
            "val_accuracy": float(mean[3]),
        }
        if len(folds) > 1:
            metrics["val_accuracy_std"] = float(arr[:, 3].std(ddof=1))
            metrics["val_loss_std"] = float(arr[:, 2].std(ddof=1))
        new_state = {
            "epoch": epoch,
            "models": [m.state_dict() for m, *_ in folds],
            "optimizers": [o.state_dict() for _, o, *_ in folds],
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout masks: resume continues exactly
        }
        if device.type == "cuda":
            new_state["cuda_rng"] = torch.cuda.get_rng_state(device)
        report(metrics, new_state)


def train_cnn(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: per-epoch ``tune.report`` with a checkpoint."""
    from ray import tune

    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, _CHECKPOINT_FILE), weights_only=False)

    def report(metrics: dict[str, Any], new_state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as d:
            torch.save(new_state, os.path.join(d, _CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    fit(config, report=report, state=state)
