"""Fused trials: N configurations of one architecture trained in one process as one batched
model (HFTA, Wang et al., MLSys 2021), with ``torch.func.stack_module_state``, ``vmap`` and
``functional_call``. Every member sees the same batches (one data pipeline), has its own
weights, optimizer state, learning rate, weight decay, momentum, dropout and DropBlock rates,
and reports the metrics and the checkpoint ``fit`` would (a member's state resumes under
``fit`` and the other way round; continued from another trial's state, a member trains with
its own config's rates, as under ``fit``). Without dropout a member trains to what ``fit``
gives for its config alone, up to float rounding; with dropout the masks come from one batched
draw, so they differ from a lone run's (same distribution).

Members must agree on everything but ``MEMBER_KEYS`` (the model's shape, data, batch size,
seed, optimizer); ``group_key`` is what they share. ``FusedTrainer`` trains one epoch at a time
for whoever is still in the group; ``raytune_hpo.train.fused_tune`` runs it for Ray Tune.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torchvision.ops import DropBlock2d

from raytune_hpo.sweep.sections import defaults
from raytune_hpo.train.checkpoint import TrialState
from raytune_hpo.train.data import batches
from raytune_hpo.train.fused_optim import FusedOptimizer
from raytune_hpo.train.measure import model_metrics, sample_batch
from raytune_hpo.train.models import build_model
from raytune_hpo.train.optimizers import make_optimizer
from raytune_hpo.train.perf import PLAIN, SpeedPath, TrainStep, autocast
from raytune_hpo.train.trainable import DivergedError, prepare

MEMBER_KEYS = ("lr", "weight_decay", "momentum", "dropout", "dropblock", "epochs")
# Group settings: never part of what members must share.
GROUP_KEYS = ("fused", "fused_wait_s", "fused_lookahead")
_log = logging.getLogger("raytune_hpo.train")


def group_key(config: dict[str, Any]) -> str:
    """What the members of one fused group must share, as a string."""
    cfg = {**defaults(), **config}
    shared = {k: v for k, v in cfg.items() if k not in MEMBER_KEYS + GROUP_KEYS}
    return json.dumps(shared, sort_keys=True, default=str)


class MemberDropout(nn.Module):
    """``nn.Dropout`` with its rate in a buffer, so each stacked member has its own rate."""

    p: torch.Tensor  # the buffer (Module's attribute lookup is typed Tensor | Module)

    def __init__(self, p: float) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1 - self.p
        return x * (torch.rand_like(x) < keep) / keep


class MemberDropBlock(nn.Module):
    """torchvision's ``DropBlock2d`` (Ghiasi et al., 2018) with its rate in a buffer."""

    p: torch.Tensor  # the buffer (Module's attribute lookup is typed Tensor | Module)

    def __init__(self, p: float, block_size: int, eps: float) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)), persistent=False)
        self.block_size, self.eps = block_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        _, _, h, w = x.shape
        b = min(self.block_size, h, w)
        gamma = self.p * h * w / (b**2 * (h - b + 1) * (w - b + 1))
        noise = (torch.rand_like(x[:, :, : h - b + 1, : w - b + 1]) < gamma).to(x.dtype)
        noise = nn.functional.pad(noise, [b // 2] * 4, value=0)
        noise = 1 - nn.functional.max_pool2d(noise, kernel_size=b, stride=1, padding=b // 2)
        return x * noise * (noise.numel() / (self.eps + noise.sum()))


def _member_modules(model: nn.Module) -> nn.Module:
    """``model`` with its dropout layers replaced by the per-member-rate ones (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Dropout):
            setattr(model, name, MemberDropout(child.p))
        elif isinstance(child, DropBlock2d):
            setattr(model, name, MemberDropBlock(child.p, child.block_size, child.eps))
        else:
            _member_modules(child)
    return model


def _objective(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's mean cross-entropy (N,) and their sum, whose gradient for member i is
    that of member i's own loss."""
    per_sample = nn.functional.cross_entropy(
        out.permute(1, 2, 0).float(), y[:, None].expand(-1, out.shape[0]), reduction="none"
    )
    losses = per_sample.mean(0)
    return losses.sum(), losses


class _Fold:
    """One fold's members as one stacked model with its fused optimizer and step."""

    def __init__(self, models: list[nn.Module], cfgs: list[dict[str, Any]], trainer) -> None:
        self.keys = list(models[0].state_dict())  # fit's state_dict keys (no rate buffers)
        self.template = models[0]  # a real model: the torch.optim state_dict format
        members = [_member_modules(copy.deepcopy(m)) for m in models]
        params, self.buffers = stack_module_state(members)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.base = copy.deepcopy(members[0]).to("meta")
        device = trainer.device

        def per_member(key: str) -> torch.Tensor:
            return torch.tensor([float(c[key]) for c in cfgs], device=device)

        self.opt = FusedOptimizer(
            cfgs[0]["optimizer"],
            self.params,
            lr=per_member("lr"),
            weight_decay=per_member("weight_decay"),
            momentum=per_member("momentum"),
        )
        self.trainer = trainer
        self._new_step()

    def _new_step(self) -> None:
        self.step = TrainStep(
            forward=self.forward,
            objective=_objective,
            opt_step=self.opt.step,
            zero_grad=self.opt.zero_grad,
            path=self.trainer.path,  # shared by the folds: one failure, one fallback
            device=self.trainer.device,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        return vmap(one, in_dims=(0, 0, None), randomness="different")(self.params, self.buffers, x)

    def select(self, keep: list[int]) -> None:
        idx = torch.tensor(keep, device=self.trainer.device)
        self.params = {k: v.detach()[idx].clone().requires_grad_() for k, v in self.params.items()}
        self.buffers = {k: v[idx].clone() for k, v in self.buffers.items()}
        self.opt.select(idx, self.params)
        self._new_step()  # a captured CUDA graph holds the old shapes

    def member_states(self, i: int, cfg: dict[str, Any]) -> tuple[dict, dict]:
        """Member ``i``'s model and optimizer state dicts, in ``fit``'s format."""
        tensors = {**self.params, **self.buffers}
        model_state = {k: tensors[k][i].detach().clone() for k in self.keys}
        opt = make_optimizer(self.template.parameters(), cfg)
        step, per_param = self.opt.member_state(i)
        counted = self.opt.name in ("adam", "rmsprop")  # the torch optimizers with a step
        for p, fields in zip(self.template.parameters(), per_param.values(), strict=True):
            if fields:
                opt.state[p] = {"step": torch.tensor(step), **fields} if counted else fields
        return model_state, opt.state_dict()

    def load_member(self, i: int, model_state: dict, opt_state: dict, cfg: dict) -> None:
        for k, v in model_state.items():
            target = self.params[k] if k in self.params else self.buffers[k]
            with torch.no_grad():
                target[i].copy_(v)
        opt = make_optimizer(self.template.parameters(), cfg)
        opt.load_state_dict(opt_state)  # only its buffers are taken: the rates are cfg's
        names = [n for n, _ in self.template.named_parameters()]
        per_param, step = {}, 0.0
        for name, p in zip(names, self.template.parameters(), strict=True):
            fields = dict(opt.state.get(p, {}))
            if "step" in fields:
                step = float(fields.pop("step"))
            per_param[name] = fields
        self.opt.load_member_state(i, step, per_param)


class FusedTrainer:
    """Trains ``configs`` (one architecture) as one fused model, one epoch per call.

    ``states``: each member's state from an earlier report (all at the same epoch), or None.
    """

    def __init__(
        self, configs: list[dict[str, Any]], states: list[TrialState | None] | None = None
    ) -> None:
        if not configs:
            raise ValueError("fused: no members")
        self.cfgs = [{**defaults(), **c} for c in configs]
        keys = {group_key(c) for c in self.cfgs}
        if len(keys) > 1:
            a, b = (json.loads(k) for k in sorted(keys)[:2])
            bad = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise ValueError(
                f"fused members differ in {', '.join(bad)}; only {', '.join(MEMBER_KEYS)} "
                "may differ within a group"
            )
        states = states or [None] * len(configs)
        epochs = {None if s is None else s.epoch for s in states}
        if len(epochs) > 1:
            shown = sorted(epochs, key=lambda e: -1 if e is None else e)  # None: a fresh one
            raise ValueError(f"fused members resume from different epochs: {shown}")
        cfg = self.cfgs[0]
        self.device, self.opts, self.data, self.images, splits = prepare(cfg, fused=True)
        self.path = SpeedPath(self.opts)
        self.folds = [self._fold(f, tr, va, states) for f, (tr, va) in enumerate(splits)]
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(cfg["seed"]))
        self.epoch = 0
        if states[0] is not None:
            states[0].restore_rng(self.gen, self.device)
            self.epoch = states[0].epoch
        self.members = list(range(len(configs)))  # indices into configs, still training
        self.measured: dict[str, float] = {}  # one member's params_m and latency_ms

    def _fold(self, f: int, tr, va, states: list[TrialState | None]) -> tuple:
        """Fold ``f``'s members, initialised as ``fit`` initialises them, loaded from their
        states; with the fold's index pair."""
        models = []
        for c in self.cfgs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(c["seed"]) + f)  # fit's initialisation, per fold
                m = build_model(
                    c["model"],
                    in_shape=self.data.shape,
                    num_classes=self.data.num_classes,
                    options=c,
                )
            models.append(m.to(self.device))
        fold = _Fold(models, self.cfgs, self)
        for i, s in enumerate(states):
            if s is not None:
                fold.load_member(i, s.models[f], s.optimizers[f], self.cfgs[i])
        return (fold, *[torch.as_tensor(a, device=self.device) for a in (tr, va)])

    def remove(self, members: list[int]) -> None:
        """Stop training ``members`` (indices into the configs); the others continue."""
        keep = [j for j, m in enumerate(self.members) if m not in set(members)]
        if len(keep) == len(self.members):
            return
        self.members = [self.members[j] for j in keep]
        if self.members:
            for fold, *_ in self.folds:
                fold.select(keep)

    def train_epoch(self) -> dict[int, tuple[dict[str, Any], dict[str, Any]] | Exception]:
        """One epoch for every member still training: member -> (metrics, state), or a
        ``DivergedError``. Members that diverged or reached their ``epochs`` leave the group."""
        self.epoch += 1
        bs = int(self.cfgs[0]["batch_size"])
        per_fold = []
        for fold, tr, va in self.folds:
            fold.base.train()
            aug = bool(self.cfgs[0]["augment"])
            for x, y in batches(
                self.data, tr, batch_size=bs, gen=self.gen, augmentation=aug, images=self.images
            ):
                fold.step(x, y)
            loss_sum, correct, n = fold.step.epoch_metrics()
            val_loss, val_acc = self._evaluate(fold, va)
            per_fold.append(np.stack([loss_sum / n, correct / n, val_loss, val_acc], 1))
        if not self.measured:  # every member has this architecture: one model tells
            fold, _, va = self.folds[0]
            x = sample_batch(self.data, va, self.images)
            self.measured = model_metrics(fold.template, x, self.path, self.device)
        arr = np.stack(per_fold)  # folds x members x 4
        out: dict[int, Any] = {}
        done = []
        for j, m in enumerate(self.members):
            cfg = self.cfgs[m]
            a = arr[:, j, :]
            if not np.isfinite(a[:, [0, 2]]).all():
                out[m] = DivergedError(
                    f"loss diverged at epoch {self.epoch} (train_loss={a[:, 0].mean()}, "
                    f"lr={cfg['lr']}, optimizer={cfg['optimizer']})"
                )
                done.append(m)
                continue
            out[m] = (self._metrics(a, len(self.members)), self._state(j, cfg))
            if self.epoch >= int(cfg["epochs"]):
                done.append(m)
        self.remove(done)
        return out

    def _metrics(self, a: np.ndarray, members: int) -> dict[str, Any]:
        mean = a.mean(0)
        metrics = {
            "epoch": self.epoch,
            "train_loss": float(mean[0]),
            "train_accuracy": float(mean[1]),
            "val_loss": float(mean[2]),
            "val_accuracy": float(mean[3]),
            "fused_members": members,
            **self.measured,
        }
        if len(a) > 1:
            metrics["val_accuracy_std"] = float(a[:, 3].std(ddof=1))
            metrics["val_loss_std"] = float(a[:, 2].std(ddof=1))
        return metrics

    def _state(self, j: int, cfg: dict[str, Any]) -> TrialState:
        models, optimizers = [], []
        for fold, *_ in self.folds:
            ms, os_ = fold.member_states(j, cfg)
            models.append(ms)
            optimizers.append(os_)
        return TrialState.capture(self.epoch, models, optimizers, self.gen, self.device)

    def _evaluate(self, fold: _Fold, index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Each member's validation loss and accuracy, on the speed path while it holds."""
        return self.path.run(
            lambda: self._evaluate_with(fold, index, self.path.chosen),
            lambda: self._evaluate_with(fold, index, PLAIN),
            what="evaluation",
        )

    def _evaluate_with(
        self, fold: _Fold, index: torch.Tensor, opts
    ) -> tuple[np.ndarray, np.ndarray]:
        fold.base.eval()
        loss = torch.zeros(len(self.members), device=self.device)
        correct = torch.zeros(len(self.members), device=self.device)
        with torch.no_grad(), autocast(opts, self.device):
            for x, y in batches(self.data, index, batch_size=1024, images=self.images):
                out = fold.forward(x)
                loss += _objective(out, y)[1] * len(y)
                correct += (out.argmax(-1) == y).sum(-1)
        n = len(index)
        return loss.cpu().numpy() / n, correct.cpu().numpy() / n
