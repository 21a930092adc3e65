"""Scrambled Sobol' sequence (scipy.stats.qmc), the quasi-random search of Bartoli &
Erpichini, "Hyperparameters tuning for CNN based on global optimization" (their comparison with
GP Bayesian optimization). State: the scramble seed and the count drawn. With earlier results
(warm start) the sequence starts past as many points as there are: a sweep warm-started from a
Sobol' sweep of the same seed continues its sequence instead of repeating it."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from raytune_hpo.searchers._base import UnitCubeSearcher
from raytune_hpo.searchers._contract import set_up


class SobolSearch(UnitCubeSearcher):
    """Quasi-random Sobol' points; never finishes on its own (use num_samples).

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``; the seed
            draws the scramble.
    """

    _saved = ("_scramble_seed", "_count")
    _derived = ("_engine",)

    def __init__(
        self, space=None, metric=None, mode=None, *, seed=None, points_to_evaluate=None
    ) -> None:
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        self._scramble_seed = int(self._rng.integers(2**63 - 1))
        self._count = 0
        self._engine: qmc.Sobol | None = None

    def _setup(self) -> None:
        self._count += len(self.prior[1])
        self._rebuild()

    def _rebuild(self) -> None:
        self._engine = qmc.Sobol(self._space.dims, scramble=True, seed=self._scramble_seed)
        if self._count:
            self._engine.fast_forward(self._count)

    def _propose(self, trial_id: str) -> np.ndarray:
        self._count += 1
        return set_up(self._engine, "_engine").random(1)[0]
