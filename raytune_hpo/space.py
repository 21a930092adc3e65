"""Typed search spaces: the YAML form and Ray Tune domains, mapped to Tune, ConfigSpace,
the unit cube and an explicit grid.

Log ranges are sampled log-uniformly (the reciprocal distribution the TinyVGG study used for
the learning rate: Glymov & Lorentzen, the TinyVGG study, section 2.7; docs/papers.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError
from raytune_hpo.params import (  # noqa: F401 - the params are public names of this module too
    PARAM_TYPES,
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    from_tune_domain,
    parse_param,
)

Path = tuple[str, ...]


def _dotted(path: Path) -> str:
    return ".".join(path)


def library_name(path: Path) -> str:
    """A parameter's name for a library (Optuna, ConfigSpace): its path joined by ``.``, with
    ``%`` and ``.`` inside a key written ``%25`` and ``%2E``. Unique and reversible whatever
    characters the keys hold (``a.b`` and ``{a: {b:}}`` are two names); an ordinary name (no
    ``.`` or ``%`` in a key) is its dotted name."""
    return ".".join(key.replace("%", "%25").replace(".", "%2E") for key in path)


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
            raise UserError("must be a mapping of parameter names to definitions", field=where)
        space = cls()
        space._add(d, (), (where,))
        return space

    def _add(self, d: Mapping[str, Any], prefix: Path, where: tuple[str, ...]) -> None:
        from_tune = _tune_domain_types()
        for key, value in d.items():
            if not isinstance(key, str) or not key:
                raise UserError("parameter names must be non-empty strings", field=where)
            path = (*prefix, key)
            here = (*where, key)
            if isinstance(value, Mapping) and "grid_search" in value and len(value) == 1:
                values = value["grid_search"]
                if not isinstance(values, Sequence) or isinstance(values, str) or not values:
                    raise UserError("must be a non-empty list", field=(*here, "grid_search"))
                self.params[path] = CategoricalParam(tuple(values))
            elif isinstance(value, Mapping) and "type" in value:
                self.params[path] = parse_param(here, value)
            elif isinstance(value, Mapping) and {"low", "high", "choices"} & set(value):
                # Without `type` this would be a nested constant: surely a slip.
                raise UserError(
                    f"missing; allowed: {', '.join(PARAM_TYPES)}", field=(*here, "type")
                )
            elif isinstance(value, Mapping):
                if not value:
                    self.constants[path] = {}
                self._add(value, path, here)
            elif from_tune and isinstance(value, from_tune):
                self.params[path] = from_tune_domain(here, value)
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
            path: (tune.grid_search(p.grid_values(("space", *path))) if grid else p.to_tune())
            for path, p in self.params.items()
        }
        return self.nest(flat)

    @property
    def library_names(self) -> list[str]:
        """The parameters' names for libraries (``library_name``), in order."""
        return [library_name(p) for p in self.params]

    def to_optuna(self) -> dict[str, Any]:
        """Optuna distributions keyed by library names (categoricals: the choice's index)."""
        return {library_name(path): p.to_optuna() for path, p in self.params.items()}

    def to_configspace(self, *, seed: int | None = None):
        """A ``ConfigSpace.ConfigurationSpace`` (for BOHB) keyed by library names
        (categoricals: the choice's index)."""
        try:
            import ConfigSpace as CS
        except ImportError as e:
            raise UserError(
                "ConfigSpace is not installed: pip install -e '.[bohb]' in the checkout"
            ) from e
        cs = CS.ConfigurationSpace(seed=seed)
        for path, p in self.params.items():
            cs.add(p.to_configspace(library_name(path)))
        return cs

    def to_library(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration (nested or dotted) as a library's flat parameters."""
        return {
            library_name(path): p.to_library(_lookup(config, path))
            for path, p in self.params.items()
        }

    def from_library(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """A library's flat parameters as a nested configuration (constants included)."""
        return self.nest(
            {path: p.from_library(flat[library_name(path)]) for path, p in self.params.items()}
        )

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' grid values (cartesian product)."""
        axes = [p.grid_values(("space", *k)) for k, p in self.params.items()]
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

    def problems(self, config: Mapping[str, Any]) -> list[str]:
        """What keeps ``config`` (nested, or flat with dotted keys) out of this space: a
        searched parameter missing or with a value it cannot take, one line each."""
        out = []
        for path, p in self.params.items():
            try:
                value = _lookup(config, path)
            except KeyError:
                out.append(f"{_dotted(path)} missing")
                continue
            why = p.problem(value)
            if why is not None:
                out.append(f"{_dotted(path)}: {why}")
        return out

    def flat_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched values of ``config`` keyed by dotted names (where a key holds a dot,
        two parameters may share one: libraries use ``library_names``)."""
        return {_dotted(path): _lookup(config, path) for path in self.params}

    def path_values(self, config: Mapping[str, Any]) -> dict[Path, Any]:
        """The searched values of ``config`` keyed by their paths, in the order of params."""
        return {path: _lookup(config, path) for path in self.params}


def _lookup(config: Mapping[str, Any], path: Path) -> Any:
    """The value at ``path``: in a nested configuration, else under its dotted name."""
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            break
        node = node[key]
    else:
        return node
    dotted = _dotted(path)
    if dotted in config:
        return config[dotted]
    raise KeyError(f"configuration lacks parameter {dotted!r}")


def _tune_domain_types() -> tuple[type, ...]:
    """Tune's Domain class, only when Ray is already imported (no import work otherwise)."""
    import sys

    sample = sys.modules.get("ray.tune.search.sample")
    return (sample.Domain,) if sample is not None else ()
