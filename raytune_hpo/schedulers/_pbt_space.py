"""The sweep's space as population-based training uses it: Ray's ``hyperparam_mutations`` (PBT)
and ``hyperparam_bounds`` (PB2) from the space, each mutated value put back inside its
parameter (``Keep``), and a config with the parameters that apply to it (``when:``)."""

from __future__ import annotations

import random
from typing import Any

from raytune_hpo.sweep.conditions import ABSENT, without
from raytune_hpo.sweep.space import CategoricalParam, FloatParam, SearchSpace


class Keep:
    """``custom_explore_fn``: each mutated value put back inside its parameter."""

    def __init__(self, space: SearchSpace, paths: list[tuple[str, ...]]) -> None:
        self.params = {path: space.params[path] for path in paths}

    def __call__(self, config: dict) -> dict:
        for path, p in self.params.items():
            node = config
            for key in path[:-1]:
                node = node.get(key, {})
            if path[-1] in node:  # an inactive parameter (when:) is absent
                node[path[-1]] = inside(p, node[path[-1]])
        return config


def inside(p: Any, value: Any) -> Any:
    """The value of ``p`` nearest ``value``."""
    if isinstance(p, CategoricalParam):
        return value if p.problem(value) is None else p.choices[0]
    x = min(max(float(value), p.low), p.high)
    return p.nearest(x) if isinstance(p, FloatParam) else p.nearest(round(x))


def mutations(space: SearchSpace, paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """Ray's ``hyperparam_mutations`` (nested like the config): a Tune domain per range, the
    choices of a categorical."""
    out: dict[str, Any] = {}
    for path in paths:
        p = space.params[path]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = list(p.choices) if isinstance(p, CategoricalParam) else p.to_tune()
    return out


def bounds(space: SearchSpace, paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """PB2's ``hyperparam_bounds``: [low, high] of each (int or float) range."""
    out: dict[str, Any] = {}
    for path in paths:
        p = space.params[path]
        if isinstance(p, CategoricalParam):  # mutated_paths refuses them for pb2
            raise ValueError(f"{'.'.join(path)} is categorical: PB2 has no bounds for it")
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = [p.low, p.high]
    return out


def at(config: dict, path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def conditioned(space: SearchSpace, config: dict) -> dict:
    """``config`` with the searched parameters that apply to its values: those that do not
    are left out, one that applies and is missing is drawn (from Python's ``random``, which
    the scheduler has seeded)."""

    def value(path: tuple[str, ...], p: Any) -> Any:
        node: Any = config
        for key in path:
            node = node.get(key, ABSENT) if isinstance(node, dict) else ABSENT
        return p.from_unit(random.random()) if node is ABSENT else node

    values = space.walk(value)
    out = without(config, set(space.params))
    for path, v in values.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = v
    return out


def only(mutations: dict[str, Any], paths: set[tuple[str, ...]]) -> dict[str, Any]:
    """``mutations`` (nested like the config) restricted to ``paths``."""
    out: dict[str, Any] = {}
    for key, value in mutations.items():
        if isinstance(value, dict):
            inner = only(value, {p[1:] for p in paths if p[0] == key and len(p) > 1})
            if inner:
                out[key] = inner
        elif (key,) in paths:
            out[key] = value
    return out


__all__ = ["Keep", "at", "bounds", "conditioned", "inside", "mutations", "only"]
