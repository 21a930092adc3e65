"""Latin hypercube sampling (McKay et al., 1979) through scipy.stats.qmc, one of the
space-filling designs of ``../shared/seeds/rsa-lhs-hypertiling.md``: with a budget of n
points every dimension has exactly one point in each of its n equal strata. With m earlier
results (warm start) the design has n + m points and each earlier point takes the place of the
design point nearest to it; the n left are suggested."""

from __future__ import annotations

import numpy as np
from ray.tune.search import Searcher
from scipy.stats import qmc

from raytune_hpo.searchers._base import UnitCubeSearcher


class LatinHypercubeSearch(UnitCubeSearcher):
    """``budget``: the number of points of the design (a sweep file passes num_samples);
    returns ``FINISHED`` once they are all suggested."""

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        budget: int | None = None,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        if budget is None or isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget: LatinHypercubeSearch needs an integer >= 1, got {budget!r}")
        self._budget = budget
        self._design: np.ndarray | None = None
        self._next = 0

    def _setup(self) -> None:
        earlier = self.prior[0]
        engine = qmc.LatinHypercube(self._space.dims, seed=self._rng)
        design = engine.random(self._budget + len(earlier))
        for u in earlier:  # each earlier point replaces the nearest design point
            design = np.delete(design, np.argmin(((design - u) ** 2).sum(1)), axis=0)
        self._design = design

    def _propose(self, trial_id: str) -> np.ndarray | str:
        if self._next >= self._budget:
            return Searcher.FINISHED
        self._next += 1
        return self._design[self._next - 1]
