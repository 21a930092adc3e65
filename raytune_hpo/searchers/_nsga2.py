"""NSGA-II (Deb, Pratap, Agarwal & Meyarivan, 2002, "A fast and elitist multiobjective genetic
algorithm: NSGA-II"): Optuna's ``NSGAIISampler`` through our Optuna adapter (``_optuna``).

Generations of ``population_size`` trials; the parents of the next are chosen by non-dominated
sorting and crowding distance, under constraints by Deb's constrained domination (feasible
before infeasible, the least violated first); children by uniform crossover (``crossover_prob``,
``swapping_prob``) and mutation (``mutation_prob``; None: 1 / the number of parameters). With one
objective it is a plain elitist genetic algorithm. The first generation is random.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._optuna import _OptunaAdapter
from raytune_hpo.sweep.space import SearchSpace

if TYPE_CHECKING:
    from raytune_hpo.objectives import Objectives


class NSGA2Search(_OptunaAdapter):
    """NSGA-II (Optuna's NSGAIISampler), for one objective or several.

    Args:
        space, metric, mode, points_to_evaluate: as for ``UnitCubeSearcher``.
        seed: the sampler's seed.
        population_size: trials per generation (50, Optuna's; at least 2).
        mutation_prob: the chance that a parameter of a child is drawn anew (None: 1 / the
            number of parameters; else in [0, 1]).
        crossover_prob: the chance that a child is a crossover of two parents (0.9, in [0, 1]).
        swapping_prob: the chance that a parameter comes from the second parent in a uniform
            crossover (0.5, in [0, 1]).
        storage, study_name: as for ``tpe``.
        objectives: several objectives or constraints (the sweep gives them).
    """

    def __init__(
        self,
        space: SearchSpace | dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = None,
        points_to_evaluate: list[dict] | None = None,
        population_size: int = 50,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
        swapping_prob: float = 0.5,
        storage: str | None = None,
        study_name: str | None = None,
        objectives: Objectives | None = None,
    ) -> None:
        import optuna

        check.integer("population_size", population_size, 2)
        if mutation_prob is not None:
            check.within("mutation_prob", mutation_prob, 0, 1)
        check.within("crossover_prob", crossover_prob, 0, 1)
        check.within("swapping_prob", swapping_prob, 0, 1)
        sampler = optuna.samplers.NSGAIISampler(
            seed=seed,
            population_size=population_size,
            mutation_prob=mutation_prob,
            crossover_prob=crossover_prob,
            swapping_prob=swapping_prob,
        )
        super().__init__(
            space, metric, mode, sampler, points_to_evaluate, storage, study_name, objectives
        )


__all__ = ["NSGA2Search"]
