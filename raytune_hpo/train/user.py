"""The trainable contract for a user's own training code.

In the sweep file::

    trainable:
      function: train.py:train     # FILE.py:NAME (relative to the sweep file) or pkg.mod:NAME
      config: {data_dir: /data}    # fixed settings passed in `config`; the space overrides them
      metrics: [score]             # optional: what it reports (the sweep's metric is checked)
      settings: {x: float, layers: int, data_dir: str}   # optional: types of its config keys

``function`` names a function ``f(config)`` that reports with ``ray.tune.report`` (or
``raytune_hpo.report``), or a ``ray.tune.Trainable`` subclass. Without ``metrics`` the metric
is checked on the first result (``raytune_hpo.run.sweep``); without ``settings`` the space is passed
as it is. The budget of a trial (for ASHA, HyperBand, BOHB) is its number of reported results:
give ``scheduler.max_t``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, ValidationError, create_model

from raytune_hpo.errors import UserError
from raytune_hpo.sweep.sections import TYPES, TrainableSection, UserSection
from raytune_hpo.sweep.space import SearchSpace
from raytune_hpo.train.contract import TrainableContract, check_space_against


def check_callable(obj: Any, field: str, ref: str) -> None:
    from ray.tune import Trainable

    if isinstance(obj, type):
        if not issubclass(obj, Trainable):
            raise UserError(
                f"{ref} is a class but not a ray.tune.Trainable subclass; "
                "give a function f(config) or a Trainable subclass",
                field=field,
            )
    elif not callable(obj):
        raise UserError(
            f"{ref} is {type(obj).__name__!r}, not callable; "
            "give a function f(config) or a Trainable subclass",
            field=field,
        )


class UserTrainable(TrainableContract):
    """A user's function or ``Trainable`` class with its fixed config and declarations."""

    def __init__(
        self, obj: Any, section: UserSection, *, ref: str, max_budget: int | None = None
    ) -> None:
        check_callable(obj, "trainable.function", ref)
        self.obj, self.section, self.ref = obj, section, ref
        self._max_budget = max_budget
        self._settings_model = None
        if section.settings is not None:
            fields: dict[str, Any] = {k: (TYPES[t], ...) for k, t in section.settings.items()}
            self._settings_model = create_model(
                "UserSettings",
                __config__=ConfigDict(extra="forbid", strict=True),
                **fields,
            )
            missing = sorted(set(section.config) - set(section.settings))
            if missing:
                raise UserError(
                    f"not among the declared settings; declared: {', '.join(section.settings)}",
                    field=("trainable", "config", missing[0]),
                )
            try:
                self._settings_model.model_validate(self._full_config())
            except ValidationError as e:
                err = e.errors()[0]
                loc = ".".join(str(x) for x in err["loc"])
                raise UserError(err["msg"], field=("trainable", "config", loc)) from None

    @classmethod
    def from_section(cls, section: UserSection, *, base_dir: str) -> UserTrainable:
        from raytune_hpo.sweep.load import resolve

        if section.function is None:
            raise UserError(
                "missing: name the training code, FILE.py:NAME (next to the sweep file) or "
                "package.module:NAME",
                field=("trainable", "function"),
            )
        obj = resolve(section.function, base_dir=base_dir, field="trainable.function")
        return cls(obj, section, ref=section.function)

    @classmethod
    def from_object(
        cls, obj: Any, section: TrainableSection, *, max_budget: int | None = None
    ) -> UserTrainable:
        """``run_sweep(spec, trainable=obj)``: ``section`` may still hold config, metrics and
        settings (a built-in CNN section is ignored). ``max_budget``: the most results a
        trial reports, when known (else the scheduler's ``max_t``)."""
        user = section if isinstance(section, UserSection) else UserSection()
        ref = getattr(obj, "__name__", type(obj).__name__)
        return cls(obj, user.model_copy(update={"function": None}), ref=ref, max_budget=max_budget)

    def fixed_config(self) -> dict[str, Any]:
        return self.section.fixed_config()

    def check_space(self, space: SearchSpace) -> None:
        settings = self.section.settings
        if self._settings_model is None or settings is None:  # the model is made from them
            return
        declared = set(settings)
        for path in [*space.params, *space.constants]:
            if path[0] not in declared:
                raise UserError(
                    f"not among the trainable's declared settings; declared: {', '.join(settings)}",
                    field=("space", path[0]),
                )
        check_space_against(self._settings_model, self._full_config(), space)

    def _full_config(self) -> dict[str, Any]:
        """The fixed config, with a stand-in of its type for each declared setting it lacks."""
        examples = {k: _example(t) for k, t in (self.section.settings or {}).items()}
        return {**examples, **self.fixed_config()}

    def metrics(self, space: SearchSpace) -> tuple[str, ...] | None:
        return tuple(self.section.metrics) if self.section.metrics else None

    def max_budget(self, space: SearchSpace) -> int | None:
        return self._max_budget

    def function(self):
        return self.obj

    @property
    def reusable(self) -> bool:
        from ray.tune import Trainable

        if isinstance(self.obj, type) and issubclass(self.obj, Trainable):  # check_callable
            return self.obj.reset_config is not Trainable.reset_config
        return True

    @property
    def label(self) -> str:
        return self.ref


def _example(type_name: str) -> Any:
    """A value of the declared type: stands in for a setting neither fixed nor searched."""
    return {"float": 0.0, "int": 0, "bool": False, "str": "", "list": [], "dict": {}}.get(type_name)


__all__ = ["UserTrainable"]
