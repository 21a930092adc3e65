"""The trainable contract: what a run needs to know of a trainable before Ray starts.

One descriptor per kind of trainable: the built-in CNN (``raytune_hpo.train.cnn``) and a
user's own function or ``Trainable`` class (``raytune_hpo.train.user``). A descriptor gives
the fixed config (validated, defaults filled), checks the searched space against the settings
the trainable takes, names the metrics it reports and its budget, checks its data, and hands
the callable Tune runs. It imports no torch: a sweep is checked in a blink.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from raytune_hpo.errors import UserError
from raytune_hpo.names import BUDGET_ATTR
from raytune_hpo.sweep.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace


class TrainableContract(ABC):
    """A trainable as run assembly sees it."""

    budget_attr: str = BUDGET_ATTR

    @abstractmethod
    def fixed_config(self) -> dict[str, Any]:
        """The fixed settings passed in every trial's ``config`` (the space overrides them)."""

    @abstractmethod
    def check_space(self, space: SearchSpace) -> None:
        """Raise ValueError naming ``space.<key>`` for a value the trainable cannot take."""

    @abstractmethod
    def metrics(self, space: SearchSpace) -> tuple[str, ...] | None:
        """The metrics every result holds; None when unknown before the first result."""

    def mutable_settings(self) -> tuple[str, ...] | None:
        """The settings a trial may change mid-run: continued from another trial's
        checkpoint under a new config (population-based training), it trains on with these
        taken from the new config. None: the trainable does not say (a user's function reads
        its config itself)."""
        return None

    @abstractmethod
    def max_budget(self, space: SearchSpace) -> int | None:
        """The largest ``budget_attr`` a trial reaches; None when unknown."""

    def check_data(self, *, local: bool) -> None:  # noqa: B027 - optional: no data by default
        """Raise ValueError naming the field when the trainable's data is missing here
        (``local=False``: the data lives on a cluster and is not checked)."""

    @abstractmethod
    def function(self) -> Callable[..., Any] | type:
        """The function or ``Trainable`` class Tune runs."""

    def worker_loop(self) -> Callable[..., Any]:
        """What every rank of a data-parallel trial runs (``workers:``): Ray Train's
        ``train_loop_per_worker`` (a user's function as it is)."""
        return self.function()

    def warnings(self, space: SearchSpace, *, max_concurrent: int | None = None) -> list[str]:
        """Legal but surprising settings, one line each (``max_concurrent``: the sweep's)."""
        return []

    @property
    def reusable(self) -> bool:
        """Whether Tune may reuse a trial's actor for the next trial (a class trainable
        must implement ``reset_config`` for that)."""
        return True

    @property
    def label(self) -> str:
        return type(self).__name__


# ---------------------------------------------------------------------- typed settings
def representatives(p: Param) -> list[Any]:
    """Values of a searched parameter that stand for all it can take (for type checks)."""
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    values = [p.low, p.high, *(p.grid or ())]
    return [int(v) for v in values] if isinstance(p, IntParam) else [float(v) for v in values]


def _kind(p: Param) -> str:
    if isinstance(p, FloatParam):
        return "float range"
    return "int range" if isinstance(p, IntParam) else "categorical"


def literal_values(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` (or ``bool``) setting, else None."""
    if annotation is bool:
        return (True, False)
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1:
        return literal_values(args[0])
    return None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def check_space_against(
    settings: type[BaseModel], fixed: Mapping[str, Any], space: SearchSpace
) -> None:
    """Every searched value and constant of ``space`` must be a value the ``settings`` model
    takes: a name it has, of its type, among its allowed values."""
    names = list(settings.model_fields)
    for path in [*space.params, *space.constants]:
        if path[0] not in names:
            raise UserError(
                f"not a setting of the trainable; allowed: {', '.join(names)}",
                field=("space", path[0]),
            )
    for path, p in space.params.items():
        dotted = ".".join(path)
        field = settings.model_fields[path[0]]
        allowed = literal_values(field.annotation) if len(path) == 1 else None
        if allowed is not None:
            if not isinstance(p, CategoricalParam):
                raise UserError(
                    f"must be a categorical over {list(allowed)}", field=("space", dotted)
                )
            bad = [c for c in p.choices if c not in allowed]
            if bad:
                raise UserError(
                    f"{bad} not allowed; allowed: {list(allowed)}",
                    field=("space", dotted, "choices"),
                )
        # A conditional parameter is checked as trials send it: with parents that make it apply.
        parents = space.activating(path)
        for value in representatives(p):
            over = space.nest({**parents, path: value})
            _try(settings, fixed, over, f"space.{dotted}", _kind(p), value)
    if space.constants:
        _try(settings, fixed, space.nest({}), "space", "constant", None)


def _try(settings, fixed, over, where: str, kind: str, value: Any) -> None:
    try:
        settings.model_validate(deep_merge(fixed, over))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if value is None:  # a constant: name it by where pydantic found it
            raise UserError(msg, field=("space", loc)) from None
        raise UserError(
            f"{kind} value {value!r} does not fit the trainable's {loc} ({msg})", field=where
        ) from None


__all__ = [
    "BUDGET_ATTR",
    "TrainableContract",
    "check_space_against",
    "deep_merge",
    "literal_values",
    "representatives",
]
