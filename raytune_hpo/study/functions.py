"""Built-in benchmark functions (minimised) that evaluate in microseconds, for searcher
benchmarks and studies. Each has its box, its global minimum value, and a ``space()`` in the
YAML form. Definitions follow Surjanovic & Bingham's Virtual Library of Simulation Experiments.
``Branches`` is a conditional problem (``when:``) built from two of them.
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

    max_budget = 1  # a single fidelity: the value does not depend on the budget

    def __call__(self, config: dict[str, Any]) -> float:
        return float(self.f(np.array([config[f"x{i}"] for i in range(self.dims)], dtype=float)))

    def at(self, config: dict[str, Any], budget: float = 1, rng=None) -> float:
        """The value at ``budget`` (the same at every budget; the ``MultiFidelity`` API)."""
        return self(config)


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


@dataclass(frozen=True)
class MultiFidelity:
    """A multi-fidelity view of a test function: the loss after ``b`` of ``max_budget`` epochs.

    With fidelity ``s = log(b) / log(max_budget)`` (0 at one epoch, 1 at the full budget),
    ``loss(x, b) = f(x + (1 - s) * shift) + (1 - s) * gap + (1 - s) * noise * eps``: a learning
    curve that falls to ``f`` at the full budget, whose low-budget values are noisy (``eps``
    standard normal) and biased (the optimum sits ``shift`` away, so low budgets rank
    configurations differently from the full budget). In the spirit of the multi-fidelity
    benchmarks of Falkner et al. (2018) and Kandasamy et al. (2017).
    """

    base: TestFunction
    max_budget: int = 27
    gap: float = 1.0  # extra loss at one epoch, in units of the base function's range
    noise: float = 0.3
    shift_fraction: float = 0.15  # of each dimension's width

    @property
    def name(self) -> str:
        return f"mf_{self.base.name}"

    @property
    def dims(self) -> int:
        return self.base.dims

    @property
    def minimum(self) -> float:
        return self.base.minimum

    def space(self) -> dict[str, Any]:
        return self.base.space()

    def _scale(self) -> float:
        # A typical spread of the base function: its value range over a fixed probe set.
        probe = np.random.default_rng(0).random((64, self.dims))
        lo = np.array([b[0] for b in self.base.bounds])
        hi = np.array([b[1] for b in self.base.bounds])
        values = [self.base.f(lo + p * (hi - lo)) for p in probe]
        return float(np.std(values)) or 1.0

    def at(self, config: dict[str, Any], budget: float, rng: np.random.Generator) -> float:
        """The loss of ``config`` after ``budget`` epochs (``rng`` draws the noise)."""
        if budget < 1 or budget > self.max_budget:
            raise ValueError(f"budget: must be in [1, {self.max_budget}], got {budget}")
        x = np.array([config[f"x{i}"] for i in range(self.dims)], dtype=float)
        lo = np.array([b[0] for b in self.base.bounds])
        hi = np.array([b[1] for b in self.base.bounds])
        s = math.log(budget) / math.log(self.max_budget) if self.max_budget > 1 else 1.0
        shifted = np.clip(x + (1 - s) * self.shift_fraction * (hi - lo), lo, hi)
        scale = _scale_of(self)
        value = self.base.f(shifted) + (1 - s) * scale * (self.gap + self.noise * rng.normal())
        return float(value)

    def __call__(self, config: dict[str, Any]) -> float:
        return float(self.base(config))


_SCALES: dict[tuple[str, int], float] = {}


def _scale_of(mf: MultiFidelity) -> float:
    key = (mf.base.name, mf.dims)
    if key not in _SCALES:
        _SCALES[key] = mf._scale()
    return _SCALES[key]


@dataclass(frozen=True)
class Branches:
    """A conditional problem: ``branch`` selects which of two functions is evaluated, each
    over parameters of its own. ``branin``: Branin over ``a0``, ``a1``, shifted so that its
    minimum is ``offset`` (1.0). ``tang``: Styblinski-Tang over the first ``depth`` (1-3, an
    int that applies under ``tang`` only) of ``b0``, ``b1``, ``b2``, per dimension and shifted
    to minimum 0; ``b1`` applies when depth >= 2, ``b2`` when depth is 3 (a chain). The global
    minimum is 0, under ``tang`` at any depth. ``space(flat=True)``: the same parameters all
    always present (the function ignores the ones that do not apply)."""

    name: str = "branches"
    offset: float = 1.0
    minimum: float = 0.0
    max_budget = 1
    dims = 7

    def space(self, flat: bool = False) -> dict[str, Any]:
        def when(**w: Any) -> dict[str, Any]:
            return {} if flat else {"when": w}

        b = {"type": "float", "low": -5.0, "high": 5.0}
        return {
            "branch": {"type": "categorical", "choices": ["branin", "tang"]},
            "a0": {"type": "float", "low": -5.0, "high": 10.0, **when(branch="branin")},
            "a1": {"type": "float", "low": 0.0, "high": 15.0, **when(branch="branin")},
            "depth": {"type": "int", "low": 1, "high": 3, **when(branch="tang")},
            "b0": {**b, **when(branch="tang")},
            "b1": {**b, **when(depth=[2, 3])},
            "b2": {**b, **when(depth=3)},
        }

    def __call__(self, config: dict[str, Any]) -> float:
        if config["branch"] == "branin":
            x = np.array([config["a0"], config["a1"]], dtype=float)
            return _branin(x) - 0.397887 + self.offset
        x = np.array([config[f"b{i}"] for i in range(config["depth"])], dtype=float)
        return float(_styblinski_tang(x) / len(x) + 39.16616570377142)

    def at(self, config: dict[str, Any], budget: float = 1, rng=None) -> float:
        return self(config)


FUNCTIONS = ("branin", "ackley", "styblinski_tang", "levy")


def make_problem(name: str, dims: int | None = None, max_budget: int | None = None):
    """A test function, or with ``max_budget`` its multi-fidelity view."""
    fn = make(name, dims)
    if max_budget is None:
        return fn
    if max_budget < 1:
        raise ValueError(f"max_budget: must be >= 1, got {max_budget}")
    return MultiFidelity(fn, int(max_budget))
