"""A trial's state: what the built-in trainable (``fit``, and each member of a fused group)
checkpoints after every epoch and resumes from, defined once.

On disk a state is one file, ``state.pt`` (``torch.save`` of a plain dict), in the directory
of a ``ray.tune.Checkpoint``. Its keys, unchanged since the first release so that older
checkpoints load: ``epoch`` (the last epoch trained), ``models`` and ``optimizers`` (one
``state_dict`` per fold), ``generator`` (the batch-order generator's state), ``torch_rng``
(torch's CPU generator: dropout masks) and, on CUDA only, ``cuda_rng``. With all of them a
resumed trial continues exactly where it stopped; a trial continued from another trial's
state under a new config (population-based training) keeps the weights and optimizer buffers
and takes the new config's settings (``raytune_hpo.sweep.sections.MUTABLE``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

CHECKPOINT_FILE = "state.pt"
REQUIRED_KEYS = ("epoch", "models", "optimizers", "generator", "torch_rng")


@dataclass
class TrialState:
    """One trial after ``epoch``: per fold the model's and the optimizer's ``state_dict``,
    and the random generators' states."""

    epoch: int
    models: list[dict[str, torch.Tensor]]
    optimizers: list[dict[str, Any]]
    generator: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None

    @classmethod
    def capture(
        cls,
        epoch: int,
        models: Sequence[dict[str, torch.Tensor]],
        optimizers: Sequence[dict[str, Any]],
        generator: torch.Generator,
        device: torch.device,
    ) -> TrialState:
        """The state now: the given state dicts, ``generator``'s state and torch's (the CPU
        generator, and ``device``'s where it is a GPU)."""
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(
            epoch=int(epoch),
            models=list(models),
            optimizers=list(optimizers),
            generator=generator.get_state(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=cuda,
        )

    def restore_rng(self, generator: torch.Generator, device: torch.device) -> None:
        """Put ``generator`` and torch's generators where they were when captured."""
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        if device.type == "cuda" and self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, device)

    def to_dict(self) -> dict[str, Any]:
        """The file's format (``cuda_rng`` only where there is one)."""
        out = {k: getattr(self, k) for k in REQUIRED_KEYS}
        if self.cuda_rng is not None:
            out["cuda_rng"] = self.cuda_rng
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialState:
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise ValueError(f"not a trial state: no {', '.join(missing)}")
        return cls(
            epoch=int(d["epoch"]),
            models=list(d["models"]),
            optimizers=list(d["optimizers"]),
            generator=d["generator"],
            torch_rng=d["torch_rng"],
            cuda_rng=d.get("cuda_rng"),
        )


def save(state: TrialState, directory: str | os.PathLike) -> str:
    """Write ``state`` into ``directory`` (for ``tune.Checkpoint.from_directory``); its path."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    torch.save(state.to_dict(), path)
    return path


def load(directory: str | os.PathLike) -> TrialState:
    """The state ``save`` wrote into ``directory`` (tensors, numbers and lists only)."""
    d = torch.load(os.path.join(directory, CHECKPOINT_FILE), weights_only=True)
    return TrialState.from_dict(d)


def load_checkpoint(checkpoint: Any) -> TrialState:
    """The state in a ``ray.tune.Checkpoint``."""
    with checkpoint.as_directory() as d:
        return load(d)


def restore() -> TrialState | None:
    """Inside a Tune trial: the state of its checkpoint (its own last one, or under
    population-based training the one it continues from), or None when it starts afresh."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    return None if checkpoint is None else load_checkpoint(checkpoint)


def report(metrics: dict[str, Any], state: TrialState) -> None:
    """Inside a Tune trial: ``tune.report(metrics)`` with ``state`` as its checkpoint."""
    from ray import tune

    with tempfile.TemporaryDirectory() as d:
        save(state, d)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


__all__ = [
    "CHECKPOINT_FILE",
    "REQUIRED_KEYS",
    "TrialState",
    "load",
    "load_checkpoint",
    "report",
    "restore",
    "save",
]
