"""A sweep's metrics checked on the first result: one line, instead of an error per trial.
Every objective and every constrained metric is checked (``raytune_hpo.objectives``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune import Stopper

from raytune_hpo.errors import UserError


class MetricCheck(Stopper):
    """A Tune stopper: the first result without one of the sweep's metrics (``metric``: one
    name, or every objective and constrained metric) stops the whole sweep (every trial would
    miss it), remembering the keys it did report. ``fields``: where each name is given in the
    sweep file (default: ``metric``)."""

    def __init__(
        self, metric: str | Sequence[str], fields: Mapping[str, Sequence[Any]] | None = None
    ) -> None:
        self.metrics = (metric,) if isinstance(metric, str) else tuple(metric)
        self.metric = self.metrics[0]
        self.fields = dict(fields or {})
        self.missing: str | None = None
        self.reported: list[str] | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.reported is None:
            missing = [m for m in self.metrics if m not in result]
            if missing:
                self.missing = missing[0]
                self.reported = sorted(k for k in result if not _ray_key(k))
        return self.reported is not None

    def stop_all(self) -> bool:
        return self.reported is not None

    def error(self, plan) -> UserError | None:
        if self.reported is None or self.missing is None:  # both set at once, by __call__
            return None
        return UserError(
            f"{self.missing!r} is not reported by {plan.trainable.label}; "
            f"its first result had: {', '.join(self.reported) or 'no metrics'}",
            field=self.fields.get(self.missing, "metric"),
        )


@functools.cache
def _ray_keys() -> frozenset[str]:
    """The keys Ray Tune adds to every result by itself (``ray.tune.result``)."""
    from ray.tune import result as r

    return frozenset(
        (*r.AUTO_RESULT_KEYS, *r.DEBUG_METRICS, *r.DEFAULT_EXPERIMENT_INFO_KEYS)
        + (r.DONE, r.SHOULD_CHECKPOINT, r.EXPERIMENT_TAG)
    )


def _ray_key(key: str) -> bool:
    """Ray's own key, or a flattened config value (``config/lr``)."""
    from ray.tune.result import CONFIG_PREFIX

    return key in _ray_keys() or key.startswith(f"{CONFIG_PREFIX}/")


__all__ = ["MetricCheck"]
