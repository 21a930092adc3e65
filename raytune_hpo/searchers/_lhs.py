"""Latin hypercube sampling (McKay et al., 1979) through scipy.stats.qmc, one of the
space-filling designs of Rasmussen et al., "Beating grid- and random search with alternative
methods" (Copenhagen): with a budget of n points every dimension has exactly one point in each
of its n equal strata. With m earlier results (warm start) the design has n + m points and each
earlier point takes the place of the design point nearest to it; the n left are suggested.

In a conditional space a parameter that applies to k of the n points has one point in each of
its k strata among those k (its column is drawn again over them, parents first), so the design
is a Latin hypercube of every subspace that occurs; distances (warm start) count the active
coordinates only."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from raytune_hpo.errors import UserError
from raytune_hpo.searchers._base import DesignSearcher


class LatinHypercubeSearch(DesignSearcher):
    """A Latin hypercube design of ``budget`` points; ``FINISHED`` once they are suggested.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``.
        budget: the number of points of the design, required (a sweep file passes
            num_samples).
    """

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
            raise UserError(
                f"LatinHypercubeSearch needs an integer >= 1, got {budget!r}", field="budget"
            )
        self._budget = budget

    def _design_points(self, n: int) -> np.ndarray:
        design = qmc.LatinHypercube(self._space.dims, seed=self._rng).random(n)
        if self._space.conditional:
            stratify_active(self._space, design, self._rng)
        return design


def stratify_active(space, design: np.ndarray, rng: np.random.Generator) -> None:
    """Give each conditional column, in place and parents first, one value in each of the k
    equal strata of the k points where it applies."""
    column = {path: j for j, path in enumerate(space.params)}
    for path in space.order:
        if path not in space.conditions:
            continue
        j = column[path]
        rows = np.flatnonzero(space.active_mask(design)[:, j])
        k = len(rows)
        design[rows, j] = (rng.permutation(k) + rng.random(k)) / max(k, 1)
