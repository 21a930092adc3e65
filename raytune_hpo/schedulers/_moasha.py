"""Multi-objective asynchronous successive halving, MO-ASHA (Schmucker et al., 2021, after
Salinas et al., 2021): ASHA (Li et al., 2020) whose rungs rank trials by non-dominated sorting
instead of by one metric.

The rungs are Ray's (``AsyncHyperBandScheduler``): milestones ``grace_period * rf**k`` below
``max_t``, one set of rungs per bracket. A trial reaching a milestone is ranked with the trials
recorded there before it and continues only if it is among the best ``ceil(n / rf)`` of the
``n`` now recorded (itself included); the first trial at a rung always continues. The order is
constrained non-dominated sorting (``raytune_hpo.objectives.rank_points``: the feasible
fronts first, then the infeasible trials, the least violated first); within a front the
tie-break decides: ``epsnet`` (Salinas et al.'s epsilon-net: the front's best point in the
first objective, then always the point farthest from those already taken) or ``crowding``
(NSGA-II's crowding distance, Deb et al., 2002: the front's extremes, then the most isolated),
both in objective space scaled to the rung's range.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from raytune_hpo.objectives import Objectives, rank_points
from raytune_hpo.schedulers._start_order import NewestPendingFirst

TIE_BREAKS = ("epsnet", "crowding")


class MultiObjectiveASHA(NewestPendingFirst, FIFOScheduler):
    """MO-ASHA on Ray's scheduler API: ``objectives`` (several, or one with constraints)
    rank the trials at each rung. ``seed`` seeds the bracket a new trial joins."""

    def __init__(
        self,
        *,
        objectives: Objectives,
        time_attr: str,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 2,
        brackets: int = 1,
        tie_break: str = "epsnet",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self._objectives = objectives
        self._time_attr = time_attr
        self._max_t = max_t
        self._rf = float(reduction_factor)
        self._tie_break = tie_break
        self._rng = np.random.default_rng(seed)
        self._brackets = [
            _rungs(grace_period, max_t, self._rf, s) for s in range(max(1, int(brackets)))
        ]
        self._bracket_of: dict[str, int] = {}
        self._num_stopped = 0

    # ------------------------------------------------------------------ Ray's hooks
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Its objectives are its own: a metric from the TuneConfig is refused (Ray's rule)."""
        return not metric and not mode

    def on_trial_add(self, tune_controller, trial) -> None:
        sizes = np.array([len(b) for b in self._brackets], dtype=float)
        probs = np.exp(sizes - sizes.max())  # Ray's softmax over the brackets' rung counts
        self._bracket_of[trial.trial_id] = int(self._rng.choice(len(sizes), p=probs / probs.sum()))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._time_attr not in result or trial.trial_id not in self._bracket_of:
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t:
            action = TrialScheduler.STOP
        else:
            action = self.decide(trial.trial_id, result)
        self._num_stopped += action == TrialScheduler.STOP
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result and self._time_attr in result and trial.trial_id in self._bracket_of:
            self.decide(trial.trial_id, result)  # recorded at its rung for later trials
        self._bracket_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._bracket_of.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        rungs = " | ".join(
            f"rung {m:g}: {len(r)} trial(s)" for bracket in self._brackets for m, r in bracket
        )
        goals = self._objectives.describe()
        return f"Using MO-ASHA ({goals}): num_stopped={self._num_stopped}; {rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    # ------------------------------------------------------------------ the rungs
    def decide(self, trial_id: str, result: dict) -> str:
        """Record ``result`` at the highest rung the trial has newly reached and say whether
        it continues there (CONTINUE when it reached none)."""
        budget = result[self._time_attr]
        for milestone, recorded in self._brackets[self._bracket_of[trial_id]]:
            if budget < milestone or trial_id in recorded:
                continue
            point = self.point(result)
            keep = not recorded or self.kept(list(recorded.values()), point)
            recorded[trial_id] = point
            return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def point(self, result: dict) -> tuple[np.ndarray, float]:
        """A result as (losses to minimise, total constraint violation; inf: unusable)."""
        goals = zip(self._objectives.metrics, self._objectives.modes, strict=True)
        losses = np.array([_value(result, m, mode) for m, mode in goals])
        violation = sum(
            float(c.violation([_number(result.get(c.metric))])[0])
            for c in self._objectives.constraints
        )
        return losses, (violation if np.isfinite(losses).all() else math.inf)

    def kept(self, recorded: list[tuple[np.ndarray, float]], new: tuple[np.ndarray, float]):
        """Whether ``new`` is among the best ``ceil(n / rf)`` of ``recorded`` + ``new``."""
        points = [*recorded, new]
        order = priority(
            np.array([p[0] for p in points]), np.array([p[1] for p in points]), self._tie_break
        )
        position = int(np.flatnonzero(order == len(points) - 1)[0])
        return position < len(points) / self._rf


def _rungs(min_t: int, max_t: int, rf: float, s: int) -> list[tuple[float, dict]]:
    """Ray's rung milestones of bracket ``s``, the largest first."""
    count = int(np.log(max_t / min_t) / np.log(rf) - s + 1)
    return [(min_t * rf ** (k + s), {}) for k in reversed(range(count))]


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _value(result: dict, metric: str, mode: str) -> float:
    v = _number(result.get(metric))
    return -v if mode == "max" else v


# ---------------------------------------------------------------------- the order at a rung
def priority(losses: np.ndarray, violation: np.ndarray, tie_break: str = "epsnet") -> np.ndarray:
    """The indices of the points, best first: constrained non-dominated sorting, each
    feasible front ordered by the tie-break (in objective space scaled to the points' range)."""
    rank, feasible = rank_points(losses, violation)
    scaled = _scaled(losses)
    order: list[int] = []
    for r in np.unique(rank):
        members = np.flatnonzero(rank == r)
        if len(members) > 1 and feasible[members].all():
            members = members[TIE_BREAK[tie_break](scaled[members])]
        order.extend(members.tolist())
    return np.array(order, dtype=int)


def _scaled(losses: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(losses), losses, np.nan)
    if np.isnan(finite).all():
        return np.zeros_like(losses)
    low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
    spread = np.where(high > low, high - low, 1.0)
    return np.nan_to_num((finite - low) / spread, nan=0.0)


def epsilon_net(points: np.ndarray) -> np.ndarray:
    """Salinas et al.'s order of a front: the best point in the first objective, then always
    the point farthest (Euclidean) from every point taken so far."""
    n = len(points)
    first = int(np.argmin(points[:, 0]))
    order = [first]
    nearest = np.linalg.norm(points - points[first], axis=1)
    nearest[first] = -np.inf
    for _ in range(n - 1):
        pick = int(np.argmax(nearest))
        order.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
        nearest[order] = -np.inf
    return np.array(order, dtype=int)


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point of a front (inf at each objective's ends)."""
    n, k = points.shape
    distance = np.zeros(n)
    for j in range(k):
        order = np.argsort(points[:, j], kind="stable")
        values = points[order, j]
        distance[order[[0, -1]]] = np.inf
        span = values[-1] - values[0]
        if n > 2 and span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def by_crowding(points: np.ndarray) -> np.ndarray:
    """A front's order by crowding distance, the most isolated first (ties: the first)."""
    return np.argsort(-crowding_distance(points), kind="stable")


TIE_BREAK = {"epsnet": epsilon_net, "crowding": by_crowding}

__all__ = [
    "TIE_BREAKS",
    "MultiObjectiveASHA",
    "by_crowding",
    "crowding_distance",
    "epsilon_net",
    "priority",
]
