"""Random sequential addition (RSA; Widom 1966, Torquato's packing studies): each new point is
uniform in the unit cube and accepted only if no earlier point lies closer than a radius (as in
Rasmussen et al., "Beating grid- and random search with alternative methods" (Copenhagen):
spheres that may not overlap, the radius maximised for the number of samples wanted). The
radius follows from the budget at a packing fraction below RSA saturation, and shrinks when
candidates keep being rejected, so it never stalls.
Earlier results (warm start) count as spheres already placed: the radius is sized for them
plus the budget, and new points keep it from them too.

In a conditional space each subspace that occurs (the points with one set of active
parameters) is an RSA of its own: a candidate keeps its distance from the accepted points of
its subspace only, over the coordinates active there (the inactive ones sit at the centre,
``SearchSpace.canonical``), with the radius of the budget in that subspace's dimensions. Its
points are the budget's share that falls there, in the same share of the volume (its parents'
cells), so the density is the budget's. All radii shrink together when candidates keep being
rejected. (Measuring every pair over all coordinates with the inactive ones at the centre
packed the points of a low-dimensional subspace a full-dimensional radius apart: about 3x the
regret of the flat space on ``Branches``; scripts/bench_conditional.py.)"""

from __future__ import annotations

import math

import numpy as np

from raytune_hpo.searchers import _options as check
from raytune_hpo.searchers._base import UnitCubeSearcher, _Rows
from raytune_hpo.searchers._contract import set_up
from raytune_hpo.sweep.space import IMPUTED

# RSA saturation packing fractions of hard spheres in d = 1..8 (Torquato et al., 2006).
_SATURATION = (0.7476, 0.5470, 0.3841, 0.2600, 0.1707, 0.1111, 0.0712, 0.0452)


def saturation(d: int) -> float:
    if d <= len(_SATURATION):
        return _SATURATION[d - 1]
    return _SATURATION[-1] * 0.63 ** (d - len(_SATURATION))


def radius_for(budget: int, d: int, fill: float) -> float:
    """Minimum distance such that ``budget`` spheres of diameter r fill ``fill`` x the RSA
    saturation fraction of the unit cube."""
    ball = math.pi ** (d / 2) / math.gamma(d / 2 + 1)  # volume of the unit d-ball
    return 2.0 * (fill * saturation(d) / (budget * ball)) ** (1.0 / d)


