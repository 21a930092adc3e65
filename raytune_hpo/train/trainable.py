"""``train_cnn(config)``: the Ray Tune function trainable of the trainable contract.

Reports every epoch ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss`` and
``val_accuracy`` (with k-fold: means over the folds plus ``val_accuracy_std`` and
``val_loss_std``), and the model's ``params_m`` and ``latency_ms``
(``raytune_hpo.train.measure``, measured once per trial), and checkpoints every epoch
(``raytune_hpo.train.checkpoint``) so that a paused or failed trial resumes from its last
epoch; a trial continued from another trial's checkpoint under a new config (population-based
training) trains on with the new config's ``MUTABLE`` settings. A diverging trial raises
:class:`DivergedError`, which Tune records as a failed trial. Nothing here runs at import
time: Ray workers import this module.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from raytune_hpo.sweep.sections import defaults
from raytune_hpo.train import checkpoint
from raytune_hpo.train.checkpoint import TrialState
from raytune_hpo.train.data import ImageData, batches, load_dataset, make_splits, normalised
from raytune_hpo.train.measure import model_metrics, sample_batch
from raytune_hpo.train.models import build_model
from raytune_hpo.train.optimizers import apply_hyperparameters, make_optimizer
from raytune_hpo.train.perf import (
    PLAIN,
    PerfOptions,
    SpeedPath,
    TrainStep,
    autocast,
    resolve_options,
)

_log = logging.getLogger("raytune_hpo.train")


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: the trial failed, the sweep goes on."""


Report = Callable[[dict[str, Any], TrialState], None]


def resolve_device(choice: str) -> torch.device:
    """The device a ``device`` setting names (``auto``: the GPU where there is one). A trial
    Ray gave a GPU (``CUDA_VISIBLE_DEVICES`` set) on a node where CUDA does not work, or one
    that asks for ``cuda`` there, trains on the CPU with a one-line notice instead of failing."""
    if choice == "cpu" or torch.cuda.is_available():
        return torch.device("cuda" if choice != "cpu" else "cpu")
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if choice == "cuda" or given:
        _log.warning(
            "device %s: CUDA is not available on this node%s; training on the CPU",
            choice,
            f" although the trial was given GPU {given}" if given else "",
        )
    return torch.device("cpu")


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


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = nn.functional.cross_entropy(out, y)
    return loss, loss


class Prepared(NamedTuple):
    device: torch.device
    opts: PerfOptions
    data: ImageData  # on the device
    images: torch.Tensor | None  # normalised, on the device (None: too large to keep)
    splits: list  # (train, validation) index pairs, one per fold


def prepare(cfg: dict[str, Any], *, fused: bool = False) -> Prepared:
    """What training ``cfg`` needs before its first model: the device, the performance options
    (one notice per option ignored), the data and its folds. Seeds torch with ``cfg["seed"]``
    (dropout / DropBlock masks in this process)."""
    seed = int(cfg["seed"])
    device = resolve_device(str(cfg["device"]))
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


@dataclass
class Fold:
    """One fold's model, optimizer, index pair and training step."""

    model: nn.Module
    opt: torch.optim.Optimizer
    train: torch.Tensor
    val: torch.Tensor
    step: TrainStep

    def train_epoch(
        self, prep: Prepared, cfg: dict[str, Any], gen: torch.Generator
    ) -> tuple[float, float]:
        """One epoch of training: its mean loss and accuracy."""
        self.model.train()
        for x, y in batches(
            prep.data,
            self.train,
            batch_size=int(cfg["batch_size"]),
            gen=gen,
            augmentation=bool(cfg["augment"]),
            images=prep.images,
        ):
            self.step(x, y)
        loss_sum, correct, n = self.step.epoch_metrics()  # the epoch's one host sync
        return float(loss_sum) / n, float(correct) / n

    def evaluate(self, prep: Prepared) -> tuple[float, float]:
        """Validation loss and accuracy, on the speed path while it holds."""
        path = self.step.path
        return path.run(
            lambda: _evaluate(
                self.model, self.step.forward, prep.data, self.val, path.chosen, prep.images
            ),
            lambda: _evaluate(self.model, self.model, prep.data, self.val, PLAIN, prep.images),
            what="evaluation",
        )


