"""The built-in trainable's optimizers (``torch.optim``'s Adam, SGD, RMSprop) and the settings
of a config they take, written once: ``make_optimizer`` builds one from them, and
``apply_hyperparameters`` puts a new config's values into an optimizer whose state was loaded
from a checkpoint (``load_state_dict`` restores the old values with the buffers)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from raytune_hpo.sweep.sections import OPTIMIZERS


def hyperparameters(cfg: dict[str, Any]) -> dict[str, float]:
    """The values of ``cfg`` the configured optimizer takes, as its ``param_groups`` hold
    them (``momentum``: SGD only)."""
    name = cfg["optimizer"]
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    out = {"lr": float(cfg["lr"]), "weight_decay": float(cfg["weight_decay"])}
    if name == "sgd":
        out["momentum"] = float(cfg["momentum"])
    return out


def make_optimizer(
    params: Iterable[torch.Tensor],
    cfg: dict[str, Any],
    *,
    cuda: bool = False,
    capturable: bool = False,
) -> torch.optim.Optimizer:
    """The configured optimizer; on CUDA the fused (one-kernel) implementation, or the
    capturable one when steps are replayed from a CUDA graph."""
    name = cfg["optimizer"]
    hyper: dict[str, Any] = hyperparameters(cfg)  # each optimizer's own keywords
    fast: dict[str, Any] = {"capturable": True} if capturable else {"fused": True} if cuda else {}
    if name == "adam":
        return torch.optim.Adam(params, **hyper, **fast)
    if name == "sgd":
        fast.pop("capturable", None)  # SGD keeps no step count: graph-safe as it is
        return torch.optim.SGD(params, **hyper, **fast)
    fast.pop("fused", None)  # rmsprop
    return torch.optim.RMSprop(params, **hyper, **fast)


def apply_hyperparameters(opt: torch.optim.Optimizer, cfg: dict[str, Any]) -> None:
    """Set ``cfg``'s values in every parameter group of ``opt`` (its buffers stay)."""
    hyper = hyperparameters(cfg)
    for group in opt.param_groups:
        group.update(hyper)


__all__ = ["apply_hyperparameters", "hyperparameters", "make_optimizer"]
