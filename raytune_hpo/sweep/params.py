"""Typed parameters of a search space: float (log, quantized), int (log, quantized) and
categorical; each maps itself to and from the unit interval, a grid, Ray Tune, Optuna and
ConfigSpace, and is parsed from the YAML form or from a Ray Tune domain."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError

PARAM_TYPES = ("float", "int", "categorical")
PARAM_KEYS = {"type", "low", "high", "log", "q", "choices", "grid", "when"}
# Integer ranges this small are enumerated for grid search without explicit `grid` values.
_MAX_IMPLICIT_INT_GRID = 32


def _steps(q: float, low: float, high: float) -> tuple[int, int]:
    """``first, last``: the first and last multiple of ``q`` in [low, high] are first * q and
    last * q (the bounds Ray's quantized domains need: ``tune.quniform`` refuses others)."""
    return math.ceil(low / q - 1e-9), math.floor(high / q + 1e-9)


def _snap(x: float, q: float, low: float, high: float) -> float:
    """``x`` rounded to a multiple of ``q`` inside [low, high] (Ray's quantized domains)."""
    first, last = _steps(q, low, high)
    return min(max(round(x / q), first), last) * q


@dataclass(frozen=True)
class FloatParam:
    """A float in [low, high]; ``q``: multiples of q only; ``open_high``: high itself is
    never returned (Ray Tune's ``uniform``/``loguniform`` sample [low, high))."""

    low: float
    high: float
    log: bool = False
    grid: tuple[float, ...] | None = None
    q: float | None = None
    open_high: bool = False

    @property
    def dims(self) -> int:
        return 1

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            x = min(max(math.exp(lo + u * (hi - lo)), self.low), self.high)
        else:
            x = self.low + u * (self.high - self.low)
        return self.nearest(x)

    def nearest(self, x: float) -> float:
        """The valid value nearest ``x`` (in the range: rounded to q, below an open high)."""
        if self.q is not None:
            return float(_snap(x, self.q, self.low, self.high))
        if self.open_high and x >= self.high:
            return float(np.nextafter(self.high, self.low))
        return float(x)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a value of this parameter (None when it is)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
        inside = self.low <= value < self.high if self.open_high else self.low <= value <= self.high
        if not inside:
            closing = ")" if self.open_high else "]"
            return f"{value!r} lies outside [{self.low:g}, {self.high:g}{closing}"
        return None

    def to_unit(self, x: Any) -> float:
        x = float(x)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (math.log(x) - lo) / (hi - lo)
        return (x - self.low) / (self.high - self.low)

    def grid_values(self, where: tuple[str, ...]) -> list[Any]:
        if self.grid is None:
            raise UserError("grid search needs explicit `grid` values for a float", field=where)
        return list(self.grid)

    def to_tune(self) -> Any:
        from ray import tune

        if self.q is not None:
            low, high = (k * self.q for k in _steps(self.q, self.low, self.high))
            return (tune.qloguniform if self.log else tune.quniform)(low, high, self.q)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def to_optuna(self) -> Any:
        import optuna.distributions as od

        # Optuna takes no step on a log range: there from_library rounds to q.
        step = self.q if self.q is not None and not self.log else None
        low, high = self.low, self.high
        if step is not None:  # Optuna wants high - low to be a multiple of the step
            low, high = _snap(low, step, low, high), _snap(high, step, low, high)
        return od.FloatDistribution(low, high, log=self.log, step=step)

    def to_configspace(self, name: str) -> Any:
        import ConfigSpace as CS

        return CS.UniformFloatHyperparameter(name, self.low, self.high, log=self.log)

    def to_library(self, value: Any) -> Any:
        return value

    def from_library(self, value: Any) -> float:
        return self.nearest(min(max(float(value), self.low), self.high))


@dataclass(frozen=True)
class IntParam:
    """Integer in [low, high], both inclusive. The unit interval is cut into equal cells
    (equal in log space when ``log``), one per integer."""

    low: int
    high: int
    log: bool = False
    grid: tuple[int, ...] | None = None
    q: int | None = None  # multiples of q only (Ray's qrandint)

    @property
    def dims(self) -> int:
        return 1

    def nearest(self, v: float) -> int:
        """The valid integer at or below ``v`` (rounded to q when quantized)."""
        if self.q is not None:
            return int(_snap(v, self.q, self.low, self.high))
        return int(min(max(math.floor(v), self.low), self.high))

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a value of this parameter (None when it is)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            return f"{value!r} is not an integer"
        if not self.low <= value <= self.high:
            return f"{value!r} lies outside [{self.low}, {self.high}]"
        return None

    def _edges(self) -> tuple[float, float]:
        if self.log:
            return math.log(self.low), math.log(self.high + 1)
        return float(self.low), float(self.high + 1)

    def from_unit(self, u: float) -> int:
        u = min(max(float(u), 0.0), 1.0)
        lo, hi = self._edges()
        v = lo + u * (hi - lo)
        v = math.exp(v) if self.log else v
        return self.nearest(v if self.q is None else v - 0.5)

    def to_unit(self, x: Any) -> float:
        lo, hi = self._edges()
        mid = float(x) + 0.5
        v = math.log(mid) if self.log else mid
        return (v - lo) / (hi - lo)

    def grid_values(self, where: tuple[str, ...]) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.q is not None:
            values = sorted({self.nearest(v) for v in range(self.low, self.high + 1)})
            if len(values) <= _MAX_IMPLICIT_INT_GRID:
                return values
        if self.high - self.low + 1 > _MAX_IMPLICIT_INT_GRID:
            raise UserError(
                f"grid search over {self.high - self.low + 1} integers; "
                "give explicit `grid` values",
                field=where,
            )
        return list(range(self.low, self.high + 1))

    def to_tune(self) -> Any:
        from ray import tune

        if self.q is not None:  # Tune's quantized integer bounds are both inclusive
            low, high = (k * self.q for k in _steps(self.q, self.low, self.high))
            return (tune.qlograndint if self.log else tune.qrandint)(low, high, self.q)
        return (tune.lograndint if self.log else tune.randint)(self.low, self.high + 1)

    def to_optuna(self) -> Any:
        import optuna.distributions as od

        if self.q is not None and not self.log:
            low, high = self.nearest(self.low), self.nearest(self.high)
            return od.IntDistribution(low, high, step=self.q)
        return od.IntDistribution(self.low, self.high, log=self.log)

    def to_configspace(self, name: str) -> Any:
        import ConfigSpace as CS

        return CS.UniformIntegerHyperparameter(name, self.low, self.high, log=self.log)

    def to_library(self, value: Any) -> Any:
        return value

    def from_library(self, value: Any) -> int:
        return self.nearest(min(max(round(float(value)), self.low), self.high))


@dataclass(frozen=True)
class CategoricalParam:
    choices: tuple[Any, ...]
    grid: tuple[Any, ...] | None = None

    @property
    def dims(self) -> int:
        return 1

    def from_unit(self, u: float) -> Any:
        u = min(max(float(u), 0.0), 1.0)
        n = len(self.choices)
        return self.choices[min(int(u * n), n - 1)]

    def to_unit(self, x: Any) -> float:
        return (self.index(x) + 0.5) / len(self.choices)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not one of the choices (None when it is)."""
        if any(c is value or c == value for c in self.choices):
            return None
        return f"{value!r} is not one of {list(self.choices)}"

    def grid_values(self, where: tuple[str, ...]) -> list[Any]:
        return list(self.grid if self.grid is not None else self.choices)

    # Libraries see a categorical as the index of its choice, so any object can be a choice.
    def to_tune(self) -> Any:
        from ray import tune

        return tune.choice(list(self.choices))

    def to_optuna(self) -> Any:
        import optuna.distributions as od

        return od.CategoricalDistribution(list(range(len(self.choices))))

    def to_configspace(self, name: str) -> Any:
        import ConfigSpace as CS

        return CS.CategoricalHyperparameter(name, list(range(len(self.choices))))

    def index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if c is value or c == value:
                return i
        raise ValueError(f"{value!r} is not one of the choices {list(self.choices)}")

    def to_library(self, value: Any) -> int:
        return self.index(value)

    def from_library(self, value: Any) -> Any:
        return self.choices[int(value)]


Param = FloatParam | IntParam | CategoricalParam


def _number(where: tuple[str, ...], key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"must be a number, got {value!r}", field=(*where, key))
    if not math.isfinite(value):
        raise UserError(f"must be finite, got {value!r}", field=(*where, key))
    return value


def parse_param(where: tuple[str, ...], d: Mapping[str, Any]) -> Param:
    """One parameter of the YAML form (its ``when``, a condition, is the space's to read)."""
    unknown = set(d) - PARAM_KEYS
    if unknown:
        raise UserError(
            f"unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(PARAM_KEYS))}",
            field=where,
        )
    kind = d.get("type")
    if kind not in PARAM_TYPES:
        raise UserError(f"got {kind!r}; allowed: {', '.join(PARAM_TYPES)}", field=(*where, "type"))
    grid = d.get("grid")
    if grid is not None and (not isinstance(grid, Sequence) or isinstance(grid, str) or not grid):
        raise UserError("must be a non-empty list", field=(*where, "grid"))
    if kind == "categorical":
        return _parse_categorical(where, d, grid)
    return _parse_range(where, kind, d, grid)


def _parse_categorical(where: tuple[str, ...], d: Mapping[str, Any], grid) -> CategoricalParam:
    choices = d.get("choices")
    if not isinstance(choices, Sequence) or isinstance(choices, str) or len(choices) == 0:
        raise UserError("must be a non-empty list", field=(*where, "choices"))
    extra = {"low", "high", "log"} & set(d)
    if extra:
        raise UserError(f"{sorted(extra)} do not apply to a categorical", field=where)
    if grid is not None:
        bad = [g for g in grid if g not in choices]
        if bad:
            raise UserError(f"{bad} are not among the choices", field=(*where, "grid"))
    return CategoricalParam(tuple(choices), tuple(grid) if grid is not None else None)


def _parse_range(where: tuple[str, ...], kind: str, d: Mapping[str, Any], grid) -> Param:
    """An int or float range: bounds, log, grid values inside it, multiples of q."""
    if "low" not in d or "high" not in d:
        raise UserError(f"a {kind} parameter needs `low` and `high`", field=where)
    if "choices" in d:
        raise UserError("only a categorical takes choices", field=(*where, "choices"))
    low, high = _number(where, "low", d["low"]), _number(where, "high", d["high"])
    log = d.get("log", False)
    if not isinstance(log, bool):
        raise UserError("must be true or false", field=(*where, "log"))
    if low >= high:
        raise UserError(f"empty or inverted range, low={low} must be < high={high}", field=where)
    if log and low <= 0:
        raise UserError(f"log: true needs low > 0, got {low}", field=(*where, "low"))
    if kind == "int":
        if int(low) != low or int(high) != high:
            raise UserError(f"int bounds must be whole numbers, got {low}..{high}", field=where)
        low, high = int(low), int(high)
    for g in grid or ():
        _number(where, "grid", g)
        if not low <= g <= high:
            raise UserError(f"{g} lies outside [{low}, {high}]", field=(*where, "grid"))
        if kind == "int" and int(g) != g:
            raise UserError(f"{g} is not an integer", field=(*where, "grid"))
    q = d.get("q")
    if q is not None:
        _number(where, "q", q)
        if q <= 0 or (kind == "int" and int(q) != q):
            raise UserError(f"must be a positive {kind}, got {q!r}", field=(*where, "q"))
        first, last = _steps(q, low, high)
        if last < first:
            raise UserError(f"no multiple of {q} lies in [{low}, {high}]", field=(*where, "q"))
    if kind == "int":
        g = tuple(int(v) for v in grid) if grid else None
        return IntParam(int(low), int(high), log, g, int(q) if q is not None else None)
    g = tuple(float(v) for v in grid) if grid else None
    return FloatParam(float(low), float(high), log, g, float(q) if q is not None else None)


def from_tune_domain(where: tuple[str, ...], dom: Any) -> Param:
    from ray.tune.search import sample

    if isinstance(dom, sample.Categorical):
        return CategoricalParam(tuple(dom.categories))
    sampler = dom.get_sampler()
    q = None
    if isinstance(sampler, sample.Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    if not isinstance(sampler, (sample.Uniform, sample.LogUniform)):
        raise UserError(
            "only uniform and log-uniform Tune domains (quantized or not) are supported: a "
            f"searcher needs bounds; got {type(sampler).__name__}",
            field=where,
        )
    log = isinstance(sampler, sample.LogUniform)
    if isinstance(dom, sample.Integer):
        # Tune's integer upper bound is exclusive, but rounding a quantized one reaches it
        # (qrandint's upper bound is inclusive).
        if q:
            return IntParam(int(dom.lower), int(dom.upper), log, q=int(q))
        return IntParam(int(dom.lower), int(dom.upper) - 1, log)
    if isinstance(dom, sample.Float):  # Tune samples [lower, upper)
        lo, hi = float(dom.lower), float(dom.upper)
        if q is not None:
            return FloatParam(lo, hi, log, q=float(q))
        return FloatParam(lo, hi, log, open_high=True)
    raise UserError(f"unsupported Tune domain {type(dom).__name__}", field=where)


__all__ = [
    "PARAM_KEYS",
    "PARAM_TYPES",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Param",
    "from_tune_domain",
    "parse_param",
]
