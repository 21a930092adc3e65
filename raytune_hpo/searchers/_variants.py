"""``random`` and ``grid`` over a conditional space: Ray's own ``BasicVariantGenerator`` whose
trials leave out the parameters that do not apply.

Ray Tune's domains cannot leave a key out of a trial's config (``tune.sample_from`` can only
give it a value; declarative conditions were ray-project/ray#28646, closed). Random search
draws every parameter as Ray does, from the Tuner's ``param_space``, and each trial it makes is
trimmed before Tune runs it: the parameters that do not apply to its values leave its config,
and the parameters and tag Tune shows. So it draws each active parameter exactly as Ray's
random search does (same seed, same distribution); the inactive draws are thrown away. Grid
search is the generator over ``SearchSpace.grid()``, every combination of the active
parameters' values once (the user's ``points_to_evaluate`` first), given to Ray as its
``points_to_evaluate`` in place of the cartesian ``tune.grid_search``: Ray never enumerates the
combinations that cannot occur, and counts the trials exactly. Ray's seeding,
``max_concurrent``, ``resume`` and ``extend`` are the generator's own; the trials already
given are part of its saved state.

Ray keeps a trial's config dict to resolve placeholders again when it adds the trial, so the
dict is trimmed in place.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import BasicVariantGenerator
from ray.tune.search.variant_generator import format_vars

from raytune_hpo import ray_compat
from raytune_hpo.sweep.space import SearchSpace


class ConditionalVariants(BasicVariantGenerator):
    """Ray's variant generator over ``space``'s Tune domains, each trial with the active
    parameters only (see the module); ``grid``: skip trials equal on their active ones."""

    def __init__(self, space: SearchSpace, *, grid: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._space = space
        self._grid = grid
        self._given: set[tuple] = set()  # grid: the active combinations given so far

    def add_configurations(self, experiments) -> None:
        experiments = ray_compat.experiment_list(experiments)
        if self._grid:  # the active grid as Ray's points, each searched key a placeholder
            for experiment in experiments:
                _placeholders(experiment.spec["config"], self._space.params)
            ray_compat.add_points_to_evaluate(self, self._space.grid())
        super().add_configurations(experiments)

    def next_trial(self):
        while True:
            trial = super().next_trial()
            if trial is None:
                return None
            drop = set(self._space.params) - set(self._space.active(trial.config))
            _drop_in_place(trial.config, drop)
            if self._grid:
                key = self._space.key(trial.config)
                if key in self._given:  # a point of the user's that the grid holds too
                    ray_compat.forget_live_trial(self, trial.trial_id)
                    continue
                self._given.add(key)
                trial.evaluated_params = {
                    "/".join(path): value
                    for path, value in self._space.path_values(trial.config).items()
                }
            if drop or self._grid:
                _retag(trial, drop)
            return trial


def _placeholders(config: dict, paths) -> None:
    """Each searched path of ``config`` (a ``tune.grid_search`` there) set to None: Ray
    takes points only for keys its config has, and a point that lacks one (it does not apply)
    leaves the placeholder, which the trial then drops."""
    for path in paths:
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = None


def _drop_in_place(config: dict, drop: set[tuple[str, ...]]) -> None:
    for path in drop:
        nodes: list[Any] = [config]  # None past a missing or non-dict level
        for key in path[:-1]:
            nodes.append(nodes[-1].get(key) if isinstance(nodes[-1], dict) else None)
        if isinstance(nodes[-1], dict):
            nodes[-1].pop(path[-1], None)
        for node, key in zip(reversed(nodes[:-1]), reversed(path[:-1]), strict=True):
            if isinstance(node, dict) and node.get(key) == {}:  # only dropped values filled it
                del node[key]


def _retag(trial, drop: set[tuple[str, ...]]) -> None:
    """The parameters Tune shows and names the trial's directory by, without dropped ones."""
    dropped = {"/".join(path) for path in drop}
    params = {k: v for k, v in trial.evaluated_params.items() if k not in dropped}
    trial.evaluated_params = params
    counter = trial.experiment_tag.split("_", 1)[0]
    shown = format_vars({tuple(k.split("/")): v for k, v in params.items()})
    trial.set_experiment_tag(f"{counter}_{shown}" if shown else counter)


__all__ = ["ConditionalVariants"]
