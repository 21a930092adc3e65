"""Strict name -> factory registries shared by searchers and schedulers."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from raytune_hpo.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Entry:
    # The factory, or "package.module:name" to import when it is first needed: naming one
    # searcher in a sweep imports that one only (Ray keeps its search algorithms lazy too).
    ref: Callable[..., Any] | str
    summary: str
    # Keyword arguments the runner fills in itself; users do not set them as options.
    reserved: tuple[str, ...] = ()
    # Searchers that take our SearchSpace (grid values and all) instead of Tune domains.
    owns_space: bool = False

    @property
    def factory(self) -> Callable[..., Any]:
        if not isinstance(self.ref, str):
            return self.ref
        module, _, name = self.ref.partition(":")
        return getattr(importlib.import_module(module), name)

    def accepts(self, name: str) -> bool:
        """Whether the factory takes keyword ``name`` (or any keyword)."""
        params = inspect.signature(self.factory).parameters.values()
        return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)

    def option_names(self) -> list[str]:
        params = inspect.signature(self.factory).parameters.values()
        return [
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in self.reserved
        ]


def lookup(kind: str, registry: dict[str, Entry], name: Any) -> Entry:
    if not isinstance(name, str) or name not in registry:
        hint = did_you_mean(name, registry)
        raise UserError(f"unknown {kind} {name!r}; allowed: {', '.join(registry)}{hint}")
    return registry[name]


def check_options(kind: str, name: str, entry: Entry, options: Iterable[str]) -> None:
    allowed = entry.option_names()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(allowed) if allowed else "none"
        hint = did_you_mean(unknown[0], allowed)
        raise UserError(f"unknown option(s) {unknown} for {kind} {name!r}; allowed: {listed}{hint}")


def create(kind: str, registry: dict[str, Entry], name: str, **kw: Any) -> Any:
    """Build the named entry; ``kw`` are the factory's arguments (reserved ones included)."""
    return build(kind, name, lookup(kind, registry, name), **kw)


def build(kind: str, name: str, entry: Entry, **kw: Any) -> Any:
    """Build ``entry``: options checked; reserved arguments it does not take are left out."""
    check_options(kind, name, entry, set(kw) - set(entry.reserved))
    kw = {k: v for k, v in kw.items() if k not in entry.reserved or entry.accepts(k)}
    return entry.factory(**kw)
