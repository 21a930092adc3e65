"""A sweep's metric checked on the first result: one line, instead of an error per trial."""

from __future__ import annotations

from typing import Any

from ray.tune import Stopper

from raytune_hpo.spec import UserError


class MetricCheck(Stopper):
    """A Tune stopper: the first result without the sweep's metric stops the whole sweep
    (every trial would miss it), remembering the keys it did report."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.reported: list[str] | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.metric not in result and self.reported is None:
            self.reported = sorted(k for k in result if not _ray_key(k))
        return self.reported is not None

    def stop_all(self) -> bool:
        return self.reported is not None

    def error(self, plan) -> UserError | None:
        if self.reported is None:
            return None
        return UserError(
            f"metric: {self.metric!r} is not reported by {plan.trainable.label}; "
            f"its first result had: {', '.join(self.reported) or 'no metrics'}"
        )


_RAY_KEYS = {
    "trial_id", "experiment_id", "date", "timestamp", "time_this_iter_s", "time_total_s",
    "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
    "checkpoint_dir_name", "done", "training_iteration", "should_checkpoint", "experiment_tag",
}  # fmt: skip


def _ray_key(key: str) -> bool:
    return key in _RAY_KEYS or key.startswith("config/")


__all__ = ["MetricCheck"]
