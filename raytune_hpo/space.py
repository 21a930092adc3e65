"""Typed search spaces: the YAML form and Ray Tune domains, mapped to Tune, ConfigSpace,
the unit cube and an explicit grid.

Log ranges are sampled log-uniformly (the reciprocal distribution the TinyVGG study used for
the learning rate, ``../shared/seeds/tinyvgg-grid-random-search.md`` section 2.7).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Path = tuple[str, ...]

PARAM_TYPES = ("float", "int", "categorical")
_PARAM_KEYS = {"type", "low", "high", "log", "choices", "grid"}
# Integer ranges this small are enumerated for grid search without explicit `grid` values.
_MAX_IMPLICIT_INT_GRID = 32


def _dotted(path: Path) -> str:
    return ".".join(path)


@dataclass(frozen=True)
class FloatParam:
    low: float
    high: float
    log: bool = False
    grid: tuple[float, ...] | None = None

    @property
    def dims(self) -> int:
        return 1

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return float(min(max(math.exp(lo + u * (hi - lo)), self.low), self.high))
        return float(self.low + u * (self.high - self.low))

    def to_unit(self, x: Any) -> float:
        x = float(x)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (math.log(x) - lo) / (hi - lo)
        return (x - self.low) / (self.high - self.low)

    def grid_values(self, where: str) -> list[Any]:
        if self.grid is None:
            raise ValueError(f"{where}: grid search needs explicit `grid` values for a float")
        return list(self.grid)

    def to_tune(self) -> Any:
        from ray import tune

        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def to_optuna(self) -> Any:
        import optuna.distributions as od

        return od.FloatDistribution(self.low, self.high, log=self.log)

    def to_configspace(self, name: str) -> Any:
        import ConfigSpace as CS

        return CS.UniformFloatHyperparameter(name, self.low, self.high, log=self.log)

    def to_library(self, value: Any) -> Any:
        return value

    def from_library(self, value: Any) -> float:
        return float(min(max(float(value), self.low), self.high))


@dataclass(frozen=True)
class IntParam:
    """Integer in [low, high], both inclusive. The unit interval is cut into equal cells
    (equal in log space when ``log``), one per integer."""

    low: int
    high: int
    log: bool = False
    grid: tuple[int, ...] | None = None

    @property
    def dims(self) -> int:
        return 1

    def _edges(self) -> tuple[float, float]:
        if self.log:
            return math.log(self.low), math.log(self.high + 1)
        return float(self.low), float(self.high + 1)

    def from_unit(self, u: float) -> int:
        u = min(max(float(u), 0.0), 1.0)
        lo, hi = self._edges()
        v = lo + u * (hi - lo)
        v = math.exp(v) if self.log else v
        return int(min(max(math.floor(v), self.low), self.high))

    def to_unit(self, x: Any) -> float:
        lo, hi = self._edges()
        mid = float(x) + 0.5
        v = math.log(mid) if self.log else mid
        return (v - lo) / (hi - lo)

    def grid_values(self, where: str) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.high - self.low + 1 > _MAX_IMPLICIT_INT_GRID:
            raise ValueError(
                f"{where}: grid search over {self.high - self.low + 1} integers; "
                f"give explicit `grid` values"
            )
        return list(range(self.low, self.high + 1))

    def to_tune(self) -> Any:
        from ray import tune

        return (tune.lograndint if self.log else tune.randint)(self.low, self.high + 1)

    def to_optuna(self) -> Any:
        import optuna.distributions as od

        return od.IntDistribution(self.low, self.high, log=self.log)

    def to_configspace(self, name: str) -> Any:
        import ConfigSpace as CS

        return CS.UniformIntegerHyperparameter(name, self.low, self.high, log=self.log)

    def to_library(self, value: Any) -> Any:
        return value

    def from_library(self, value: Any) -> int:
        return int(min(max(round(float(value)), self.low), self.high))


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

    def grid_values(self, where: str) -> list[Any]:
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


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}.{key}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}.{key}: must be finite, got {value!r}")
    return value


def _parse_param(where: str, d: Mapping[str, Any]) -> Param:
    unknown = set(d) - _PARAM_KEYS
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(_PARAM_KEYS))}"
        )
    kind = d.get("type")
    if kind not in PARAM_TYPES:
        raise ValueError(f"{where}.type: got {kind!r}; allowed: {', '.join(PARAM_TYPES)}")
    grid = d.get("grid")
    if grid is not None and (not isinstance(grid, Sequence) or isinstance(grid, str) or not grid):
        raise ValueError(f"{where}.grid: must be a non-empty list")
    if kind == "categorical":
        choices = d.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or len(choices) == 0:
            raise ValueError(f"{where}.choices: must be a non-empty list")
        extra = {"low", "high", "log"} & set(d)
        if extra:
            raise ValueError(f"{where}: {sorted(extra)} do not apply to a categorical")
        if grid is not None:
            bad = [g for g in grid if g not in choices]
            if bad:
                raise ValueError(f"{where}.grid: {bad} are not among the choices")
        return CategoricalParam(tuple(choices), tuple(grid) if grid is not None else None)
    if "low" not in d or "high" not in d:
        raise ValueError(f"{where}: a {kind} parameter needs `low` and `high`")
    if "choices" in d:
        raise ValueError(f"{where}.choices: only a categorical takes choices")
    low, high = _number(where, "low", d["low"]), _number(where, "high", d["high"])
    log = d.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}.log: must be true or false")
    if low >= high:
        raise ValueError(f"{where}: empty or inverted range, low={low} must be < high={high}")
    if log and low <= 0:
        raise ValueError(f"{where}.low: log: true needs low > 0, got {low}")
    if kind == "int":
        if int(low) != low or int(high) != high:
            raise ValueError(f"{where}: int bounds must be whole numbers, got {low}..{high}")
        low, high = int(low), int(high)
    if grid is not None:
        for g in grid:
            _number(where, "grid", g)
            if not low <= g <= high:
                raise ValueError(f"{where}.grid: {g} lies outside [{low}, {high}]")
            if kind == "int" and int(g) != g:
                raise ValueError(f"{where}.grid: {g} is not an integer")
    if kind == "int":
        return IntParam(low, high, log, tuple(int(g) for g in grid) if grid else None)
    return FloatParam(float(low), float(high), log, tuple(float(g) for g in grid) if grid else None)


def _from_tune_domain(where: str, dom: Any) -> Param:
    from ray.tune.search import sample

    if isinstance(dom, sample.Categorical):
        return CategoricalParam(tuple(dom.categories))
    sampler = dom.get_sampler()
    if isinstance(sampler, sample.Quantized):
        raise ValueError(f"{where}: quantized Tune domains are not supported; use int or grid")
    if not isinstance(sampler, (sample.Uniform, sample.LogUniform)):
        raise ValueError(
            f"{where}: only uniform and log-uniform Tune domains are supported, "
            f"got {type(sampler).__name__}"
        )
    log = isinstance(sampler, sample.LogUniform)
    if isinstance(dom, sample.Integer):  # Tune's integer upper bound is exclusive
        return IntParam(int(dom.lower), int(dom.upper) - 1, log)
    if isinstance(dom, sample.Float):
        return FloatParam(float(dom.lower), float(dom.upper), log)
    raise ValueError(f"{where}: unsupported Tune domain {type(dom).__name__}")


@dataclass
class SearchSpace:
    """Ordered parameters (nested paths) plus constants passed through unchanged."""

    params: dict[Path, Param] = field(default_factory=dict)
    constants: dict[Path, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "space") -> SearchSpace:
        """Build from the YAML form (``{type: float, low:, high:, log:}`` ...) or from a dict
        of Ray Tune domains; plain values are constants; nested dicts keep their nesting."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: must be a mapping of parameter names to definitions")
        space = cls()
        space._add(d, (), where)
        return space

    def _add(self, d: Mapping[str, Any], prefix: Path, where: str) -> None:
        from_tune = _tune_domain_types()
        for key, value in d.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where}: parameter names must be non-empty strings")
            path = (*prefix, key)
            here = f"{where}.{key}"
            if isinstance(value, Mapping) and "grid_search" in value and len(value) == 1:
                values = value["grid_search"]
                if not isinstance(values, Sequence) or isinstance(values, str) or not values:
                    raise ValueError(f"{here}.grid_search: must be a non-empty list")
                self.params[path] = CategoricalParam(tuple(values))
            elif isinstance(value, Mapping) and "type" in value:
                self.params[path] = _parse_param(here, value)
            elif isinstance(value, Mapping) and {"low", "high", "choices"} & set(value):
                # Without `type` this would be a nested constant: surely a slip.
                raise ValueError(f"{here}.type: missing; allowed: {', '.join(PARAM_TYPES)}")
            elif isinstance(value, Mapping):
                if not value:
                    self.constants[path] = {}
                self._add(value, path, here)
            elif from_tune and isinstance(value, from_tune):
                self.params[path] = _from_tune_domain(here, value)
            else:
                self.constants[path] = value

    # ----------------------------------------------------------------- views
    @property
    def names(self) -> list[str]:
        return [_dotted(p) for p in self.params]

    @property
    def dims(self) -> int:
        return len(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def nest(self, flat: Mapping[Path, Any]) -> dict[str, Any]:
        """A nested configuration: the constants plus ``flat`` (path -> value)."""
        out: dict[str, Any] = {}
        for path, value in itertools.chain(self.constants.items(), flat.items()):
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return out

    def to_tune(self, *, grid: bool = False) -> dict[str, Any]:
        """Ray Tune ``param_space``. With ``grid=True`` every parameter becomes a
        ``tune.grid_search`` over its grid values (Ray's own grid search)."""
        from ray import tune

        flat = {
            path: (
                tune.grid_search(p.grid_values(f"space.{_dotted(path)}")) if grid else p.to_tune()
            )
            for path, p in self.params.items()
        }
        return self.nest(flat)

    def to_optuna(self) -> dict[str, Any]:
        """Optuna distributions keyed by dotted names (categoricals: the choice's index)."""
        return {_dotted(path): p.to_optuna() for path, p in self.params.items()}

    def to_configspace(self, *, seed: int | None = None):
        """A ``ConfigSpace.ConfigurationSpace`` (for BOHB) keyed by dotted names
        (categoricals: the choice's index)."""
        try:
            import ConfigSpace as CS
        except ImportError as e:
            raise ValueError(
                "ConfigSpace is not installed: pip install -e '.[bohb]' in the checkout"
            ) from e
        cs = CS.ConfigurationSpace(seed=seed)
        for path, p in self.params.items():
            cs.add(p.to_configspace(_dotted(path)))
        return cs

    def to_library(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration (nested or dotted) as a library's flat parameters."""
        flat = self.flat_config(config)
        return {
            name: p.to_library(flat[name])
            for name, p in zip(flat, self.params.values(), strict=True)
        }

    def from_library(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """A library's flat parameters as a nested configuration (constants included)."""
        return self.nest(
            {path: p.from_library(flat[_dotted(path)]) for path, p in self.params.items()}
        )

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' grid values (cartesian product)."""
        axes = [p.grid_values(f"space.{_dotted(k)}") for k, p in self.params.items()]
        keys = list(self.params)
        return [
            self.nest(dict(zip(keys, combo, strict=True))) for combo in itertools.product(*axes)
        ]

    def from_unit(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Map a point of [0, 1]^dims to a (nested) configuration."""
        u = np.asarray(u, dtype=float).reshape(-1)
        if u.shape[0] != self.dims:
            raise ValueError(f"expected {self.dims} unit coordinates, got {u.shape[0]}")
        flat = {path: p.from_unit(x) for (path, p), x in zip(self.params.items(), u, strict=True)}
        return self.nest(flat)

    def to_unit(self, config: Mapping[str, Any]) -> np.ndarray:
        """Map a (nested, or flat with dotted keys) configuration into [0, 1]^dims."""
        out = np.empty(self.dims)
        for i, (path, p) in enumerate(self.params.items()):
            out[i] = p.to_unit(_lookup(config, path))
        return np.clip(out, 0.0, 1.0)

    def flat_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched values of ``config`` keyed by dotted names."""
        return {_dotted(path): _lookup(config, path) for path in self.params}


def _lookup(config: Mapping[str, Any], path: Path) -> Any:
    dotted = _dotted(path)
    if dotted in config:
        return config[dotted]
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"configuration lacks parameter {dotted!r}")
        node = node[key]
    return node


def _tune_domain_types() -> tuple[type, ...]:
    """Tune's Domain class, only when Ray is already imported (no import work otherwise)."""
    import sys

    sample = sys.modules.get("ray.tune.search.sample")
    return (sample.Domain,) if sample is not None else ()
