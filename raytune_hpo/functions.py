"""Built-in benchmark functions (minimised) that evaluate in microseconds, for searcher
benchmarks and studies. Each has its box, its global minimum value, and a ``space()`` in the
YAML form. Definitions follow Surjanovic & Bingham's Virtual Library of Simulation Experiments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TestFunction:
    name: str
    dims: int
    bounds: tuple[tuple[float, float], ...]
    f: Callable[[np.ndarray], float]
    minimum: float

    def space(self) -> dict[str, Any]:
        return {
            f"x{i}": {"type": "float", "low": lo, "high": hi}
            for i, (lo, hi) in enumerate(self.bounds)
        }

    def __call__(self, config: dict[str, Any]) -> float:
        return float(self.f(np.array([config[f"x{i}"] for i in range(self.dims)], dtype=float)))


def _branin(x: np.ndarray) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s


def _ackley(x: np.ndarray) -> float:
    d = len(x)
    return float(
        -20 * np.exp(-0.2 * np.sqrt((x**2).sum() / d))
        - np.exp(np.cos(2 * np.pi * x).sum() / d)
        + 20
        + math.e
    )


def _styblinski_tang(x: np.ndarray) -> float:
    return float(0.5 * (x**4 - 16 * x**2 + 5 * x).sum())


def _levy(x: np.ndarray) -> float:
    w = 1 + (x - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    mid = ((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2)).sum()
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + mid + tail)


def make(name: str, dims: int | None = None) -> TestFunction:
    """``branin`` (2-D), ``ackley``, ``styblinski_tang``, ``levy`` (any dimension >= 1)."""
    if name == "branin":
        if dims not in (None, 2):
            raise ValueError("dims: branin is defined in 2 dimensions only")
        return TestFunction("branin", 2, ((-5.0, 10.0), (0.0, 15.0)), _branin, 0.397887)
    if dims is None or dims < 1:
        raise ValueError(f"dims: {name} needs a dimension >= 1")
    if name == "ackley":
        return TestFunction(f"ackley{dims}", dims, ((-32.768, 32.768),) * dims, _ackley, 0.0)
    if name == "styblinski_tang":
        return TestFunction(
            f"styblinski_tang{dims}",
            dims,
            ((-5.0, 5.0),) * dims,
            _styblinski_tang,
            -39.16616570377142 * dims,
        )
    if name == "levy":
        return TestFunction(f"levy{dims}", dims, ((-10.0, 10.0),) * dims, _levy, 0.0)
    raise ValueError(f"unknown function {name!r}; allowed: branin, ackley, styblinski_tang, levy")
