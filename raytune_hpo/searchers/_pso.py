"""Particle swarm optimisation, Algorithm 3 of ``../shared/seeds/hpo-framework-pso-bohb.md``
(Kennedy & Eberhart, 1995; inertia after Shi & Eberhart, 1998), made asynchronous: a particle
moves as soon as its own trial ends, using the swarm's best at that moment, so N trials run
at once without waiting for a generation.

    v <- w v + u_l (p_i - x) + u_g (g - x),   u_l ~ U[0, phi_l], u_g ~ U[0, phi_g]
    x <- clip(x + v, 0, 1)

p_i is the particle's own best position, g the swarm's. The search stops (``FINISHED``) when
every particle has moved and the swarm's largest speed falls below ``epsilon``.

Departure from the paper: initial velocities are uniform in [-init_speed, init_speed] rather
than 0. With v0 = 0 the first particle to finish is both its own and the swarm's best, so it
would not move and would evaluate the same configuration again; ``init_speed=0`` restores the
paper's setting.
"""

from __future__ import annotations

import math

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.searchers._base import UnitCubeSearcher


class PSOSearch(UnitCubeSearcher):
    """Options: ``swarm_size`` S (8), inertia ``w`` (0.5), personal step ``phi_l`` (1.5),
    global step ``phi_g`` (1.5), ``epsilon`` (1e-3, speed in the unit cube that ends the
    search), ``max_speed`` (0.5, per-move cap), ``init_speed`` (0.1)."""

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        swarm_size: int = 8,
        w: float = 0.5,
        phi_l: float = 1.5,
        phi_g: float = 1.5,
        epsilon: float = 1e-3,
        max_speed: float = 0.5,
        init_speed: float = 0.1,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        if not isinstance(swarm_size, int) or swarm_size < 1:
            raise ValueError(f"swarm_size: must be an integer >= 1, got {swarm_size!r}")
        for name, value in (("w", w), ("phi_l", phi_l), ("phi_g", phi_g)):
            if not 0 <= value < 10:
                raise ValueError(f"{name}: must lie in [0, 10), got {value!r}")
        if epsilon <= 0 or max_speed <= 0:
            raise ValueError("epsilon and max_speed: must be > 0")
        if not 0 <= init_speed <= 1:
            raise ValueError(f"init_speed: must lie in [0, 1], got {init_speed!r}")
        self._v0 = init_speed
        self._S, self._w, self._phi_l, self._phi_g = swarm_size, w, phi_l, phi_g
        self._eps, self._vmax = epsilon, max_speed
        self._x = self._v = self._pbest = None
        self._pbest_loss = None
        self._gbest: np.ndarray | None = None
        self._gbest_loss = math.inf
        self._moves: np.ndarray | None = None  # moves made per particle
        self._idle: list[int] = []  # particles whose position awaits evaluation
        self._running: dict[str, int] = {}  # trial id -> particle

    def _setup(self) -> None:
        d = self._space.dims
        self._x = self._rng.random((self._S, d))
        self._v = self._rng.uniform(-self._v0, self._v0, (self._S, d))
        self._pbest = self._x.copy()
        self._pbest_loss = np.full(self._S, math.inf)
        self._moves = np.zeros(self._S, dtype=int)
        self._idle = list(range(self._S))

    @property
    def converged(self) -> bool:
        if self._moves is None or self._moves.min() == 0:
            return False
        return float(np.linalg.norm(self._v, axis=1).max()) < self._eps

    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        if self.converged:
            return Searcher.FINISHED
        if not self._idle:
            return None  # every particle is being evaluated: ask again later
        i = self._idle.pop(0)
        self._running[trial_id] = i
        return self._x[i].copy()

    def _observe(self, trial_id: str, u: np.ndarray, loss: float) -> None:
        if loss < self._gbest_loss:
            self._gbest, self._gbest_loss = u.copy(), loss
        i = self._running.pop(trial_id, None)
        if i is None:
            return  # a points_to_evaluate trial: it only informs the swarm's best
        if loss < self._pbest_loss[i]:
            self._pbest[i], self._pbest_loss[i] = u, loss
        gbest = self._gbest if self._gbest is not None else self._pbest[i]
        u_l = self._rng.uniform(0, self._phi_l)
        u_g = self._rng.uniform(0, self._phi_g)
        v = self._w * self._v[i] + u_l * (self._pbest[i] - self._x[i]) + u_g * (gbest - self._x[i])
        speed = np.linalg.norm(v)
        if speed > self._vmax:
            v *= self._vmax / speed
        x = np.clip(self._x[i] + v, 0.0, 1.0)
        self._v[i] = x - self._x[i]  # what the particle really moved, walls included
        self._x[i] = x
        self._moves[i] += 1
        self._idle.append(i)
