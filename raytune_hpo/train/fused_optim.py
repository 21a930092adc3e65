"""Optimizers over stacked parameters (member i in row i) with per-member hyperparameters.

``torch.optim`` takes one learning rate per parameter group, and a stacked parameter holds all
members of a fused group in one tensor, so a group needs its own update rule (HFTA, Wang et
al., MLSys 2021, section 3.2 fuses the optimizers the same way). The rules below are those of
``torch.optim.Adam``, ``SGD`` (momentum, no dampening) and ``RMSprop`` (no momentum, not
centred) with L2 weight decay, written with device tensors only (no host syncs), so that a
step can be captured in a CUDA graph. ``member_state``/``load_member_state`` convert one
member's state to and from the ``torch.optim`` ``state_dict`` format that ``fit`` checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

OPTIMIZER_STATE = {
    "adam": ("exp_avg", "exp_avg_sq"),
    "sgd": ("momentum_buffer",),
    "rmsprop": ("square_avg",),
}
_BETAS, _EPS, _ALPHA = (0.9, 0.999), 1e-8, 0.99  # torch.optim's defaults, as fit uses them


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-member values (N,) shaped to broadcast over a stacked (N, ...) tensor."""
    return v.view(-1, *[1] * (like.dim() - 1))


class FusedOptimizer:
    """One of adam/sgd/rmsprop over ``params`` (name -> stacked leaf tensor); ``lr``,
    ``weight_decay`` and ``momentum`` are (N,) tensors, one value per member."""

    def __init__(
        self,
        name: str,
        params: dict[str, torch.Tensor],
        *,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        momentum: torch.Tensor,
    ) -> None:
        if name not in OPTIMIZER_STATE:
            raise ValueError(f"optimizer: unknown {name!r}; allowed: {', '.join(OPTIMIZER_STATE)}")
        self.name, self.params = name, params
        self.lr, self.weight_decay, self.momentum = lr, weight_decay, momentum
        n, device = len(lr), lr.device
        # Per member (a group may be resumed from checkpoints); float64 as torch's bias
        # corrections (1 - 0.999**step loses ~1e-5 of its value in float32).
        self.step_count = torch.zeros(n, device=device, dtype=torch.float64)
        self.state: dict[str, dict[str, torch.Tensor]] = {k: {} for k in OPTIMIZER_STATE[name]}

    def _buffer(self, field: str, key: str) -> torch.Tensor:
        per_param = self.state[field]
        if key not in per_param:
            per_param[key] = torch.zeros_like(self.params[key])
        return per_param[key]

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        update: Callable = getattr(self, f"_{self.name}")
        self.step_count += 1
        for key, p in self.params.items():
            if p.grad is None:
                raise RuntimeError(f"{key} has no gradient: step() comes after backward()")
            grad = p.grad + _rows(self.weight_decay, p) * p
            update(key, p, grad)

    def _adam(self, key: str, p: torch.Tensor, grad: torch.Tensor) -> None:
        b1, b2 = _BETAS
        m, v = self._buffer("exp_avg", key), self._buffer("exp_avg_sq", key)
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        step = _rows(self.step_count, p)
        step_size = (_rows(self.lr, p).double() / (1 - b1**step)).float()
        denom = (v.sqrt() / (1 - b2**step).sqrt().float()).add_(_EPS)
        p.sub_(step_size * m / denom)

    def _sgd(self, key: str, p: torch.Tensor, grad: torch.Tensor) -> None:
        buf = self.state["momentum_buffer"].get(key)
        if buf is None:  # torch's first step: the buffer is the gradient itself
            buf = self.state["momentum_buffer"][key] = grad.clone()
        else:
            buf.mul_(_rows(self.momentum, p)).add_(grad)
        p.sub_(_rows(self.lr, p) * buf)

    def _rmsprop(self, key: str, p: torch.Tensor, grad: torch.Tensor) -> None:
        sq = self._buffer("square_avg", key)
        sq.mul_(_ALPHA).addcmul_(grad, grad, value=1 - _ALPHA)
        p.sub_(_rows(self.lr, p) * grad / sq.sqrt().add_(_EPS))

    def select(self, keep: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Keep the members in ``keep`` (indices); ``params``: the new stacked leaves."""
        self.params = params
        self.lr, self.weight_decay = self.lr[keep], self.weight_decay[keep]
        self.momentum, self.step_count = self.momentum[keep], self.step_count[keep]
        for per_param in self.state.values():
            for key in per_param:
                per_param[key] = per_param[key][keep].clone()

    def member_state(self, i: int) -> tuple[float, dict[str, dict[str, torch.Tensor]]]:
        """Member ``i``'s step count and state tensors (copies), per parameter name."""
        out: dict[str, dict[str, torch.Tensor]] = {key: {} for key in self.params}
        for field, per_param in self.state.items():
            for key, value in per_param.items():
                if field == "momentum_buffer" and float(self.momentum[i]) == 0:
                    continue  # torch keeps no buffer without momentum
                out[key][field] = value[i].clone()  # a snapshot: training goes on
        return float(self.step_count[i]), out

    def load_member_state(
        self, i: int, step: float, state: dict[str, dict[str, torch.Tensor]]
    ) -> None:
        self.step_count[i] = step
        for key, fields in state.items():
            for field, value in fields.items():
                if field not in self.state:
                    continue
                self._buffer(field, key)[i].copy_(value)
