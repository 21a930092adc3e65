"""Particle swarm optimisation, Algorithm 3 of Goulas & Hocquette, "Deep Learning Project
Report" (PSO, BOHB) (Kennedy & Eberhart 1995; inertia after Shi & Eberhart 1998), made
asynchronous: a particle
moves as soon as its own trial ends, using the swarm's bests at that moment, so N trials run at
once without waiting for a generation.

    v <- w v + u_l (a_i - x) + u_g (g_i - x),   u_l ~ U[0, phi_l], u_g ~ U[0, phi_g]
    x <- clip(x + v, 0, 1)

``a_i`` is the particle's own best position (``attractor="personal"``, standard PSO) or, as in
the paper, the best current position of the swarm (``"current"``); ``g_i`` the swarm's best
(``topology="global"``, the paper) or the best of the particle and its two ring neighbours
(``"ring"``, the lbest PSO of Kennedy & Mendes, 2002). The paper's search stops when every
particle has moved and the swarm's largest speed falls below ``epsilon``. Here, by default
(``restart=True``), the swarm starts again instead: every particle at a new random point, the
swarm's best kept as its social attractor, as in restart strategies for evolutionary search
(Auger & Hansen, 2005). The same happens when no particle can find a configuration not yet
evaluated (discrete spaces). On the tabulated benchmarks (``frontier-tabular``) 37 of the 60
runs without NAS-Bench-201 stopped after 34-97 of their 100 evaluations; now they run them all.
``FINISHED`` only when a restart finds nothing new to evaluate (a small discrete space used up)
or with ``restart=False``, the paper's rule.

Defaults were chosen by measurement on the project's test functions at 60 sequential
evaluations (``scripts/bench_searchers.py --tune``, benchmarks/results/searchers-tuning.json;
held-out functions only checked afterwards): Clerc & Kennedy's (2002) acceleration
phi_l = phi_g = 1.49618 drawn per dimension, but inertia w = 0.4 (their 0.7298 converges too
slowly for such budgets: about 1.3x the regret), a global best (a ring was worse), eight
particles. The initial swarm, a Latin hypercube with initial speeds up to 0.3, comes from the
COCO tuning (BBOB instances 2-4, 5-D, 100 evaluations: the best of 33 settings with 4 trials at
once, benchmarks/results/coco-bbob-5d/tuning.json), re-checked on instance 1 in 5-D and 10-D
(benchmarks/results/frontier/); before it was a scrambled-Sobol swarm with speeds up to 0.1.
Re-seeding particles that have not improved their own best for ``stall`` moves made no
difference at 60 evaluations and is off (it would also keep the swarm from ever stopping).
The paper's settings: ``attractor="current", per_dimension=False, init="random",
init_speed=0, max_speed=math.inf, restart=False`` with its ``w``, ``phi_l``, ``phi_g``.

Departure from the paper: initial velocities are uniform in [-init_speed, init_speed] rather
than 0. With v0 = 0 the first particle to finish is both its own and the swarm's best, so it
would not move and would evaluate the same configuration again; ``init_speed=0`` restores the
paper's setting.

Conditional spaces: a particle carries every coordinate. An inactive one moves on with its
velocity and towards the bests' coordinates like any other (the bests keep the coordinates they
were evaluated at) and takes effect where the particle's parents make it active. A move that
changes only inactive coordinates, or otherwise lands on a configuration already evaluated, is
not spent as an evaluation: the particle takes that configuration's loss and moves again, and
one that lands on a configuration being evaluated moves again without a loss; after 64 such
moves in a row the particle waits (``FINISHED`` when no trial is running then: the swarm only
revisits what it has evaluated). So no two evaluations of a conditional space are equal on
their active parameters (a flat space keeps the algorithm above unchanged).

No repeats (``repeats=False``, the default): in a space where configurations can coincide
(integers, categoricals, quantized floats, conditions), a move that lands on a configuration
already evaluated is not spent as an evaluation, as in a conditional space above; in a space of
plain floats nothing changes. ``repeats=True`` evaluates such configurations again (a noisy
objective).

Unordered categoricals (choices that are not all numbers: optimizer names, NAS-Bench-201's
operations) move as probabilities, one-hot, after the categorical PSO of Strasser et al.
("An adaptive particle swarm optimization algorithm for mixed-variable optimization problems",
2016): each particle holds a probability per choice and a velocity of them,
``v <- w v + u_l (e_a - p) + u_g (e_g - p)``, ``p <- p + v`` (clipped, renormalised), where e_a
and e_g are one-hot vectors of the attractors' choices; its choice is drawn from p. A choice's
place in the list means nothing. Categoricals of numbers keep their order (a coordinate like a
range's). The swarm's speed in such a dimension is half the L1 norm of v. The choice is drawn
from ``(1 - mutation) p + mutation / n`` (``mutation=0.1``): without it the probabilities
collapse onto the choices of the swarm's first points and a new choice is rarely tried
(NAS-Bench-201's operations; ``frontier-tabular``). ``mutation=0`` draws from p alone.

Several objectives or constraints (``objectives``): ParEGO's augmented Chebyshev scalarisation
(``raytune_hpo.objectives.scalarise``, Knowles, 2006) with one weight vector per particle,
drawn when the swarm starts: each particle follows its own trade-off, so the swarm spreads
along the front. When particle i lands or moves, every loss it compares (its own best, the
swarm's current positions) is scored anew under its weights and the normalisation seen so far,
and its social attractor is the best evaluation under them (``topology="ring"``: the best of
its ring's own bests under them). An infeasible evaluation scores worse than every feasible one.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from ray.tune.search import Searcher
from scipy.stats import qmc

from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._base import UnitCubeSearcher
from raytune_hpo.searchers._contract import set_up
from raytune_hpo.searchers._kinds import discrete, unordered_dims

ATTRACTORS = ("personal", "current")
TOPOLOGIES = ("global", "ring")
INITS = ("lhs", "sobol", "random")
_FREE_MOVES = 64  # moves onto known configurations in a row before a particle waits


class PSOSearch(UnitCubeSearcher):
    """Asynchronous particle swarm; ``FINISHED`` when the swarm stops moving.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``.
        swarm_size: particles S (8).
        w: inertia (0.4, in [0, 10)).
        phi_l, phi_g: the largest step towards the particle's attractor and towards the
            swarm's (or ring's) best (1.49618 each, in [0, 10)).
        attractor: ``personal`` (the particle's own best; standard PSO) or ``current`` (the
            swarm's best current position, the paper's).
        topology: ``global`` (the swarm's best) or ``ring`` (the best of the particle and its
            two ring neighbours).
        per_dimension: random factors drawn per dimension (True) or one per move.
        init: the initial swarm, ``lhs``, ``sobol`` or ``random``.
        stall: moves without a new personal best before a particle starts afresh (0: never).
        epsilon: the swarm's largest speed (in the unit cube) that ends the search (1e-3).
        max_speed: the longest move (0.5).
        init_speed: initial speeds are uniform in [-init_speed, init_speed] (0.3, in [0, 1]).
        repeats: evaluate a configuration again when a move lands on one already evaluated
            (False: such a move is not spent as an evaluation).
        mutation: unordered categoricals: the share of the uniform distribution in the
            probabilities a choice is drawn from (0.1, in [0, 1]).
        restart: when the swarm would stop (it has converged, or no particle finds a
            configuration not yet evaluated), every particle starts afresh at a random point
            and the search goes on (True); False: ``FINISHED`` then, the paper's rule.
        objectives: several objectives or constraints (the sweep gives them): scalarised,
            one weight vector per particle.
    """

    _saved: ClassVar[tuple[str, ...]] = (
        *("_v0", "_S", "_w", "_phi_l", "_phi_g", "_attractor", "_topology", "_init"),
        *("_per_dim", "_stall", "_eps", "_vmax", "_x", "_v", "_pbest", "_pbest_loss"),
        *("_now_loss", "_now", "_gbest", "_gbest_loss", "_moves", "_stuck", "_idle"),
        *("_running", "reseeded", "_weights", "_pbest_row", "_now_row"),
        *("_no_repeats", "_cat_p", "_cat_v", "_mutation", "_restart", "restarts"),
        "_restarted",
    )
    _state_version = 4
    # Several objectives (version 2): each particle's weights, rows of its best and latest.
    # Version 3: no repeats on discrete spaces, unordered categoricals as probabilities (a state
    # of an earlier version continues as it ran: repeats allowed, categoricals ordered).
    _added = {
        "_weights": (2, None),
        "_pbest_row": (2, None),
        "_now_row": (2, None),
        "_no_repeats": (3, False),
        "_cat_p": (3, None),
        "_cat_v": (3, None),
        "_mutation": (4, 0.0),
        "_restart": (4, False),
        "restarts": (4, 0),
        "_restarted": (4, False),
    }
    # Conditional spaces: evaluated configurations (SearchSpace.key) -> loss (and row), from
    # the observations (earlier results included).
    _derived = ("_seen", "_seen_rows")

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        swarm_size: int = 8,
        w: float = 0.4,
        phi_l: float = 1.49618,
        phi_g: float = 1.49618,
        attractor: str = "personal",
        topology: str = "global",
        per_dimension: bool = True,
        init: str = "lhs",
        stall: int = 0,
        epsilon: float = 1e-3,
        max_speed: float = 0.5,
        init_speed: float = 0.3,
        repeats: bool = False,
        mutation: float = 0.1,
        restart: bool = True,
        objectives=None,
    ):
        super().__init__(
            space,
            metric,
            mode,
            seed=seed,
            points_to_evaluate=points_to_evaluate,
            objectives=objectives,
        )
        check.integer("swarm_size", swarm_size, 1)
        for name, value in (("w", w), ("phi_l", phi_l), ("phi_g", phi_g)):
            check.within(name, value, 0, 10, "[)")
        check.positive("epsilon", epsilon)
        check.positive("max_speed", max_speed)
        check.within("init_speed", init_speed, 0, 1)
        check.within("mutation", mutation, 0, 1)
        flags = {"per_dimension": per_dimension, "repeats": repeats, "restart": restart}
        for name, flag in flags.items():
            check.boolean(name, flag)
        check.integer("stall", stall, 0)
        check.one_of("attractor", attractor, ATTRACTORS)
        check.one_of("topology", topology, TOPOLOGIES)
        check.one_of("init", init, INITS)
        self._v0 = init_speed
        self._mutation = float(mutation)
        self._restart = restart
        self.restarts = 0  # swarm restarts so far
        self._restarted = False  # a restart with no evaluation since (a second ends it)
        self._S, self._w, self._phi_l, self._phi_g = swarm_size, w, phi_l, phi_g
        self._attractor, self._topology, self._init = attractor, topology, init
        self._per_dim, self._stall = per_dimension, stall
        self._eps, self._vmax = epsilon, max_speed
        # The swarm (S x d positions, speeds, bests; S losses): None until _setup.
        self._x: np.ndarray | None = None
        self._v: np.ndarray | None = None
        self._pbest: np.ndarray | None = None
        self._pbest_loss: np.ndarray | None = None
        self._now_loss: np.ndarray | None = None
        self._now: np.ndarray | None = None
        self._gbest: np.ndarray | None = None
        self._gbest_loss = math.inf
        self._moves: np.ndarray | None = None  # moves made per particle
        self._stuck: np.ndarray | None = None  # moves since the particle's best improved
        self._idle: list[int] = []  # particles whose position awaits evaluation
        self._running: dict[str, int] = {}  # trial id -> particle
        self.reseeded = 0
        # Several objectives: each particle's weights, rows of its best and latest (_setup).
        self._weights: np.ndarray | None = None
        self._pbest_row: np.ndarray | None = None
        self._now_row: np.ndarray | None = None
        self._no_repeats = not repeats
        # Unordered categoricals: dimension -> each particle's probabilities (S x choices) and
        # their velocities (None: every categorical moves as an ordered coordinate).
        self._cat_p: dict[int, np.ndarray] | None = {}
        self._cat_v: dict[int, np.ndarray] | None = {}
        self._seen: dict[tuple, float] = {}
        self._seen_rows: dict[tuple, np.ndarray] = {}

    def _setup(self) -> None:
        d, s = self._space.dims, self._S
        if self._init == "sobol":
            m = max(0, math.ceil(math.log2(s)))
            self._x = qmc.Sobol(d, seed=self._rng).random_base2(m)[:s]
        elif self._init == "lhs":
            self._x = qmc.LatinHypercube(d, seed=self._rng).random(s)
        else:
            self._x = self._rng.random((s, d))
        self._v = self._rng.uniform(-self._v0, self._v0, (s, d))
        self._pbest = self._x.copy()
        self._pbest_loss = np.full(s, math.inf)
        self._now = self._x.copy()  # each particle's latest evaluated position
        self._now_loss = np.full(s, math.inf)  # and its loss
        self._moves = np.zeros(s, dtype=int)
        self._stuck = np.zeros(s, dtype=int)
        self._idle = list(range(s))
        if self._scal is not None:
            self._weights = np.array([self._scal.weights(self._rng) for _ in range(s)])
            self._pbest_row = np.full((s, self._scal.width), math.inf)
            self._now_row = self._pbest_row.copy()
        if self._cat_p is not None:
            cat_v = set_up(self._cat_v, "_cat_v")  # None with _cat_p: an earlier version's
            for j, n in self._unordered().items():
                self._cat_p[j] = np.eye(n)[self._choice(self._x[:, j], n)]
                cat_v[j] = np.zeros((s, n))
        self._rebuild()

    def _unordered(self) -> dict[int, int]:
        """Dimension -> number of choices of the unordered categoricals (none when this state
        moves every categorical as an ordered coordinate)."""
        return {} if self._cat_p is None else unordered_dims(self._space)

    @staticmethod
    def _choice(u: np.ndarray, n: int) -> np.ndarray:
        """The choice index of unit coordinates (the space's cells)."""
        return np.minimum((np.asarray(u) * n).astype(int), n - 1)

    @property
    def _dedupe(self) -> bool:
        """Whether moves onto evaluated configurations are skipped: conditional spaces always,
        and spaces whose configurations can coincide unless repeats are asked for."""
        space = self._space
        if space.conditional:
            return True
        return self._no_repeats and any(discrete(p) for p in space.params.values())

    def _rebuild(self) -> None:
        self._seen, self._seen_rows = {}, {}
        if self._dedupe:
            for points, losses in (self.prior, self.observations):
                for u, loss in zip(points, losses, strict=True):
                    self._seen[self._key(u)] = float(loss)
            if self._scal is not None:
                for u, row in zip(*self.evaluations, strict=True):
                    self._seen_rows[self._key(u)] = row

    def _key(self, u: np.ndarray) -> tuple:
        return self._space.key(self._space.from_unit(u))

    @property
    def converged(self) -> bool:
        if self._moves is None or self._moves.min() == 0:
            return False
        return float(np.linalg.norm(set_up(self._v, "_v"), axis=1).max()) < self._eps

    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        if self.converged and not self._start_again():
            return Searcher.FINISHED
        if not self._idle:
            return None  # every particle is being evaluated: ask again later
        if self._dedupe:
            fresh = self._fresh()
            if self.converged:  # moves onto evaluated configurations slowed it down
                if not self._start_again():
                    return Searcher.FINISHED
                fresh = self._fresh()  # every particle is somewhere else now
            if fresh is None and not self._running and self._start_again():
                fresh = self._fresh()
            if fresh is None:
                return None if self._running else Searcher.FINISHED
            self._idle.remove(fresh)
            self._running[trial_id] = fresh
            return set_up(self._x, "_x")[fresh].copy()
        i = self._idle.pop(0)
        self._running[trial_id] = i
        return set_up(self._x, "_x")[i].copy()

    def _fresh(self) -> int | None:
        """The first idle particle that finds a configuration not yet evaluated (``_unseen``)."""
        return next((i for i in list(self._idle) if self._unseen(i)), None)

    def _start_again(self) -> bool:
        """With ``restart``: every particle afresh at a random point (the swarm's best stays),
        unless the last restart has not led to an evaluation yet; True if it restarted."""
        if not self._restart or self._restarted:
            return False
        for i in range(self._S):
            self._reseed(i)
        self.reseeded -= self._S  # counted as a restart, not as stalled particles
        set_up(self._moves, "_moves")[:] = 0  # the speed rule waits for the new swarm's moves
        self.restarts += 1
        self._restarted = True
        return True

    def _unseen(self, i: int) -> bool:
        """Move particle i past configurations evaluated (it takes their loss) or being
        evaluated (no loss yet); False if it still sits on one after ``_FREE_MOVES``."""
        flying = {self._key(u) for u in self._live_units.values()}
        x = set_up(self._x, "_x")  # moved in place
        for _ in range(_FREE_MOVES):
            key = self._key(x[i])
            if key in self._seen:
                self._land(i, x[i].copy(), self._seen[key], self._seen_rows.get(key))
            elif key in flying:
                self._move(i)
            else:
                return True
        return False

    def _social(self, i: int) -> np.ndarray:
        pbest = set_up(self._pbest, "_pbest")
        if self._topology == "ring" and self._S > 2:
            ring = [(i - 1) % self._S, i, (i + 1) % self._S]
            pbest_loss = set_up(self._pbest_loss, "_pbest_loss")
            return pbest[min(ring, key=lambda j: pbest_loss[j])]
        return self._gbest if self._gbest is not None else pbest[i]

    def _local(self, i: int) -> np.ndarray:
        if self._attractor == "current":
            now_loss = set_up(self._now_loss, "_now_loss")
            return set_up(self._now, "_now")[int(np.argmin(now_loss))]
        return set_up(self._pbest, "_pbest")[i]

    def _observe(
        self, trial_id: str, u: np.ndarray, loss: float, row: np.ndarray | None = None
    ) -> None:
        if row is None and loss < self._gbest_loss:  # several objectives: see _rescore
            self._gbest, self._gbest_loss = u.copy(), loss
        if self._dedupe:
            self._seen[self._key(u)] = loss
            if row is not None:
                self._seen_rows[self._key(u)] = row
        self._restarted = False
        i = self._running.pop(trial_id, None)
        if i is None:
            return  # a points_to_evaluate trial: it only informs the swarm's best
        self._land(i, u, loss, row)
        self._idle.append(i)

    def _land(self, i: int, u: np.ndarray, loss: float, row: np.ndarray | None = None) -> None:
        """Particle i's position ``u`` has ``loss`` (several objectives: ``row``, scored under
        its weights): its bests, then its next move."""
        pbest, pbest_loss = set_up(self._pbest, "_pbest"), set_up(self._pbest_loss, "_pbest_loss")
        now, now_loss = set_up(self._now, "_now"), set_up(self._now_loss, "_now_loss")
        moves, stuck = set_up(self._moves, "_moves"), set_up(self._stuck, "_stuck")
        if row is not None:
            scal, w = self._several()[0], set_up(self._weights, "_weights")[i]
            pbest_row = set_up(self._pbest_row, "_pbest_row")
            now_row = set_up(self._now_row, "_now_row")
            loss = float(scal.loss(row, w))
            pbest_loss[i] = scal.loss(pbest_row[i], w)
            now_row[i] = row
        now[i], now_loss[i] = u, loss
        if loss < pbest_loss[i]:
            pbest[i], pbest_loss[i] = u, loss
            if row is not None:
                pbest_row[i] = row
            stuck[i] = 0
        else:
            stuck[i] += 1
        moves[i] += 1
        if self._stall and stuck[i] >= self._stall:
            self._reseed(i)
        else:
            self._move(i)

    def _rescore(self, i: int) -> None:
        """Several objectives: the losses particle i compares, scored under its weights and
        the normalisation of now; the swarm's best is the best evaluation under them."""
        scal, w = self._several()[0], set_up(self._weights, "_weights")[i]
        self._now_loss = scal.loss(set_up(self._now_row, "_now_row"), w)
        self._pbest_loss = scal.loss(set_up(self._pbest_row, "_pbest_row"), w)
        points, rows = self.evaluations
        if len(rows):
            scores = scal.loss(rows, w)
            j = int(np.argmin(scores))
            if math.isfinite(scores[j]):
                self._gbest, self._gbest_loss = points[j].copy(), float(scores[j])

    def _move(self, i: int) -> None:
        if self._scal is not None:
            self._rescore(i)
        shape = self._space.dims if self._per_dim else 1
        u_l = self._rng.uniform(0, self._phi_l, shape)
        u_g = self._rng.uniform(0, self._phi_g, shape)
        xs, vs = set_up(self._x, "_x"), set_up(self._v, "_v")
        x = xs[i]
        v = self._w * vs[i] + u_l * (self._local(i) - x) + u_g * (self._social(i) - x)
        speed = np.linalg.norm(v)
        if speed > self._vmax:
            v *= self._vmax / speed
        new = np.clip(x + v, 0.0, 1.0)
        vs[i] = new - x  # what the particle really moved, walls included
        xs[i] = new
        if self._unordered():
            self._move_choices(i, u_l, u_g)

    def _move_choices(self, i: int, u_l: np.ndarray, u_g: np.ndarray) -> None:
        """Particle i's unordered categoricals: probabilities pulled towards the attractors'
        choices (one-hot), its choice drawn from them."""
        local, social = self._local(i), self._social(i)
        xs, vs = set_up(self._x, "_x"), set_up(self._v, "_v")
        cat_p, cat_v = set_up(self._cat_p, "_cat_p"), set_up(self._cat_v, "_cat_v")
        for j, n in self._unordered().items():
            a = u_l[j] if np.ndim(u_l) and len(u_l) > 1 else float(np.ravel(u_l)[0])
            g = u_g[j] if np.ndim(u_g) and len(u_g) > 1 else float(np.ravel(u_g)[0])
            p, eye = cat_p[j][i].copy(), np.eye(n)  # a copy: the row is set to q below
            e_a, e_g = eye[self._choice(local[j], n)], eye[self._choice(social[j], n)]
            v = self._w * cat_v[j][i] + a * (e_a - p) + g * (e_g - p)
            q = np.clip(p + v, 0.0, None)
            q = q / q.sum() if q.sum() > 0 else np.full(n, 1 / n)
            cat_v[j][i], cat_p[j][i] = q - p, q
            c = int(self._rng.choice(n, p=(1 - self._mutation) * q + self._mutation / n))
            xs[i, j] = (c + 0.5) / n
            vs[i, j] = 0.5 * np.abs(q - p).sum()  # its speed, for the stopping rule

    def _reseed(self, i: int) -> None:
        """A particle stuck for ``stall`` moves starts afresh at a random point (its memory
        goes; the swarm's best stays)."""
        x = set_up(self._x, "_x")
        x[i] = self._rng.random(self._space.dims)
        set_up(self._v, "_v")[i] = self._rng.uniform(-self._v0, self._v0, self._space.dims)
        for j, n in self._unordered().items():
            set_up(self._cat_p, "_cat_p")[j][i] = np.eye(n)[self._choice(x[i, j], n)]
            set_up(self._cat_v, "_cat_v")[j][i] = 0.0
        set_up(self._pbest_loss, "_pbest_loss")[i] = math.inf
        set_up(self._now_loss, "_now_loss")[i] = math.inf
        if self._scal is not None:
            set_up(self._pbest_row, "_pbest_row")[i] = set_up(self._now_row, "_now_row")[i] = (
                math.inf
            )
        set_up(self._stuck, "_stuck")[i] = 0
        self.reseeded += 1
