"""``train_cnn(config)``: the Ray Tune function trainable of the trainable contract.

Reports every epoch ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss`` and
``val_accuracy`` (with k-fold: means over the folds plus ``val_accuracy_std`` and
``val_loss_std``), and checkpoints every epoch so that a paused or failed trial resumes from
its last epoch. A diverging trial raises :class:`DivergedError`, which Tune records as a
failed trial. Nothing here runs at import time: Ray workers import this module.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from raytune_hpo.train.cnn import OPTIMIZERS, defaults
from raytune_hpo.train.data import ImageData, batches, load_dataset, make_splits
from raytune_hpo.train.models import build_model

_CHECKPOINT_FILE = "state.pt"


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: the trial failed, the sweep goes on."""


Report = Callable[[dict[str, Any], dict[str, Any]], None]


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _optimizer(params, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = cfg["optimizer"], float(cfg["lr"]), float(cfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer: unknown {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def _load(cfg: dict[str, Any]) -> ImageData:
    opts = dict(cfg.get("data") or {})
    return load_dataset(cfg["dataset"], seed=int(cfg["seed"]), **opts)


def _evaluate(model: nn.Module, data: ImageData, index: torch.Tensor) -> tuple[float, float]:
    model.eval()
    loss = torch.zeros((), device=data.images.device)
    correct = torch.zeros((), device=data.images.device)
    with torch.no_grad():
        for x, y in batches(data, index, batch_size=1024):
            out = model(x)
            loss += nn.functional.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    n = len(index)
    return float(loss) / n, float(correct) / n


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: ImageData,
    index: torch.Tensor,
    cfg: dict[str, Any],
    gen: torch.Generator,
) -> tuple[float, float]:
    model.train()
    loss_sum = torch.zeros((), device=data.images.device)
    correct = torch.zeros((), device=data.images.device)
    for x, y in batches(
        data, index, batch_size=int(cfg["batch_size"]), gen=gen, augmentation=bool(cfg["augment"])
    ):
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(y)  # one host sync per epoch, not per batch
        correct += (out.detach().argmax(1) == y).sum()
    n = len(index)
    return float(loss_sum) / n, float(correct) / n


def fit(config: dict[str, Any], *, report: Report, state: dict[str, Any] | None = None) -> None:
    """Train ``config`` for its epochs, calling ``report(metrics, state)`` after each one;
    ``state`` (from an earlier report) resumes at the epoch after it."""
    cfg = {**defaults(), **config}
    seed = int(cfg["seed"])
    device = _device(str(cfg["device"]))
    torch.manual_seed(seed)  # dropout / DropBlock masks in this trial's process
    data = _load(cfg)
    splits = make_splits(
        data.labels.numpy(),
        k_folds=int(cfg["k_folds"]),
        val_fraction=float(cfg["val_fraction"]),
        seed=seed,
    )
    data = data.to(device)
    folds = []
    for i, (tr, va) in enumerate(splits):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            model = build_model(
                cfg["model"], in_shape=data.shape, num_classes=data.num_classes, options=cfg
            ).to(device)
        opt = _optimizer(model.parameters(), cfg)
        idx = (torch.as_tensor(tr, device=device), torch.as_tensor(va, device=device))
        folds.append((model, opt, *idx))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    start = 1
    if state is not None:
        for (model, opt, _, _), ms, os_ in zip(
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
        for model, opt, tr, va in folds:
            train_loss, train_acc = _train_epoch(model, opt, data, tr, cfg, gen)
            val_loss, val_acc = _evaluate(model, data, va)
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
