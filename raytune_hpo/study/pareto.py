"""Bi-objective test problems as study problems, evaluated by pymoo's definitions (the ``bench``
extra), and how a study scores a run on them: the hypervolume (moocore) of its feasible
evaluations after each one, so the best-so-far statistics and curves of single-objective
studies apply unchanged with the hypervolume maximised.

Problems: ``zdt1`` (convex front), ``zdt2`` (concave front) of Zitzler, Deb and Thiele,
"Comparison of multiobjective evolutionary algorithms: empirical results" (Evolutionary
Computation, 2000), and ``dtlz2`` with two objectives (a quarter circle) of Deb, Thiele,
Laumanns and Zitzler, "Scalable test problems for evolutionary multiobjective optimization"
(2005); parameters ``x0`` .. ``x{d-1}`` in [0, 1], both objectives minimised. pymoo: Blank and
Deb, "pymoo: multi-objective optimization in Python" (IEEE Access, 2020).

The reference point, one rule for every problem and every method on it: each objective's worst
value over the search box plus ``MARGIN`` (10%) of its range from the ideal point (the best
value on the Pareto front) to that worst value. Every evaluation lies inside it, so every run
scores above 0 at any budget and every point counts; the usual (1.1, 1.1) of the ZDT
literature (the front's nadir plus 10%) leaves runs of 100 evaluations in 5-D at 0. A study
may give its own ``reference``. The hypervolume is scaled to the box from the ideal point to
the reference point (0 to 1); ``optimum`` is that of the Pareto front (pymoo's, 2000 points).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from raytune_hpo.errors import UserError
from raytune_hpo.objectives import MARGIN, HypervolumeBox

EXTRA = 'the bench extra: pip install -e ".[bench]" (pymoo)'
PARETO_FUNCTIONS = ("zdt1", "zdt2", "dtlz2")
SCORE = "hypervolume"  # the metric a run on a problem with several objectives is scored by
FRONT_POINTS = 2000


def worst(function: str, dims: int) -> tuple[float, float]:
    """Each objective's largest value over the box [0, 1]^dims (from the definitions: ZDT's
    g = 1 + 9 mean(x1..) reaches 10 at f1 = 0; DTLZ2's radius 1 + g with g up to 0.25 per
    distance variable)."""
    if function in ("zdt1", "zdt2"):
        return 1.0, 10.0
    if function == "dtlz2":
        r = 1.0 + 0.25 * (dims - 1)
        return r, r
    raise UserError(f"got {function!r}; allowed: {', '.join(PARETO_FUNCTIONS)}", field="function")


def pymoo_problem(function: str, dims: int):
    """pymoo's problem, or a one-line error naming the extra that installs pymoo."""
    try:
        problems = importlib.import_module("pymoo.problems")
    except ImportError:
        raise UserError(f"{function} needs {EXTRA}", field="function") from None
    if function == "dtlz2":
        return problems.get_problem(function, n_var=dims, n_obj=2)
    return problems.get_problem(function, n_var=dims)


@functools.lru_cache(maxsize=64)
def front(function: str, dims: int) -> np.ndarray:
    """The Pareto front, ``FRONT_POINTS`` points of it (pymoo's)."""
    p = pymoo_problem(function, dims)
    if function == "dtlz2":
        from pymoo.util.ref_dirs import get_reference_directions

        dirs = get_reference_directions("uniform", 2, n_partitions=FRONT_POINTS - 1)
        return np.asarray(p.pareto_front(ref_dirs=dirs), dtype=float)
    return np.asarray(p.pareto_front(n_pareto_points=FRONT_POINTS), dtype=float)


@dataclass(frozen=True)
class ParetoProblem:
    """One bi-objective test function in ``dims`` dimensions (``reference``: the study's own
    reference point, else the module's rule)."""

    function: str
    dims: int
    reference_point: tuple[float, ...] | None = None

    objectives = ("f1", "f2")
    modes = ("min", "min")
    max_budget = 1  # a single fidelity
    minimum = None  # no single optimal value; ``optimum`` is the front's hypervolume

    def __post_init__(self) -> None:
        if self.function not in PARETO_FUNCTIONS:
            allowed = ", ".join(PARETO_FUNCTIONS)
            raise UserError(f"got {self.function!r}; allowed: {allowed}", field="function")
        if self.dims < 2:
            raise UserError(f"{self.function} needs dims >= 2, got {self.dims}", field="dims")
        if self.reference_point is not None:
            check_reference(self.reference_point, self.ideal)

    @property
    def name(self) -> str:
        return f"{self.function}-{self.dims}d"

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        return ((0.0, 1.0),) * self.dims

    def space(self) -> dict[str, Any]:
        return {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(self.dims)}

    @functools.cached_property
    def _problem(self):
        return pymoo_problem(self.function, self.dims)

    def at(self, config: dict[str, Any], budget: float = 1, rng=None) -> dict[str, float]:
        """The objectives of ``config`` by name (the same at every budget)."""
        x = np.array([[config[f"x{i}"] for i in range(self.dims)]], dtype=float)
        f = np.asarray(self._problem.evaluate(x), dtype=float).reshape(-1)
        return dict(zip(self.objectives, map(float, f), strict=True))

    @property
    def ideal(self) -> np.ndarray:
        """The best value of each objective on the Pareto front."""
        return front(self.function, self.dims).min(axis=0)

    @property
    def reference(self) -> np.ndarray:
        if self.reference_point is not None:
            return np.asarray(self.reference_point, dtype=float)
        w = np.asarray(worst(self.function, self.dims))
        return w + MARGIN * (w - self.ideal)

    @property
    def box(self) -> HypervolumeBox:
        return HypervolumeBox(ideal=self.ideal, reference=self.reference)

    @property
    def optimum(self) -> float:
        """The hypervolume of the Pareto front in the box (the highest score there is)."""
        return self.box.hypervolume(front(self.function, self.dims))

    def score(self, trials: pd.DataFrame) -> np.ndarray:
        """The hypervolume after each evaluation of one run (rows in evaluation order)."""
        return hypervolume_after_each(trials, self.objectives, self.box)


def hypervolume_after_each(
    trials: pd.DataFrame, objectives: tuple[str, ...], box: HypervolumeBox
) -> np.ndarray:
    """The hypervolume of the feasible points (finite objectives, all minimised) among the
    first i rows, for every i."""
    losses = trials[list(objectives)].to_numpy(dtype=float)
    feasible = np.isfinite(losses).all(axis=1)
    return box.curve(losses, feasible, points=max(len(losses), 1))


def check_reference(reference: Any, ideal: np.ndarray) -> tuple[float, ...]:
    """A reference point with one value per objective, each worse than the ideal one."""
    ref = tuple(float(v) for v in reference)
    if len(ref) != len(ideal):
        raise UserError(
            f"needs {len(ideal)} values (one per objective), got {len(ref)}", field="reference"
        )
    bad = [i for i, (r, b) in enumerate(zip(ref, ideal, strict=True)) if not r > b]
    if bad:
        i = bad[0]
        msg = f"each value must exceed the ideal point {ideal.tolist()}; got {ref[i]}"
        raise UserError(msg, field=("reference", i))
    return ref


__all__ = [
    "PARETO_FUNCTIONS",
    "SCORE",
    "ParetoProblem",
    "check_reference",
    "front",
    "hypervolume_after_each",
    "pymoo_problem",
    "worst",
]
