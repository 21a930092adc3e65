"""Optuna's samplers used directly as study methods (``{name: optuna-tpe, optuna: tpe}``), so a
study puts our searchers and the peers' side by side with the same seeds and budget. Options are
the sampler's own keyword arguments that a YAML file can hold (numbers, strings, lists,
mappings), checked against its signature and types; ``seed`` is the study's. Akiba et al.,
"Optuna: a next-generation hyperparameter optimization framework" (KDD 2019)."""

from __future__ import annotations

import builtins
import inspect
from typing import Any

from raytune_hpo.errors import UserError

# name -> (optuna.samplers class, what it is)
SAMPLERS: dict[str, tuple[str, str]] = {
    "tpe": ("TPESampler", "tree-structured Parzen estimator"),
    "gp": ("GPSampler", "Gaussian-process Bayesian optimization"),
    "cmaes": ("CmaEsSampler", "CMA evolution strategy (the cmaes package)"),
    "nsga2": ("NSGAIISampler", "NSGA-II genetic algorithm"),
    "random": ("RandomSampler", "independent uniform sampling"),
}
# Samplers that take several objectives (Optuna's multi-objective study: a direction each).
SEVERAL_OBJECTIVES = ("tpe", "gp", "nsga2", "random")
_RESERVED = ("seed",)
_EXTRA = 'the bench extra: pip install -e ".[bench]"'
_NEEDS = {"cmaes": "cmaes"}  # sampler -> the module Optuna imports for it when it first samples


def sampler_class(name: Any) -> type:
    if not isinstance(name, str) or name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}", field="optuna")
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name][0])


def option_types(name: str) -> dict[str, Any]:
    """The sampler's options a YAML file can set, with their types (callables, samplers and
    trials are left out: no file can write them)."""
    out: dict[str, Any] = {}
    for p in inspect.signature(sampler_class(name)).parameters.values():
        if p.name in _RESERVED or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        annotation = p.annotation
        if isinstance(annotation, str):  # Optuna's annotations are strings (PEP 563)
            try:
                annotation = eval(annotation, {"__builtins__": builtins, "Any": Any})  # noqa: S307
            except NameError:  # Callable, BaseSampler, FrozenTrial: not settable from YAML
                continue
        out[p.name] = annotation
    return out


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` validated against the sampler's signature: a one-line UserError naming the
    option and the allowed ones, or the wrong type."""
    from pydantic import TypeAdapter, ValidationError

    types = option_types(name)
    out = {}
    for key, value in options.items():
        if key not in types:
            allowed = ", ".join(types) or "none"
            raise UserError(
                f"unknown option {key!r} for sampler {name!r}; allowed: {allowed}",
                field=("options", key),
            )
        try:
            out[key] = TypeAdapter(types[key]).validate_python(value)
        except ValidationError as e:
            msg = e.errors()[0]["msg"]
            raise UserError(f"{msg}: {value!r}", field=("options", key)) from None
    return out


def make_sampler(name: str, options: dict[str, Any], seed: int):
    """The sampler with its checked options and the run's seed; an option value the sampler
    refuses is a UserError too."""
    import importlib

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kw = check_options(name, options)
    if name in _NEEDS:
        try:
            importlib.import_module(_NEEDS[name])
        except ImportError:
            msg = f"sampler {name!r} needs {_NEEDS[name]}, {_EXTRA}"
            raise UserError(msg, field="optuna") from None
    try:
        return sampler_class(name)(seed=seed, **kw)
    except (ValueError, TypeError) as e:
        text = " ".join(str(e).split())
        raise UserError(f"sampler {name!r} refused its options: {text}", field="options") from None


__all__ = [
    "SAMPLERS",
    "SEVERAL_OBJECTIVES",
    "check_options",
    "make_sampler",
    "option_types",
    "sampler_class",
]
