"""Approximate-gradient neighbourhood search on a multi-resolution grid, after Mahto & Chauhan,
"An approximate gradient based hyper-parameter optimization in a neural network architecture"
(Algorithm 1 and section 4.1).

The grid (``_lattice``) is the paper's non-uniform coarse grid, whose spacing may halve locally.
A walk starts at a grid point, evaluates it and its 2d axis neighbours (concurrently; phase
``POLL``), estimates the slope per dimension by finite differences and walks along the
estimated descent direction, doubling the step while it keeps improving (phase ``LINE``, a
line search; categorical and explicit-grid dimensions take one step towards their better
neighbour). It moves to the best point seen if that improves on the centre. When nothing
improves, the grid is refined around the centre: the spacing halves locally, up to ``refine``
times; then the centre is a local optimum and the walk restarts. Start points are
scrambled-Sobol points snapped to the coarsest grid that still has an unevaluated point there.
No configuration is evaluated twice.

The start design (``design``, default: the space's dimensions + 1): before the first walk,
that many scrambled-Sobol grid points are evaluated (at once when slots are free), and a walk
starts at the best design point no walk has used; a fresh Sobol point only when none is left.
One random start point found a poor basin too often on multi-modal functions. With a warm
start the earlier results stand for the design. ``design=0`` is the earlier behaviour.

Several trials at once (``fill="explore"``, the default): when every walk waits for results and
Tune asks for another trial, the slot takes a point the walk will want next: the line search's
next multiples (2t, 4t) while it waits for t, then the axis neighbours of its best point so far
(the poll of its likely next centre); when no walk has such a point the slot evaluates a new
design point, which a later walk may start from. ``fill="line"`` starts a new walk there
instead (``walkers`` caps their number), and ``fill="walks"``, the behaviour before that,
starts a new walk whenever every walk waits: with 4 at once four walks shared 100 evaluations
and the search fell from first to last on COCO (benchmarks/results/coco-bbob-5d). In a
sequential run one walk runs at a time in every case.

Where free slots explore (``explore="model"``, the default): after the start design, a new
design point is the free grid point nearest the candidate a Gaussian-process model of every
result so far rates best (``_explore_model``: the lower confidence bound over random
candidates), not the next Sobol point; and when a walk's line search ends, it goes to the best
explored point that beats its best point, instead of moving or refining. With 4 at once the
one walk in a run of 100 evaluations rarely ended, so the Sobol points explored (about 22 of
the 100) went unused (benchmarks/results/frontier). ``explore="sobol"`` is the earlier
behaviour. One trial at a time nothing explores after the design, and this changes nothing.

The step (``model="quadratic"``, the default): after a poll, a fine dimension whose centre
and two neighbours curve upwards moves to the vertex of their parabola (the minimum of a
separable quadratic model of the poll, a Newton step), the others by the paper's scaled finite
difference; the line search then doubles that step while it improves. On smooth functions one
step reaches the bottom of a quadratic along each axis instead of walking there a grid step at a
time. ``model="none"`` is the paper's step.

Unordered categoricals (``categorical="unordered"``, choices that are not all numbers): every
other choice is a neighbour, and a walk moves to the best of them; numbers keep their order
(``_lattice``). ``categorical="ordered"`` walks a list of names by its order, as before.

The paper's algorithm is ``model="none", fill="walks", categorical="ordered", design=0,
explore="sobol"`` (and one trial at a time).

``FINISHED`` only when nothing is left: every point of
the grid down to its finest spacing evaluated (in practice explicit grids, categoricals or a
small ``refine``), or ``max_restarts`` used up.

Conditional spaces: a walk carries every coordinate of its centre. A neighbour that differs
only in a dimension that does not apply is the centre itself (the same configuration, not
evaluated again), so the slope there is 0 and the walk keeps that coordinate as it was until a
move of a parent makes it apply; no two evaluations are equal on their active parameters.

Several objectives or constraints (``objectives``): ParEGO's augmented Chebyshev scalarisation
(``raytune_hpo.objectives.scalarise``, Knowles, 2006) with one weight vector per walk, drawn
when it starts: a walk's slopes and steps compare losses of one trade-off, and the walks
together spread along the front. A walk scores every point it compares under its weights and
the normalisation seen so far, whenever it compares them; an infeasible point scores worse
than every feasible one.

Changes from the earlier grid-only version: it used to end once the coarse grid was used up (25
points of a 2-D problem with 5 levels) and always started at a random grid point; the options
``levels`` and ``max_restarts`` keep their meaning (``max_restarts``: walks after the first,
including the ones started to fill concurrent slots).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from ray.tune.search import Searcher
from scipy.stats import qmc

from raytune_hpo.searchers import _explore_model as model_of
from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._base import UnitCubeSearcher
from raytune_hpo.searchers._contract import set_up
from raytune_hpo.searchers._lattice import Index, Lattice, direction

_STARTS = 256  # Sobol start points drawn at once (then uniform random ones)
_ENUMERATE = 200_000  # grids up to this size are searched exhaustively for a free start
MODELS = ("quadratic", "none")
FILLS = ("explore", "line", "walks")
CATEGORICALS = ("unordered", "ordered")
EXPLORES = ("model", "sobol")


class Phase(enum.Enum):
    POLL = "poll"  # the centre and its axis neighbours are evaluated
    LINE = "line"  # steps along the estimated descent direction


@dataclass
class Walk:
    """One walk: its centre, refinement depth, and the points it waits for."""

    centre: Index
    depth: int
    need: list[Index] = field(default_factory=list)  # points whose losses this phase needs
    phase: Phase = Phase.POLL
    direction: np.ndarray | None = None
    t: int = 0  # line search: multiple of the direction tried last
    best: Index = ()  # best point of this poll + line search
    weights: np.ndarray | None = None  # several objectives: the walk's scalarisation weights
    newton: bool = False  # the line follows a Newton step (a fallback to the paper's is left)

    def poll(self, neighbours: list[Index]) -> None:
        """Start a poll of the centre and its ``neighbours``."""
        self.phase, self.best, self.t = Phase.POLL, self.centre, 0
        self.need = [self.centre, *neighbours]


class ApproxGradientSearch(UnitCubeSearcher):
    """Grid neighbourhood search along finite-difference slopes, with restarts.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``.
        levels: coarse grid values per dimension without explicit ``grid`` values (5, the
            paper's; at least 2).
        refine: how often the spacing may halve around a walk's centre (8, in [0, 30]).
        max_restarts: walks after the first (None: unlimited; the walks started to keep
            concurrent slots busy count).
        walkers: walks at once at most (None: as many as keep the trial slots busy).
        model: ``quadratic`` (a Newton step where the poll curves upwards) or ``none`` (the
            paper's finite-difference step).
        fill: ``explore`` (free slots take the walk's next line or poll points, else new design
            points), ``line`` (the same, else new walks) or ``walks`` (free slots start new
            walks).
        categorical: ``unordered`` (a categorical of names has every other choice as a
            neighbour) or ``ordered`` (the list's neighbours, the earlier behaviour).
        design: scrambled-Sobol points evaluated before the first walk, which starts at their
            best (None: the space's dimensions + 1; 0: none, the earlier behaviour).
        explore: ``model`` (free slots explore where a Gaussian-process model of the results
            points, and a walk goes to an explored point that beats it) or ``sobol`` (the next
            Sobol points, the earlier behaviour).
        objectives: several objectives or constraints (the sweep gives them): scalarised,
            one weight vector per walk.
    """

    _saved: ClassVar[tuple[str, ...]] = (
        *("_levels", "_depth", "_max_restarts", "_max_walkers", "_loss", "_flight", "_flying"),
        *("_walks", "_starts", "_next_start", "local_optima", "_optima", "_restarts", "_done"),
        *("_row", "_model", "_fill", "_hamming", "_design", "_probes", "_started"),
        *("_explore", "_fit"),
    )
    _state_version = 5
    _added = {
        "_row": (2, {}),  # several objectives (version 2): evaluated points' rows
        # version 3: the Newton step, filling slots from the line, unordered categoricals (a
        # state of an earlier version continues as it ran)
        "_model": (3, "none"),
        "_fill": (3, "walks"),
        "_hamming": (3, False),
        # version 4: the start design (an earlier state continues without one)
        "_design": (4, 0),
        "_probes": (4, []),
        "_started": (4, set()),
        # version 5: exploration where a model of the results points (an earlier state
        # continues with Sobol points)
        "_explore": (5, "sobol"),
        "_fit": (5, model_of.Fit()),
    }
    _derived = ("_lattice", "_weights_now")

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        levels: int = 5,
        refine: int = 8,
        max_restarts: int | None = None,
        walkers: int | None = None,
        model: str = "quadratic",
        fill: str = "explore",
        categorical: str = "unordered",
        design: int | None = None,
        explore: str = "model",
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
        check.integer("levels", levels, 2)
        check.integer("refine", refine, 0, 30)
        if max_restarts is not None:
            check.integer("max_restarts", max_restarts, 0)
        if walkers is not None:
            check.integer("walkers", walkers, 1)
        self._levels, self._depth = levels, refine
        check.one_of("model", model, MODELS)
        check.one_of("fill", fill, FILLS)
        check.one_of("categorical", categorical, CATEGORICALS)
        check.one_of("explore", explore, EXPLORES)
        self._max_restarts, self._max_walkers = max_restarts, walkers
        self._model, self._fill = model, fill
        self._hamming = categorical == "unordered"
        if design is not None:
            check.integer("design", design, 0)
        self._design = design  # None: the space's dimensions + 1 (set when the space is known)
        self._explore = explore
        self._fit = model_of.Fit()
        self._probes: list[tuple[Index, int]] = []  # design points launched: (point, depth)
        self._started: set[Index] = set()  # keys of design points walks started at
        self._lattice: Lattice | None = None
        self._loss: dict[Index, float] = {}  # evaluated points, by key (Lattice.key)
        self._flight: dict[str, tuple[Index, Index]] = {}  # trial id -> (point, key)
        self._flying: set[Index] = set()  # keys being evaluated
        self._walks: list[Walk] = []
        self._starts: np.ndarray | None = None
        self._next_start = 0
        self.local_optima: list[tuple[dict[str, Any], float]] = []
        self._optima: set[Index] = set()
        self._restarts = -1  # the first walk is not a restart
        self._done = False
        self._row: dict[Index, np.ndarray] = {}  # several objectives: rows, by key
        self._weights_now: np.ndarray | None = None  # the weights of the walk being moved on

    # ------------------------------------------------------------------ grid
    def _setup(self) -> None:
        self._rebuild()
        starts = qmc.Sobol(self._space.dims, seed=self._rng).random(_STARTS)
        earlier, losses = self.prior
        if self._design is None:
            self._design = self._space.dims + 1
        if np.isfinite(losses).any():  # warm start: the first walk starts at the earlier best
            starts = np.vstack([earlier[int(np.argmin(losses))], starts])
            self._design = 0  # the earlier results stand for the design
        self._starts = starts

    def _rebuild(self) -> None:
        space = self._space
        active = space.active_flags if space.conditional else None
        self._lattice = Lattice.build(
            list(space.params.values()),
            self._levels,
            self._depth,
            active=active,
            hamming=self._hamming,
        )

    @property
    def _lat(self) -> Lattice:
        """The lattice, made once the space is known (``_setup``, ``_rebuild``)."""
        return set_up(self._lattice, "_lattice")

    @property
    def grid_size(self) -> int:
        """Points of the coarse grid."""
        return self._lat.coarse_size

    def _config_of(self, idx: Index) -> dict[str, Any]:
        space = self._space
        flat = dict(zip(space.params, self._lat.values(idx), strict=True))
        return space.nest(space.active_values(flat))

    def _config_for(self, trial_id: str, u: np.ndarray) -> dict[str, Any]:
        return self._config_of(self._flight[trial_id][0])  # exact grid values, not decoded

    def _known(self, idx: Index) -> bool:
        key = self._lat.key(idx)
        return key in self._loss or key in self._flying

    def _loss_of(self, idx: Index) -> float | None:
        """The point's loss (several objectives: its row scored under the weights of the walk
        being moved on, and the normalisation of now); None when not evaluated."""
        key = self._lat.key(idx)
        if self._scal is None or key not in self._row:
            return self._loss.get(key)
        return float(self._scal.loss(self._row[key], set_up(self._weights_now, "_weights_now")))

    def _loss_known(self, idx: Index) -> float:
        """``_loss_of`` a point evaluated already (a walk's met needs, its best, its centre)."""
        loss = self._loss_of(idx)
        if loss is None:
            raise RuntimeError(f"{type(self).__name__}: point {idx} has no loss yet")
        return loss

    # ------------------------------------------------------------------ starts
    def _new_start(self) -> tuple[Index, int] | None:
        lat, starts = self._lat, set_up(self._starts, "_starts")
        if len(self._loss) + len(self._flying) >= lat.size:
            return None  # every point down to the finest spacing is evaluated
        for _ in range(64):
            if self._next_start < len(starts):
                u = starts[self._next_start]
                self._next_start += 1
            else:
                u = self._rng.random(self._space.dims)
            if (start := self._free_at(u)) is not None:
                return start
        if lat.size > _ENUMERATE:
            return None  # no free point found by chance in a huge grid: it is all but used up
        spans = [lat.span(j) + 1 for j in range(lat.dims)]
        free = [i for i in np.ndindex(*spans) if not self._known(i)]
        if not free:
            return None
        return tuple(int(v) for v in free[self._rng.integers(len(free))]), self._depth

    def _modelled(self) -> tuple[Index, int] | None:
        """The free grid point nearest the best-rated candidate of ``_explore_model`` that has
        one, at the coarsest spacing (None: nothing to model yet, or no candidate is free)."""
        lat = self._lat
        pairs = [(x, y) for x, y in (self.prior, self.observations) if len(y)]
        if not pairs:
            return None
        units = np.vstack([x for x, _ in pairs])
        losses = np.concatenate([y for _, y in pairs])
        choices = [len(lat.axes[j]) if lat.is_unordered(j) else 0 for j in range(lat.dims)]
        ranked = model_of.ranked(units, losses, self._rng, choices=choices, fit=self._fit)
        for u in ranked if ranked is not None else ():
            if (point := self._free_at(u)) is not None:
                return point
        return None

    def _free_at(self, u: np.ndarray) -> tuple[Index, int] | None:
        """The grid point nearest the unit point ``u`` at the coarsest spacing where it is not
        evaluated or out, with that depth (None: taken at every spacing)."""
        lat = self._lat
        for depth in range(self._depth + 1 if any(lat.fine) else 1):
            idx = lat.snap(u, depth)
            if not self._known(idx):
                return idx, depth
        return None

    def _best_probe(self) -> tuple[Index, int] | None:
        """The best evaluated design point no walk has started at or reached."""
        key, taken = self._lat.key, {self._lat.key(w.centre) for w in self._walks}
        best = None
        for idx, depth in self._probes:
            k = key(idx)
            if k in self._started or k in taken or k in self._optima or k not in self._loss:
                continue
            if best is None or self._loss[k] < self._loss[key(best[0])]:
                best = (idx, depth)
        return best

    def _designed(self) -> bool:
        """Whether the design's points are evaluated (there may be more out)."""
        key = self._lat.key
        return sum(key(i) in self._loss for i, _ in self._probes) >= (self._design or 0)

    def _probe(self) -> Index | None:
        """A new design point: a free grid point at the next Sobol point, or after the start
        design (``explore="model"``) at the candidate the model rates best."""
        start = None
        if self._explore == "model" and len(self._probes) >= (self._design or 0):
            start = self._modelled()
        if start is None:
            start = self._new_start()
        if start is None:  # no free point left: the design is what has been launched
            self._design = min(self._design or 0, len(self._probes))
            return None
        self._probes.append(start)
        return start[0]

    def _spawn(self) -> Walk | None:
        if self._max_restarts is not None and self._restarts >= self._max_restarts:
            return None
        start = self._best_probe()
        if start is not None:
            self._started.add(self._lat.key(start[0]))
        else:
            start = self._new_start()
        if start is None:
            return None
        self._restarts += 1
        walk = Walk(*start)
        if self._scal is not None:
            walk.weights = self._scal.weights(self._rng)
        self._poll(walk)
        self._walks.append(walk)
        return walk

    # ------------------------------------------------------------------ one walk
    def _poll(self, walk: Walk) -> None:
        walk.poll(self._lat.neighbours(walk.centre, walk.depth))

    def _line_point(self, walk: Walk) -> Index:
        return self._lat.line_point(walk.centre, set_up(walk.direction, "direction"), walk.t)

    def _advance(self, walk: Walk) -> bool:
        """Move a walk on while its needs are met; False when it is over."""
        self._weights_now = walk.weights
        while all(self._loss_of(i) is not None for i in walk.need):
            for i in walk.need:
                if self._loss_known(i) < self._loss_known(walk.best):
                    walk.best = i
            if walk.phase is Phase.POLL:
                walk.phase, walk.t = Phase.LINE, 0
                walk.direction = self._direction(walk, self._model == "quadratic")
                walk.newton = self._model == "quadratic"
                previous = walk.centre
            else:
                previous = self._line_point(walk)
                if walk.best != previous and walk.newton and walk.t == 1:
                    # the Newton step did not improve: the paper's step from the centre
                    walk.direction, walk.newton, walk.t = self._direction(walk, False), False, 0
                    previous = walk.centre
                elif walk.best != previous:  # the last step did not improve: the line is over
                    walk.need = []
                    if not self._settle(walk):
                        return False
                    continue
            walk.t = 1 if walk.t == 0 else 2 * walk.t
            point = self._line_point(walk)
            if point == previous:  # no move (flat, or against the boundary)
                if not self._settle(walk):
                    return False
                continue
            walk.need = [point]
        return True

    def _direction(self, walk: Walk, model: bool) -> np.ndarray:
        lat = self._lat
        return direction(lat, walk.centre, walk.depth, self._loss_of, model=model)

    def _settle(self, walk: Walk) -> bool:
        """After a line search: move, refine or end the walk (False)."""
        best, key = walk.best, self._lat.key
        probe = self._best_probe() if self._explore == "model" else None
        if probe is not None and self._loss_known(probe[0]) < self._loss_known(best):
            self._started.add(key(probe[0]))  # an explored point beats the walk: it goes there
            walk.centre, walk.depth = probe
            self._poll(walk)
            return True
        if best != walk.centre:
            if key(best) in self._optima or any(
                w is not walk and key(w.centre) == key(best) for w in self._walks
            ):
                return False  # runs into another walk or a known optimum: stop, do not repeat it
            walk.centre = best
            self._poll(walk)
            return True
        if walk.depth < self._depth and any(self._lat.fine):
            walk.depth += 1  # nothing improves: halve the spacing around the centre
            self._poll(walk)
            return True
        self._optima.add(key(walk.centre))
        self.local_optima.append((self._config_of(walk.centre), self._loss_known(walk.centre)))
        return False

    def _start_walk(self) -> Walk | None:
        """A new walk that has a point to evaluate; one that ends at once (every point around
        its start known) is dropped and the next start tried. None: no start is left."""
        while (walk := self._spawn()) is not None:
            if self._advance(walk):
                return walk
            self._walks.remove(walk)
        return None

    def _update(self) -> None:
        for walk in list(self._walks):
            if not self._advance(walk):
                self._walks.remove(walk)
                if self._max_walkers is None or len(self._walks) < self._max_walkers:
                    self._start_walk()
        ready = not self._walks and self._designed() and (not self._flying or self._design)
        if ready and self._start_walk() is None and not self._flying:
            self._done = True

    # ------------------------------------------------------------------ Searcher API
    def _launch(self, walk: Walk) -> Index | None:
        for idx in walk.need:
            if not self._known(idx):
                return idx
        return None

    def _ahead(self, walk: Walk) -> Index | None:
        """A point the walk will likely want next and nobody has: during a line search its
        next multiples, then the neighbours of its best point so far."""
        if walk.phase is not Phase.LINE or walk.direction is None:
            return None
        lat = self._lat
        line = [lat.line_point(walk.centre, walk.direction, k * walk.t) for k in (2, 4)]
        for idx in (*line, *lat.neighbours(walk.best, walk.depth)):
            if not self._known(idx):
                return idx
        return None

    def _propose(self, trial_id: str) -> np.ndarray | str | None:
        if self._done:
            return Searcher.FINISHED
        idx = None
        if not self._walks and not self._designed():
            idx = self._probe()  # the design, then more while its last points are out
        if idx is None and not self._walks:
            self._update()
            if self._done:
                return Searcher.FINISHED
        if idx is not None:
            key = self._lat.key(idx)
            self._flight[trial_id] = (idx, key)
            self._flying.add(key)
            return self._space.to_unit(self._config_of(idx))
        idx = next((i for w in self._walks if (i := self._launch(w)) is not None), None)
        if idx is None and self._fill != "walks":
            idx = next((i for w in self._walks if (i := self._ahead(w)) is not None), None)
        if idx is None and self._fill == "explore" and self._walks:
            idx = self._probe()  # every walk waits: explore for the walks to come
        while idx is None and (self._max_walkers is None or len(self._walks) < self._max_walkers):
            walk = self._start_walk()  # every walk waits: start another to keep the slot busy
            if walk is None:
                break
            idx = self._launch(walk)
        if idx is None:
            return None if self._walks or self._flying else Searcher.FINISHED
        key = self._lat.key(idx)
        self._flight[trial_id] = (idx, key)
        self._flying.add(key)
        return self._space.to_unit(self._config_of(idx))

    def _observe(
        self, trial_id: str, u: np.ndarray, loss: float, row: np.ndarray | None = None
    ) -> None:
        flight = self._flight.pop(trial_id, None)
        if flight is None:
            return
        self._flying.discard(flight[1])
        self._loss[flight[1]] = loss
        if row is not None:
            self._row[flight[1]] = row
        self._update()