def build_folds(
    cfg: dict[str, Any],
    prep: Prepared,
    path: SpeedPath,
    *,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> list[Fold]:
    """A freshly initialised model (seeded ``seed + fold``), optimizer and step per fold.
    ``wrap``: what the step trains through instead of the model (data-parallel training:
    Ray Train's ``prepare_model``); the fold keeps the model itself (its state, evaluation)."""
    seed, cuda = int(cfg["seed"]), prep.device.type == "cuda"
    folds = []
    for i, (tr, va) in enumerate(prep.splits):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            model = build_model(
                cfg["model"],
                in_shape=prep.data.shape,
                num_classes=prep.data.num_classes,
                options=cfg,
            ).to(prep.device)
        trained = wrap(model) if wrap is not None else model
        forward = _forward(trained, prep.opts)  # memory format first: the optimizer's follows
        opt = make_optimizer(model.parameters(), cfg, cuda=cuda, capturable=prep.opts.cuda_graphs)
        step = TrainStep(
            forward=forward,
            plain_forward=trained,
            objective=_cross_entropy,
            opt_step=opt.step,
            zero_grad=functools.partial(opt.zero_grad, set_to_none=True),
            path=path,
            device=prep.device,
        )
        train, val = (torch.as_tensor(a, device=prep.device) for a in (tr, va))
        folds.append(Fold(model, opt, train, val, step))
    return folds


def restore(
    folds: list[Fold],
    gen: torch.Generator,
    state: TrialState,
    cfg: dict[str, Any],
    device: torch.device,
) -> int:
    """Load ``state`` into the folds and the generators; the first epoch to train.

    The models were built from ``cfg``, so their dropout and DropBlock rates are the
    config's; the weights come from the state. Loading an optimizer's state brings back the
    hyperparameters it was saved with, so ``cfg``'s (a new config continuing another trial's
    state) are set again afterwards; its buffers (moments, momentum) stay."""
    if len(state.models) != len(folds):
        raise ValueError(f"the state holds {len(state.models)} folds, the config {len(folds)}")
    for fold, model_state, opt_state in zip(folds, state.models, state.optimizers, strict=True):
        fold.model.load_state_dict(model_state)
        fold.opt.load_state_dict(opt_state)
        apply_hyperparameters(fold.opt, cfg)
    state.restore_rng(gen, device)
    return state.epoch + 1


def _epoch_metrics(per_fold: Sequence[tuple[float, ...]], epoch: int, cfg: dict) -> dict[str, Any]:
    """The epoch's result (means over the folds, and their spread with k-fold); raises
    ``DivergedError`` on a NaN or infinite loss."""
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
    if len(per_fold) > 1:
        metrics["val_accuracy_std"] = float(arr[:, 3].std(ddof=1))
        metrics["val_loss_std"] = float(arr[:, 2].std(ddof=1))
    return metrics


def fit(config: dict[str, Any], *, report: Report, state: TrialState | None = None) -> None:
    """Train ``config`` for its epochs, calling ``report(metrics, state)`` after each one;
    ``state`` (from an earlier report, maybe another trial's) resumes at the epoch after it."""
    cfg = {**defaults(), **config}
    prep = prepare(cfg)
    path = SpeedPath(prep.opts)
    folds = build_folds(cfg, prep, path)
    gen = torch.Generator(device=prep.device)
    gen.manual_seed(int(cfg["seed"]))
    start = 1 if state is None else restore(folds, gen, state, cfg, prep.device)
    measured: dict[str, float] = {}
    for epoch in range(start, int(cfg["epochs"]) + 1):
        per_fold = [fold.train_epoch(prep, cfg, gen) + fold.evaluate(prep) for fold in folds]
        metrics = _epoch_metrics(per_fold, epoch, cfg)
        if not measured:  # once, after the first epoch: the speed path has settled by then
            x = sample_batch(prep.data, folds[0].val, prep.images)
            measured = model_metrics(folds[0].model, x, path, prep.device)
        metrics.update(measured)
        new_state = TrialState.capture(
            epoch,
            [f.model.state_dict() for f in folds],
            [f.opt.state_dict() for f in folds],
            gen,  # with torch's generators: the dropout masks, so resuming continues exactly
            prep.device,
        )
        report(metrics, new_state)


def train_cnn(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: per-epoch ``tune.report`` with a checkpoint."""
    fit(config, report=checkpoint.report, state=checkpoint.restore())
