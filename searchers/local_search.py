"""An example plug-in searcher: random local search around the best point so far, with the
step size adapted by Rechenberg's 1/5 success rule ((1+1)-ES, Rechenberg 1973; Schwefel 1981).

Use it from a sweep file next to this folder:

    searcher: {name: "../searchers/local_search.py:LocalSearch", step: 0.2}

It builds on ``raytune_hpo.searchers.UnitCubeSearcher``, which gives the whole searcher
contract (space, seeding, save/restore, NaN and failed trials, points_to_evaluate): a
subclass only proposes points of the unit cube and learns from their losses.
"""

from __future__ import annotations

import math

import numpy as np

from raytune_hpo.searchers import UnitCubeSearcher


class LocalSearch(UnitCubeSearcher):
    """Gaussian steps around the incumbent; the step grows by ``grow`` after a success and
    shrinks so that one step in five succeeds. ``init`` random points come first.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``.
        step: the first step's standard deviation in the unit cube (0.2, in (0, 1]).
        grow: the factor a success grows the step by (1.5, > 1).
        init: random points before the local search starts (4).
    """

    # What save/restore keeps (the base class adds its own: the space, the RNG, results).
    _saved = ("_step", "_grow", "_init", "_best", "_best_loss", "_proposed")

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        step: float = 0.2,
        grow: float = 1.5,
        init: int = 4,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        if not 0 < step <= 1:
            raise ValueError(f"step: must lie in (0, 1], got {step!r}")
        if grow <= 1:
            raise ValueError(f"grow: must be > 1, got {grow!r}")
        if not isinstance(init, int) or init < 1:
            raise ValueError(f"init: must be an integer >= 1, got {init!r}")
        self._step, self._grow, self._init = float(step), float(grow), init
        self._best: np.ndarray | None = None
        self._best_loss = math.inf
        self._proposed = 0

    def _propose(self, trial_id: str) -> np.ndarray:
        self._proposed += 1
        if self._best is None or self._proposed <= self._init:
            return self._rng.random(self.space.dims)
        return np.clip(self._best + self._rng.normal(0, self._step, self.space.dims), 0, 1)

    def _observe(self, trial_id: str, u: np.ndarray, loss: float) -> None:
        if loss < self._best_loss:
            self._best, self._best_loss = u.copy(), loss
            self._step = min(1.0, self._step * self._grow)
        else:  # four failures undo one success: the 1/5 rule
            self._step = max(1e-4, self._step * self._grow ** (-1 / 4))
