"""A sweep's ``stop:`` criteria (Ray's ``RunConfig(stop={...})``): a trial stops at the first
result that meets any of them, as Ray combines a stop dict. A bare number on one of the sweep's
objectives stops when the objective reaches it in the direction of its mode (``val_loss: 0.1``
under ``min``: at most 0.1; Ray's own dict means at least, whatever the mode); on one of Ray's
counters (``training_iteration``, ``time_total_s``, ...) at least; any other metric says which
way (``{at_least: x}`` / ``{at_most: x}``).

``StopCriteria.reason(result)`` is the one test: the Tune stopper uses it while the sweep runs,
and the results table and the report use it to show which criterion ended a trial (the last
result of a trial stopped by one meets it). Imports no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raytune_hpo.errors import UserError
from raytune_hpo.sweep.spec import StopBound

# Ray's own counters of a trial's progress (ray.tune.result), which only grow.
RAY_COUNTERS = (
    "training_iteration",
    "time_total_s",
    "timesteps_total",
    "episodes_total",
    "iterations_since_restore",
    "time_since_restore",
)


@dataclass(frozen=True)
class Criterion:
    metric: str
    bound: float
    at_least: bool  # stop once the metric is >= bound (else <= bound)

    def met(self, result: dict[str, Any]) -> bool:
        value = result.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if math.isnan(value):
            return False
        return value >= self.bound if self.at_least else value <= self.bound

    @property
    def sign(self) -> str:
        return ">=" if self.at_least else "<="

    def describe(self, result: dict[str, Any]) -> str:
        """``val_accuracy 0.9812 >= 0.98``."""
        return f"{self.metric} {result[self.metric]:.4g} {self.sign} {self.bound:g}"

    def __str__(self) -> str:
        return f"{self.metric} {self.sign} {self.bound:g}"


@dataclass(frozen=True)
class StopCriteria:
    criteria: tuple[Criterion, ...] = ()

    @classmethod
    def of(cls, spec: Any) -> StopCriteria:
        """The spec's ``stop:`` with a direction each (UserError naming the field when a
        metric's is not known)."""
        objectives = spec.objectives
        modes = dict(zip(objectives.metrics, objectives.modes, strict=True))
        out = []
        for metric, bound in (spec.stop or {}).items():
            if isinstance(bound, StopBound):
                at_least, value = bound.way
            elif metric in modes:
                at_least, value = modes[metric] == "max", bound
            elif metric in RAY_COUNTERS:
                at_least, value = True, bound
            else:
                raise UserError(
                    f"{metric!r} is not an objective of the sweep, so say which way stops a "
                    f"trial: {{at_least: {bound:g}}} or {{at_most: {bound:g}}} (a bare number "
                    f"is for an objective, by its mode, or one of Ray's counters: "
                    f"{', '.join(RAY_COUNTERS)})",
                    field=("stop", metric),
                )
            out.append(Criterion(metric, float(value), at_least))
        return cls(tuple(out))

    def __bool__(self) -> bool:
        return bool(self.criteria)

    @property
    def metrics(self) -> list[str]:
        """The reported metrics the criteria read (Ray's counters are always there)."""
        return [c.metric for c in self.criteria if c.metric not in RAY_COUNTERS]

    def reason(self, result: dict[str, Any] | None) -> str | None:
        """Why ``result`` stops its trial (the first criterion it meets), or None."""
        for c in self.criteria:
            if result and c.met(result):
                return c.describe(result)
        return None


class CriteriaStopper:
    """The criteria as a Tune stopper (``ray.tune.Stopper``'s two methods; Ray's
    ``CombinedStopper`` takes it beside our guards)."""

    def __init__(self, criteria: StopCriteria) -> None:
        self.criteria = criteria

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.criteria.reason(result) is not None

    def stop_all(self) -> bool:
        return False


__all__ = ["RAY_COUNTERS", "CriteriaStopper", "Criterion", "StopCriteria"]
