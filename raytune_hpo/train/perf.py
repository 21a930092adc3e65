"""Speed options of the built-in trainable and the training step that applies them.

Config keys (settings of ``train.cnn.CNNSettings``):

- ``amp``: ``auto`` | ``bf16`` | ``off``. bf16 autocast (Micikevicius et al., 2018, with
  bfloat16 instead of fp16 and no loss scaling). ``auto``: bf16 on a CUDA device that
  supports it, off on the CPU (measured: bf16 autocast is ~3x slower on a CPU without
  AVX512-BF16/AMX). ``bf16`` on the CPU is honoured.
- ``channels_last``: ``auto`` | true | false. NHWC memory format for the convolutions.
  ``auto``: on CUDA with bf16 and a convolutional model (tensor-core kernels want NHWC),
  off on the CPU (measured: no gain at our sizes).
- ``compile``: false | true. ``torch.compile`` of the model (inductor). Off by default:
  compiling costs tens of seconds to minutes per trial process, more than a short trial
  gains.
- ``cuda_graphs``: ``auto`` | true | false. Capture one whole training step (forward,
  backward, optimizer step, metric sums) in a CUDA graph and replay it for each full batch
  (PyTorch's "whole-network capture"); the last, partial batch runs eagerly. ``auto``: on
  CUDA when ``batch_size <= 256`` and ``compile`` is off, since small batches of small models
  are bound by kernel launches, not by the GPU. With ``compile`` it selects inductor's
  ``reduce-overhead`` mode instead.

CUDA-only choices on the CPU (and choices fused trials cannot apply) are ignored with a
one-line notice, which ``fit`` logs once per trial.

None of these has to work for a trial to train: where a capture, a compile or an autocast
step raises, ``SpeedPath`` switches the trial (all its folds, or all members of a fused group)
to the plain eager path (fp32, no graphs, no compile) and logs one WARNING; the step that
failed runs again eagerly, so no batch is lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from raytune_hpo.errors import UserError

AMP_CHOICES = ("auto", "bf16", "off")
SWITCH_CHOICES = ("auto", True, False)
GRAPH_MAX_BATCH = 256
_WARMUP_STEPS = 3  # eager steps on a side stream before capture, as PyTorch's notes advise
_log = logging.getLogger("raytune_hpo.train")
T = TypeVar("T")


@dataclass(frozen=True)
class PerfOptions:
    amp: torch.dtype | None  # autocast dtype, None: full precision
    channels_last: bool
    compile_mode: str | None  # torch.compile mode, None: eager
    cuda_graphs: bool  # our whole-step capture

    def describe(self) -> str:
        """The options in use, for a notice (e.g. ``bfloat16 autocast, CUDA graphs``)."""
        parts = [
            f"{str(self.amp).removeprefix('torch.')} autocast" if self.amp else "",
            "channels_last" if self.channels_last else "",
            f"torch.compile ({self.compile_mode})" if self.compile_mode else "",
            "CUDA graphs" if self.cuda_graphs else "",
        ]
        return ", ".join(p for p in parts if p) or "none"


PLAIN = PerfOptions(amp=None, channels_last=False, compile_mode=None, cuda_graphs=False)


class SpeedPath:
    """The speed options the steps of one trial share, until one of them fails.

    ``run(fast, plain)`` calls ``fast()`` while the chosen options hold. The first exception
    from it (a CUDA graph capture, a compile or an autocast step that raises) switches every
    step sharing this path to the plain eager path for good: one WARNING on the logger
    ``raytune_hpo.train``, then ``plain()``. With no speed options chosen there is nothing to
    fall back to, and errors propagate as they are."""

    def __init__(self, opts: PerfOptions) -> None:
        self.chosen = opts
        self.failed = False

    @property
    def opts(self) -> PerfOptions:
        return PLAIN if self.failed else self.chosen

    def run(self, fast: Callable[[], T], plain: Callable[[], T], *, what: str) -> T:
        if self.failed:
            return plain()
        if self.chosen == PLAIN:
            return fast()
        try:
            return fast()
        except Exception as e:  # any failure of the fast path: the plain one is the fallback
            self._fail(e, what)
        return plain()

    def _fail(self, error: Exception, what: str) -> None:
        self.failed = True
        _log.warning(
            "speed options (%s) failed in the %s (%s); the trial continues in the plain eager path",
            self.chosen.describe(),
            what,
            _summary(error),
        )
        _log.debug("the speed options' failure", exc_info=error)


def _summary(error: BaseException) -> str:
    """``Type: message`` of ``error`` and of its root cause where it has one, on one line (a
    compile error's first line names only the backend, its cause comes on the next)."""

    def line(e: BaseException) -> str:
        return f"{type(e).__name__}: " + " ".join(x.strip() for x in str(e).splitlines())

    root, seen = error, {id(error)}
    while root.__cause__ is not None and id(root.__cause__) not in seen:
        root = root.__cause__
        seen.add(id(root))
    text = line(error) if root is error else f"{line(error)} caused by {line(root)}"
    return " ".join(text.split())[:300]


def _switch(cfg: dict[str, Any], key: str) -> str | bool:
    value = cfg.get(key, "auto")
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not (isinstance(value, bool) or value == "auto"):
        raise UserError(f"{value!r} not allowed; allowed: auto, true, false", field=key)
    return value


def resolve_options(
    cfg: dict[str, Any], device: torch.device, *, fused: bool = False
) -> tuple[PerfOptions, list[str]]:
    """The options ``cfg`` asks for on ``device``, and one notice per option ignored."""
    amp = cfg.get("amp", "auto")
    if amp not in AMP_CHOICES:
        raise UserError(f"{amp!r} not allowed; allowed: {', '.join(AMP_CHOICES)}", field="amp")
    channels_last, graphs = _switch(cfg, "channels_last"), _switch(cfg, "cuda_graphs")
    compile_ = cfg.get("compile", False)
    if not isinstance(compile_, bool):
        raise UserError(f"{compile_!r} not allowed; allowed: true, false", field="compile")
    cuda = device.type == "cuda"
    notices = []
    bf16_ok = cuda and amp != "off" and torch.cuda.is_bf16_supported()
    if amp == "bf16" and cuda and not bf16_ok:
        notices.append("amp: bf16 ignored, this GPU does not support bfloat16")
    use_amp = amp == "bf16" and (bf16_ok or not cuda) or amp == "auto" and bf16_ok
    if compile_ and fused:
        notices.append("compile: ignored for fused trials (torch.func.vmap)")
        compile_ = False
    if channels_last is True and fused:
        notices.append("channels_last: ignored for fused trials (torch.func.vmap)")
    conv = cfg.get("model", "tinyvgg") != "mlp"
    use_cl = not fused and (channels_last is True or channels_last == "auto" and cuda and use_amp)
    use_cl = use_cl and conv
    if graphs is True and not cuda:
        notices.append(f"cuda_graphs: ignored on {device.type} (CUDA only)")
    small = int(cfg.get("batch_size", 32)) <= GRAPH_MAX_BATCH
    use_graphs = cuda and (graphs is True or graphs == "auto" and small)
    mode = None
    if compile_:
        mode = "reduce-overhead" if use_graphs else "default"
        use_graphs = False
    opts = PerfOptions(torch.bfloat16 if use_amp else None, use_cl, mode, use_graphs)
    return opts, notices


def autocast(opts: PerfOptions, device: torch.device, *, cache: bool = True):
    if opts.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=opts.amp, cache_enabled=cache)


Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TrainStep:
    """Training steps of one model (or one fused group of models), eager or replayed from a
    CUDA graph, with the epoch's loss and correct counts summed on the device (one host sync
    per epoch).

    ``forward(x) -> logits`` (``(B, K)``, or ``(N, B, K)`` for N fused members);
    ``plain_forward``: the same model without compilation or layout conversion (default:
    ``forward``), for the plain path of ``path``; ``objective(logits, y) -> (scalar to
    minimise, per-member mean loss)``; ``opt_step`` and ``zero_grad`` update the parameters
    (the optimizer must be capturable for graphs)."""

    def __init__(
        self,
        *,
        forward: Callable[[torch.Tensor], torch.Tensor],
        objective: Objective,
        opt_step: Callable[[], Any],
        zero_grad: Callable[[], Any],
        path: SpeedPath,
        device: torch.device,
        plain_forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.forward, self.objective = forward, objective
        self.plain_forward = plain_forward or forward
        self.opt_step, self.zero_grad = opt_step, zero_grad
        self.path, self.device = path, device
        self._graph: Any = None
        self._static: tuple[torch.Tensor, ...] = ()
        self._warm = 0
        self._stream: Any = None
        self._reset_epoch()

    @property
    def opts(self) -> PerfOptions:
        return self.path.opts

    def _reset_epoch(self) -> None:
        self._losses: list[tuple[torch.Tensor, int]] = []
        self._preds: list[torch.Tensor] = []
        self._ys: list[torch.Tensor] = []
        self._graph_batches = 0
        if self._graph is not None and self.path.failed:
            self._graph, self._static = None, ()  # its sums are counted: free its memory
        if self._graph is not None:
            self._static[-2].zero_()
            self._static[-1].zero_()

    def _eager(self, x: torch.Tensor, y: torch.Tensor, *, plain: bool = False) -> None:
        forward = self.plain_forward if plain else self.forward
        with autocast(PLAIN if plain else self.path.chosen, self.device):
            out = forward(x)
            total, losses = self.objective(out, y)
        self.zero_grad()
        total.backward()
        self.opt_step()
        self._member_shape = losses.shape  # () for one model, (N,) for N fused members
        self._losses.append((losses.detach(), len(y)))
        self._preds.append(out.detach().argmax(-1))
        self._ys.append(y)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.path.run(
            lambda: self._fast(x, y),
            lambda: self._eager(x, y, plain=True),
            what="training step",
        )

    def _fast(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not self.path.chosen.cuda_graphs:
            return self._eager(x, y)
        if self._graph is not None and x.shape == self._static[0].shape:
            self._static[0].copy_(x)
            self._static[1].copy_(y)
            self._graph.replay()
            self._graph_batches += 1
            return None
        if self._graph is not None or self._warm < _WARMUP_STEPS:
            if self._stream is None:
                self._stream = torch.cuda.Stream(self.device)
            current = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(current)
            try:
                with torch.cuda.stream(self._stream):
                    self._eager(x, y)
            finally:
                current.wait_stream(self._stream)
            self._warm += 1
            return None
        self._capture(x, y)
        return None

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        static_x, static_y = x.clone(), y.clone()
        loss_sum = torch.zeros(self._member_shape, device=self.device)
        correct = torch.zeros(self._member_shape, device=self.device, dtype=torch.long)
        self.zero_grad()
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream(self.device)
        try:
            with torch.cuda.graph(graph), autocast(self.path.chosen, self.device, cache=False):
                out = self.forward(static_x)
                total, losses = self.objective(out, static_y)
                total.backward()
                self.opt_step()
                loss_sum.add_(losses.detach().float() * len(static_y))
                correct.add_((out.detach().argmax(-1) == static_y).sum(-1))
        except Exception:
            # A capture that fails in capture_end leaves its capture stream current.
            torch.cuda.set_stream(current)
            raise
        self._graph = graph
        self._static = (static_x, static_y, loss_sum, correct)
        graph.replay()  # capturing does not run the step: this is the step on this batch
        self._graph_batches += 1

    def epoch_metrics(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(summed loss, correct count, samples) of the steps since the last call, as numpy
        (one value, or one per fused member); resets the sums."""
        n = sum(b for _, b in self._losses)
        loss_sum: torch.Tensor | float = 0.0
        correct: torch.Tensor | int = 0
        if self._losses:
            weights = torch.tensor([float(b) for _, b in self._losses], device=self.device)
            stacked = torch.stack([v.float() for v, _ in self._losses])
            loss_sum = (stacked * weights.view(-1, *[1] * (stacked.dim() - 1))).sum(0)
            correct = (torch.cat(self._preds, -1) == torch.cat(self._ys)).sum(-1)
        if self._graph_batches:
            b = len(self._static[1])
            n += self._graph_batches * b
            loss_sum = loss_sum + self._static[2]
            correct = correct + self._static[3]
        out = (
            np.asarray(torch.as_tensor(loss_sum).detach().cpu(), dtype=np.float64),
            np.asarray(torch.as_tensor(correct).cpu(), dtype=np.float64),
            n,
        )
        self._reset_epoch()
        return out
