"""Typed search spaces: the YAML form and Ray Tune domains, mapped to Tune, ConfigSpace,
the unit cube and an explicit grid.

Log ranges are sampled log-uniformly (the reciprocal distribution the TinyVGG study used for
the learning rate: Glymov & Lorentzen, the TinyVGG study, section 2.7; docs/papers.md).

A space may be conditional (``when:``, ``raytune_hpo.sweep.conditions``): a parameter applies only
for some values of its parents. Configurations hold the active parameters only. The unit cube
keeps one coordinate per parameter: ``from_unit`` leaves the inactive ones out, ``to_unit``
puts an absent (inactive) parameter at the centre, ``IMPUTED``; ``canonical`` does the same to
unit points, so that distances between points count the active coordinates only (two points
equal on their active parameters are at distance 0; an active value against an inactive one
counts its distance from the centre). ``grid()`` enumerates the active combinations only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raytune_hpo.errors import UserError
from raytune_hpo.sweep import conditions as cond
from raytune_hpo.sweep.conditions import Condition
from raytune_hpo.sweep.params import (  # noqa: F401 - the params are public names of this module too
    PARAM_TYPES,
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    from_tune_domain,
    parse_param,
)

Path = tuple[str, ...]
# The unit coordinate of an inactive parameter: the centre of its interval.
IMPUTED = 0.5


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
    """Ordered parameters (nested paths) plus constants passed through unchanged, and the
    conditions of the conditional parameters (path -> conditions that must all hold)."""

    params: dict[Path, Param] = field(default_factory=dict)
    constants: dict[Path, Any] = field(default_factory=dict)
    conditions: dict[Path, tuple[Condition, ...]] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A space pickled before conditions existed (a searcher's saved state) has none.
        self.__dict__.update(state)
        self.__dict__.setdefault("conditions", {})

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "space") -> SearchSpace:
        """Build from the YAML form (``{type: float, low:, high:, log:}`` ...) or from a dict
        of Ray Tune domains; plain values are constants; nested dicts keep their nesting."""
        if not isinstance(d, Mapping):
            raise UserError("must be a mapping of parameter names to definitions", field=where)
        space = cls()
        whens: dict[Path, tuple[tuple[str, ...], Any]] = {}
        space._add(d, (), (where,), whens)
        space.conditions = cond.resolve(whens, space.params, space.constants)
        return space

    def _add(self, d: Mapping[str, Any], prefix: Path, where: tuple[str, ...], whens) -> None:
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
                if "when" in value:
                    whens[path] = (here, value["when"])
            elif cond.conditional_constant(value):
                raise UserError(
                    "a condition applies to a searched parameter (give its type); a constant "
                    "is always passed",
                    field=(*here, "when"),
                )
            elif isinstance(value, Mapping) and {"low", "high", "choices"} & set(value):
                # Without `type` this would be a nested constant: surely a slip.
                raise UserError(
                    f"missing; allowed: {', '.join(PARAM_TYPES)}", field=(*here, "type")
                )
            elif isinstance(value, Mapping):
                if not value:
                    self.constants[path] = {}
                self._add(value, path, here, whens)
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

    # ----------------------------------------------------------------- conditions
    @property
    def conditional(self) -> bool:
        """Whether some parameter applies only for some values of others (``when:``)."""
        return bool(self.conditions)

    @property
    def order(self) -> list[Path]:
        """The parameters, parents before their children (else as declared)."""
        return list(self._order())

    def _order(self) -> tuple[Path, ...]:
        if not self.conditions:
            return tuple(self.params)
        stamp = (id(self.conditions), len(self.conditions), len(self.params))
        cached = self.__dict__.get("_sorted")
        if cached is None or cached[0] != stamp:  # sorted once per set of conditions
            cached = (stamp, tuple(cond.order(self.params, self.conditions)))
            self.__dict__["_sorted"] = cached
        return cached[1]

    def is_active(self, path: Path, values: Mapping[Path, Any]) -> bool:
        """Whether ``path`` applies given the active values of its parents (path -> value)."""
        return all(
            c.parent in values and c.holds(values[c.parent]) for c in self.conditions.get(path, ())
        )

    def active_values(self, flat: Mapping[Path, Any]) -> dict[Path, Any]:
        """The values of ``flat`` (path -> value) whose parameters are active, in the order of
        ``params``; an absent parameter's children are inactive."""
        if not self.conditions:
            return {path: flat[path] for path in self.params if path in flat}
        kept: dict[Path, Any] = {}
        for path in self._order():
            if path in flat and self.is_active(path, kept):
                kept[path] = flat[path]
        return {path: kept[path] for path in self.params if path in kept}

    def active_flags(self, values: Sequence[Any]) -> tuple[bool, ...]:
        """Which parameters apply, given a value for each (in the order of ``params``)."""
        kept = self.active_values(dict(zip(self.params, values, strict=True)))
        return tuple(path in kept for path in self.params)

    def active(self, config: Mapping[str, Any]) -> list[Path]:
        """The searched parameters that apply to ``config`` (nested, or flat with dotted
        keys): those whose conditions hold on its values, in the order of ``params``."""
        present = {}
        for path in self.params:
            try:
                present[path] = _lookup(config, path)
            except KeyError:
                present[path] = cond.ABSENT
        values: dict[Path, Any] = {}
        for path in self._order():
            if self.is_active(path, values):
                values[path] = present[path]
        return [path for path in self.params if path in values]

    def active_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` (nested) without the searched parameters that do not apply to it."""
        drop = set(self.params) - set(self.active(config))
        return cond.without(config, drop) if drop else dict(config)

    def walk(self, draw: Callable[[Path, Param], Any]) -> dict[Path, Any]:
        """Values drawn one parameter at a time, parents first, for the active parameters
        only (define-by-run): ``draw(path, param)`` returns the parameter's value."""
        values: dict[Path, Any] = {}
        for path in self._order():
            if self.is_active(path, values):
                values[path] = draw(path, self.params[path])
        return {path: values[path] for path in self.params if path in values}

    def active_mask(self, u: np.ndarray) -> np.ndarray:
        """For unit points ``u`` (n x dims), which coordinates are active (n x dims)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        mask = np.ones(u.shape, dtype=bool)
        if not self.conditions:
            return mask
        column = {path: j for j, path in enumerate(self.params)}
        for path in self._order():
            j = column[path]
            for c in self.conditions.get(path, ()):
                holds = cond.holds_at(self.params[c.parent], c, u[:, column[c.parent]])
                mask[:, j] &= mask[:, column[c.parent]] & holds
        return mask

    def canonical(self, u: np.ndarray) -> np.ndarray:
        """Unit points with each inactive coordinate at ``IMPUTED`` (a copy; the points
        themselves when nothing is conditional)."""
        if not self.conditions:
            return u
        u = np.array(u, dtype=float)
        return np.where(self.active_mask(u).reshape(u.shape), u, IMPUTED)

    def key(self, config: Mapping[str, Any]) -> tuple:
        """A hashable identity of ``config``'s active searched values (categoricals by the
        index of their choice; None for an inactive parameter)."""
        values = self.path_values(config)
        return tuple(
            p.to_library(values[path]) if path in values else None
            for path, p in self.params.items()
        )

    def activating(self, path: Path) -> dict[Path, Any]:
        """Values of ``path``'s parents (and theirs) under which it applies ({} if always)."""
        return cond.activating(self.conditions, path) or {}

    def flat(self) -> SearchSpace:
        """The same parameters and constants without conditions (every parameter always)."""
        return SearchSpace(dict(self.params), dict(self.constants))

    def describe(self, path: Path) -> str:
        """When ``path`` applies, in words (``optimizer is 'sgd' and layers in [2, 3]``)."""
        return " and ".join(str(c) for c in self.conditions.get(path, ())) or "always"

    # ----------------------------------------------------------------- conversions
    def to_tune(self, *, grid: bool = False) -> dict[str, Any]:
        """Ray Tune ``param_space``. With ``grid=True`` every parameter becomes a
        ``tune.grid_search`` over its grid values (Ray's own grid search). Tune domains cannot
        say when a parameter applies: conditional parameters are domains like the others
        (the ``random``/``grid`` searchers leave the inactive ones out of each trial)."""
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
        """Optuna distributions keyed by library names (categoricals: the choice's index);
        every parameter, conditional ones included (a trial holds the active ones)."""
        return {library_name(path): p.to_optuna() for path, p in self.params.items()}

    def to_configspace(self, *, seed: int | None = None):
        """A ``ConfigSpace.ConfigurationSpace`` (for BOHB) keyed by library names
        (categoricals: the choice's index), with the conditions as ``EqualsCondition`` /
        ``InCondition``, several of one parameter joined by ``AndConjunction``."""
        try:
            import ConfigSpace as CS
        except ImportError as e:
            raise UserError(
                "ConfigSpace is not installed: pip install -e '.[bohb]' in the checkout"
            ) from e
        cs = CS.ConfigurationSpace(seed=seed)
        hps = {path: p.to_configspace(library_name(path)) for path, p in self.params.items()}
        cs.add(list(hps.values()))
        for path, conds in self.conditions.items():
            parts: list[Any] = []  # ConfigSpace's EqualsCondition and InCondition
            for c in conds:
                values = [self.params[c.parent].to_library(v) for v in c.values]
                child, parent = hps[path], hps[c.parent]
                if len(values) == 1:
                    parts.append(CS.EqualsCondition(child, parent, values[0]))
                else:
                    parts.append(CS.InCondition(child, parent, values))
            cs.add(parts[0] if len(parts) == 1 else CS.AndConjunction(*parts))
        return cs

    def to_library(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration (nested or dotted) as a library's flat parameters (the active
        ones)."""
        return {
            library_name(path): self.params[path].to_library(value)
            for path, value in self.path_values(config).items()
        }

    def from_library(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """A library's flat parameters as a nested configuration (constants included); a
        parameter that does not apply is left out, given or not."""
        return self.nest(self.walk(lambda path, p: p.from_library(flat[library_name(path)])))

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' grid values (cartesian product); in a
        conditional space every combination of the active parameters' values, once."""
        combos: list[dict[Path, Any]] = [{}]
        for path in self._order():
            values = self.params[path].grid_values(("space", *path))
            grown = []
            for combo in combos:
                if self.is_active(path, combo):
                    grown += [{**combo, path: v} for v in values]
                else:
                    grown.append(combo)
            combos = grown
        return [self.nest({k: c[k] for k in self.params if k in c}) for c in combos]

    def from_unit(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Map a point of [0, 1]^dims to a (nested) configuration of the active parameters."""
        u = np.asarray(u, dtype=float).reshape(-1)
        if u.shape[0] != self.dims:
            raise ValueError(f"expected {self.dims} unit coordinates, got {u.shape[0]}")
        if not self.conditions:
            return self.nest(
                {path: p.from_unit(x) for (path, p), x in zip(self.params.items(), u, strict=True)}
            )
        at = dict(zip(self.params, u, strict=True))
        return self.nest(self.walk(lambda path, p: p.from_unit(at[path])))

    def to_unit(self, config: Mapping[str, Any]) -> np.ndarray:
        """Map a (nested, or flat with dotted keys) configuration into [0, 1]^dims; an
        inactive parameter, given or not, is at ``IMPUTED``."""
        out = np.full(self.dims, IMPUTED)
        values = self.path_values(config)
        for i, (path, p) in enumerate(self.params.items()):
            if path in values:
                out[i] = p.to_unit(values[path])
        return np.clip(out, 0.0, 1.0)

    def problems(self, config: Mapping[str, Any]) -> list[str]:
        """What keeps ``config`` (nested, or flat with dotted keys) out of this space: a
        searched parameter missing or with a value it cannot take, or given where it does not
        apply, one line each."""
        out = []
        active = set(self.active(config))
        for path, p in self.params.items():
            try:
                value = _lookup(config, path)
            except KeyError:
                if path in active:
                    out.append(f"{_dotted(path)} missing")
                continue
            if path not in active:
                out.append(f"{_dotted(path)} given where it does not apply ({self.describe(path)})")
                continue
            why = p.problem(value)
            if why is not None:
                out.append(f"{_dotted(path)}: {why}")
        return out

    def flat_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched values of ``config`` keyed by dotted names, the active ones (where a
        key holds a dot, two parameters may share one: libraries use ``library_names``)."""
        return {_dotted(path): value for path, value in self.path_values(config).items()}

    def path_values(self, config: Mapping[str, Any]) -> dict[Path, Any]:
        """The searched values of ``config`` keyed by their paths, in the order of params: the
        active ones (a KeyError for one missing); an inactive one is left out, given or not."""
        if not self.conditions:
            return {path: _lookup(config, path) for path in self.params}
        return self.walk(lambda path, p: _lookup(config, path))


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
