"""The median stopping rule (Golovin et al., KDD 2017) with the TinyVGG study's threshold rule:
stop a trial once the mean loss of its last ``window`` epochs is above ``threshold``
(the TinyVGG study, Glymov & Lorentzen 2024, experimental setup section 1;
docs/papers.md)."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

from raytune_hpo.schedulers._start_order import NewestPendingFirst


class MedianOrThreshold(NewestPendingFirst, MedianStoppingRule):
    """Ray's median rule, plus a stop when the windowed mean loss is over a threshold."""

    def __init__(
        self, *, threshold: float | None, threshold_metric: str, window: int, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._threshold = threshold
        self._threshold_metric = threshold_metric
        self._window = window
        self._losses: dict[str, list[float]] = {}

    def on_trial_result(self, tune_controller, trial, result):
        if self._threshold is not None and self._threshold_metric in result:
            losses = self._losses.setdefault(trial.trial_id, [])
            losses.append(float(result[self._threshold_metric]))
            recent = losses[-self._window :]
            if len(recent) == self._window and not sum(recent) / self._window <= self._threshold:
                return TrialScheduler.STOP  # a NaN loss stops too
        return super().on_trial_result(tune_controller, trial, result)


__all__ = ["MedianOrThreshold"]