class RSASearch(UnitCubeSearcher):
    """Random points kept a radius apart; never finishes on its own.

    Args:
        space, metric, mode, seed, points_to_evaluate: as for ``UnitCubeSearcher``.
        budget: the number of points the radius is sized for (100; a sweep file passes
            num_samples).
        fill: the fraction of RSA's saturation packing those points fill (0.8, in (0, 1]).
        batch: candidates drawn at once (32).
        max_rejections: rejected candidates before the radius shrinks (256).
        shrink: the factor the radius shrinks by then (0.9, in (0, 1)).
    """

    _saved = ("_budget", "_fill", "_batch", "_max_rejections", "_shrink", "radius", "_pts")
    # Conditional spaces: each subspace's radius over ``radius`` (by its active mask as a
    # number), and the subspace of each accepted point (rebuilt from the points).
    _derived = ("_scales", "_ids", "_groups")

    def __init__(
        self,
        space=None,
        metric=None,
        mode=None,
        *,
        seed=None,
        points_to_evaluate=None,
        budget: int = 100,
        fill: float = 0.8,
        batch: int = 32,
        max_rejections: int = 256,
        shrink: float = 0.9,
    ):
        super().__init__(space, metric, mode, seed=seed, points_to_evaluate=points_to_evaluate)
        check.integer("budget", budget, 1)
        check.within("fill", fill, 0, 1, "(]")
        check.within("shrink", shrink, 0, 1, "()")
        check.integer("batch", batch, 1)
        check.integer("max_rejections", max_rejections, 1)
        self._budget, self._fill, self._batch = budget, fill, batch
        self._max_rejections, self._shrink = max_rejections, shrink
        self.radius = math.nan
        self._pts: _Rows | None = None  # accepted points (inactive coordinates at IMPUTED)
        self._scales: list[float] = []
        self._ids: dict[bytes, int] = {}
        self._groups = _Rows(1)

    def _setup(self) -> None:
        self.radius = radius_for(self._planned(), self._space.dims, self._fill)
        self._pts = _Rows(self._space.dims)
        self._rebuild()

    @property
    def _accepted(self) -> _Rows:
        """The accepted points (``_pts``), made by ``_setup``."""
        return set_up(self._pts, "_pts")

    def _planned(self) -> int:
        return self._budget + len(self.prior[1])

    def _rebuild(self) -> None:
        self._scales, self._ids, self._groups = [], {}, _Rows(1)
        if self._space.conditional:
            for code in self._codes(self._space.active_mask(self._accepted.rows)):
                self._groups.append(np.array([code]))

    def _codes(self, masks: np.ndarray) -> np.ndarray:
        """Each subspace (an active mask) as a number; its radius over the space's is
        ``_scales[number]``."""
        codes = []
        for mask in masks:
            code = self._ids.setdefault(mask.tobytes(), len(self._ids))
            if code == len(self._scales):  # a new subspace
                n, dims = self._planned(), max(1, int(mask.sum()))
                own = radius_for(n, dims, self._fill)
                self._scales.append(own / radius_for(n, self._space.dims, self._fill))
            codes.append(code)
        return np.array(codes, dtype=int)

    def _warm(self, u: np.ndarray, loss: float, row: np.ndarray | None = None) -> None:
        self._accepted.append(u)
        if self._space.conditional:
            self._groups.append(self._codes(self._space.active_mask(u)).astype(float))

    def _propose(self, trial_id: str) -> np.ndarray:
        if self._space.conditional:
            return self._propose_within_subspaces()
        d = self._space.dims
        rejected = 0
        r2 = self.radius**2
        while True:
            cand = self._rng.random((self._batch, d))
            pts = self._accepted.rows
            if len(pts) == 0:
                chosen = cand[0]
                break
            # Squared distances of every candidate to every accepted point, vectorised.
            d2 = (cand * cand).sum(1)[:, None] + (pts * pts).sum(1)[None, :] - 2.0 * cand @ pts.T
            ok = np.flatnonzero(d2.min(1) >= r2)
            if len(ok):
                chosen = cand[ok[0]]
                break
            rejected += self._batch
            if rejected >= self._max_rejections:
                self.radius *= self._shrink
                r2 = self.radius**2
                rejected = 0
        self._accepted.append(chosen)
        return chosen

    def _propose_within_subspaces(self) -> np.ndarray:
        """RSA within each subspace of a conditional space (see the module)."""
        rejected = 0
        while True:
            drawn = self._rng.random((self._batch, self._space.dims))
            masks = self._space.active_mask(drawn)
            cand = np.where(masks, drawn, IMPUTED)
            groups = self._codes(masks)
            scales = np.array(self._scales)[groups]
            pts = self._accepted.rows
            if len(pts) == 0:
                chosen = 0
                break
            d2 = (cand * cand).sum(1)[:, None] + (pts * pts).sum(1)[None, :] - 2.0 * cand @ pts.T
            d2 = np.where(groups[:, None] == self._groups.rows[:, 0][None, :], d2, np.inf)
            ok = np.flatnonzero(d2.min(1) >= (self.radius * scales) ** 2)
            if len(ok):
                chosen = ok[0]
                break
            rejected += self._batch
            if rejected >= self._max_rejections:
                self.radius *= self._shrink
                rejected = 0
        self._accepted.append(cand[chosen])
        self._groups.append(np.array([groups[chosen]], dtype=float))
        return drawn[chosen]
