"""What a trial's model costs, for multi-objective sweeps: its size (``params_m``, millions of
parameters) and its inference time (``latency_ms``, milliseconds per image on the trial's
device, in eval mode, under the trial's autocast and memory format: ``WARMUP_BATCHES``
untimed batches of ``LATENCY_BATCH`` images, then the median of ``TIMED_BATCHES`` timed
ones). The model runs eagerly here, not compiled, so that measuring costs no recompilation;
a trial measures once and reports the figures with every epoch."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from raytune_hpo.train.data import ImageData, batches
from raytune_hpo.train.perf import PLAIN, PerfOptions, SpeedPath, autocast

LATENCY_BATCH = 32
WARMUP_BATCHES = 2
TIMED_BATCHES = 5


def params_m(model: nn.Module) -> float:
    """The model's parameter count in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def sample_batch(
    data: ImageData, index: torch.Tensor, images: torch.Tensor | None, size: int = LATENCY_BATCH
) -> torch.Tensor:
    """``size`` normalised images of ``index`` (repeated where it holds fewer)."""
    idx = index[torch.arange(size, device=index.device) % len(index)]
    x, _ = next(batches(data, idx, batch_size=size, images=images))
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency_ms(
    model: nn.Module, x: torch.Tensor, *, opts: PerfOptions, device: torch.device
) -> float:
    """Median milliseconds per image of ``model`` on the batch ``x``, in eval mode."""
    if opts.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    training = model.training
    model.eval()
    times = []
    try:
        with autocast(opts, device):
            for i in range(WARMUP_BATCHES + TIMED_BATCHES):
                _sync(device)
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                if i >= WARMUP_BATCHES:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(training)
    return 1000.0 * statistics.median(times) / len(x)


def model_metrics(
    model: nn.Module, x: torch.Tensor, path: SpeedPath, device: torch.device
) -> dict[str, float]:
    """``params_m`` and ``latency_ms`` of ``model`` (on the batch ``x``), under the trial's
    speed options while they hold."""
    latency = path.run(
        lambda: latency_ms(model, x, opts=path.chosen, device=device),
        lambda: latency_ms(model, x, opts=PLAIN, device=device),
        what="latency measurement",
    )
    return {"params_m": params_m(model), "latency_ms": latency}


__all__ = [
    "LATENCY_BATCH",
    "TIMED_BATCHES",
    "WARMUP_BATCHES",
    "latency_ms",
    "model_metrics",
    "params_m",
    "sample_batch",
]
