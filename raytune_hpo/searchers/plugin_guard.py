"""Plug-in searchers written as Ray's documentation writes one: a ``Searcher`` whose constructor
takes ``metric``, ``mode`` and its own options but no space, and which proposes its own values
without implementing ``set_search_properties``. Given Tune domains in ``param_space`` Ray would
refuse it after starting ("You passed a param_space parameter to Tuner(...) with unresolved
parameters, but the search algorithm was already instantiated with a search space").

Such a plug-in runs here: the Tuner gets only the fixed config, ``CheckedSearcher`` checks each
suggestion against the sweep's typed space, and a suggestion that misses a parameter or holds
a value outside it runs as a trial that fails at once with the reason (``guard_trainable``), so
the searcher is told it failed and the results say why; the user's code never sees it.
"""

from __future__ import annotations

import functools
from typing import Any

from ray.tune.search import Searcher

from raytune_hpo import ray_compat
from raytune_hpo.sweep.space import SearchSpace

INVALID = "__raytune_hpo_invalid__"  # the config key that carries why a suggestion is invalid


class InvalidSuggestion(ValueError):
    """A plug-in searcher suggested a configuration outside the sweep's space."""


def proposes_own_values(factory: Any) -> bool:
    """A plug-in that takes no space and does not implement ``set_search_properties``."""
    return (
        isinstance(factory, type)
        and issubclass(factory, Searcher)
        and factory.set_search_properties is Searcher.set_search_properties
    )


class CheckedSearcher(Searcher):
    """``inner``'s suggestions, each checked against ``space`` (see the module)."""

    def __init__(self, inner: Searcher, space: SearchSpace) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.space = inner, space

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        ray_compat.set_metric_mode(
            self.inner,
            metric if metric and not self.inner.metric else None,
            mode if mode and not self.inner.mode else None,
        )
        self._metric, self._mode = self.inner.metric, self.inner.mode
        return True

    def suggest(self, trial_id: str):
        config = self.inner.suggest(trial_id)
        if not isinstance(config, dict):
            return config  # None (nothing now) or FINISHED
        problems = self.space.problems(config)
        if problems:
            config = {**config, INVALID: "; ".join(problems)}
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def add_evaluated_point(self, *args, **kwargs) -> None:
        self.inner.add_evaluated_point(*args, **kwargs)

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.inner.restore(checkpoint_path)

    def get_state(self) -> dict:
        return self.inner.get_state()

    def set_state(self, state: dict) -> None:
        self.inner.set_state(state)


def _refuse(config: dict) -> None:
    reason = config.get(INVALID)
    if reason:
        raise InvalidSuggestion(
            f"the searcher suggested a configuration outside the space: {reason}"
        )


def guard_trainable(trainable: Any) -> Any:
    """``trainable`` (a function or a ``Trainable`` class) failing at once on a configuration
    ``CheckedSearcher`` marked invalid."""
    from ray.tune import Trainable

    if isinstance(trainable, type) and issubclass(trainable, Trainable):

        class Guarded(trainable):
            def setup(self, config, *args, **kwargs):
                _refuse(config)
                return super().setup(config, *args, **kwargs)

            def reset_config(self, new_config):
                return False if new_config.get(INVALID) else super().reset_config(new_config)

        Guarded.__name__ = Guarded.__qualname__ = trainable.__name__
        return Guarded

    @functools.wraps(trainable)
    def guarded(config):
        _refuse(config)
        return trainable(config)

    return guarded


__all__ = [
    "INVALID",
    "CheckedSearcher",
    "InvalidSuggestion",
    "guard_trainable",
    "proposes_own_values",
]
