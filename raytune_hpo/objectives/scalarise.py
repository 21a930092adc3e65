"""Several objectives as one loss, for the searchers whose moves compare one loss (``pso``,
``approx_gradient``): ParEGO's augmented Chebyshev scalarisation (Knowles, 2006, "ParEGO: a
hybrid algorithm with on-line landscape approximation for expensive multiobjective
optimization problems").

An evaluation is a row: each objective's loss (to minimise, ``max`` negated) and the trial's
total constraint violation (``Objectives.violations``: 0 when feasible; inf for a failed
trial, or one with an objective missing or not finite). Each objective is normalised by the
least and the largest value seen so far (every evaluation told widens them), then

    s = max_i(w_i f_i) + RHO * sum_i(w_i f_i),   RHO = 0.05 (ParEGO's)

with a weight vector w of ParEGO's simplex lattice (every w whose components are multiples of
1/k summing to 1: k = 10 for two objectives, 4 for three, 3 for more), drawn from the
searcher's seeded Generator. The searcher chooses what one weight vector is for (PSO: one per
particle, the approximate gradient: one per walk), so that each part of the search follows one
trade-off and the parts together spread along the front. Losses are always scored under the
normalisation of the moment, from the rows kept, not remembered as scored.

Constraints: a feasible row scores within [0, 1 + RHO]; an infeasible one 1 + RHO plus its
violation, so it comes after every feasible one, the least violated first; a failed one inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from raytune_hpo.objectives import Objectives

RHO = 0.05  # the weight of the augmentation term (ParEGO's)
STEPS = {1: 1, 2: 10, 3: 4}  # the lattice's divisions per number of objectives; 3 for more


def simplex_lattice(m: int) -> np.ndarray:
    """ParEGO's weight vectors for ``m`` objectives: components k_i / s, sum(k_i) = s."""
    s = STEPS.get(m, 3)
    rows = []
    for bars in combinations(range(s + m - 1), m - 1):  # stars and bars
        edges = (-1, *bars, s + m - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(m)])
    return np.asarray(rows, dtype=float) / s


class Scalarisation:
    """The scalarisation of one sweep's ``Objectives``: rows of evaluations, the normalisation
    seen so far (saved with the searcher), weight vectors and the scalarised losses."""

    def __init__(self, objectives: Objectives) -> None:
        self.objectives = objectives
        m = len(objectives.metrics)
        self.low = np.full(m, math.inf)  # the least finite loss of each objective seen
        self.high = np.full(m, -math.inf)  # and the largest

    @property
    def width(self) -> int:
        """Columns of a row: one per objective, then the violation."""
        return len(self.objectives.metrics) + 1

    def row(self, result: Mapping[str, Any] | None, error: bool = False) -> np.ndarray:
        """``result``'s row (a failed trial: every column inf); it widens the normalisation."""
        if error or not result:
            return np.full(self.width, math.inf)
        table = pd.DataFrame([{k: result.get(k, math.nan) for k in self.objectives.reported}])
        losses = self.objectives.losses(table)[0]
        losses = np.where(np.isfinite(losses), losses, math.inf)
        out = np.append(losses, self.objectives.violations(table)[0])
        self.see(out)
        return out

    def see(self, row: np.ndarray) -> None:
        """Widen the normalisation by ``row``'s finite losses."""
        losses = np.asarray(row, dtype=float)[: self.width - 1]
        finite = np.isfinite(losses)
        self.low[finite] = np.minimum(self.low[finite], losses[finite])
        self.high[finite] = np.maximum(self.high[finite], losses[finite])

    def weights(self, rng: np.random.Generator) -> np.ndarray:
        """A weight vector of the lattice, drawn from ``rng``."""
        lattice = simplex_lattice(self.width - 1)
        return lattice[rng.integers(len(lattice))]

    @property
    def even(self) -> np.ndarray:
        """Equal weights (the loss a searcher records as its observation)."""
        m = self.width - 1
        return np.full(m, 1.0 / m)

    def loss(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The scalarised loss of each row (one value for one row) under weights ``w``."""
        rows = np.asarray(rows, dtype=float)
        one = rows.ndim == 1
        rows = np.atleast_2d(rows)
        m = self.width - 1
        low = np.where(np.isfinite(self.low), self.low, 0.0)
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        violation = rows[:, m]
        usable = np.isfinite(violation)  # then every loss is finite (Objectives.violations)
        f = np.where(usable[:, None], (np.where(usable[:, None], rows[:, :m], 0.0) - low) / span, 0)
        wf = f * np.asarray(w, dtype=float)
        s = wf.max(axis=1) + RHO * wf.sum(axis=1)
        s = np.where(violation > 0, 1.0 + RHO + violation, s)
        return s[0] if one else s


def no_better_than(row: np.ndarray, further: np.ndarray) -> np.ndarray:
    """``row`` made no better, column by column, than the worst usable row of ``further``
    (the rule for a trial stopped early: ``UnitCubeSearcher.set_early_stopping``)."""
    further = np.atleast_2d(further)
    usable = further[np.isfinite(further).all(axis=1)]
    if not len(usable) or not np.isfinite(row).all():
        return row
    return np.maximum(row, usable.max(axis=0))


__all__ = ["RHO", "STEPS", "Scalarisation", "no_better_than", "simplex_lattice"]
