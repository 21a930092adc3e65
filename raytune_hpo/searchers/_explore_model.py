"""Where to explore next: the unit points a Gaussian-process model of the results so far rates
best, by its lower confidence bound (mean - kappa * standard deviation; Srinivas et al.,
"Gaussian Process Optimization in the Bandit Setting", ICML 2010). The candidates are uniform
random points and as many Gaussian steps (``LOCAL`` of the unit range) from the ``TOP`` best
points: uniform ones alone rarely land close enough to a good point to beat it.

The model is scikit-learn's ``GaussianProcessRegressor``: a Matérn 5/2 kernel with one length
scale per feature, a noise term, standardised losses (Rasmussen & Williams, "Gaussian Processes
for Machine Learning", 2006, chapters 4-5). An unordered categorical is one-hot encoded, so the
model does not read its list order as distance; every other dimension is its unit coordinate.
Failed points (an infinite loss) count as the worst loss seen.

Cost stays bounded however long a sweep runs: at most ``CAP`` points are fitted (the best half
of the cap and a random draw of the rest), and the kernel's hyperparameters are optimised again
only when the points have grown by an eighth since the last optimisation; in between the last
hyperparameters are reused (one Cholesky factorisation).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CAP = 256  # points fitted at most
CANDIDATES = 512  # uniform random candidates rated per call, and as many near the best
TOP, LOCAL = 5, 0.05  # the best points the near candidates step from, and their step's sd
KAPPA = 0.5  # weight of the standard deviation in the lower bound
REFIT = 1.125  # optimise the hyperparameters again once the points grew by this factor


@dataclass
class Fit:
    """The kernel's optimised hyperparameters (log scale, as sklearn's ``theta``) and the
    number of points they were optimised on; saved with the searcher's state."""

    theta: np.ndarray | None = None
    points: int = 0


def features(units: np.ndarray, choices: Sequence[int]) -> np.ndarray:
    """Unit points as the model's features: dimension ``j`` with ``choices[j] > 0`` (an
    unordered categorical of that many choices) one-hot, the others as they are."""
    cols = []
    for j, n in enumerate(choices):
        if n > 0:
            k = np.minimum((units[:, j] * n).astype(int), n - 1)
            cols.append(np.eye(n)[k])
        else:
            cols.append(units[:, j : j + 1])
    return np.hstack(cols)


def ranked(
    units: np.ndarray,
    losses: np.ndarray,
    rng: np.random.Generator,
    *,
    choices: Sequence[int],
    fit: Fit,
) -> np.ndarray | None:
    """Candidate unit points (uniform, and ``near`` the best), best first by the model's lower
    bound (None when fewer than two finite, distinct losses leave nothing to model). ``fit`` is
    updated in place."""
    finite = np.isfinite(losses)
    if finite.sum() < 2 or np.ptp(losses[finite]) == 0:
        return None
    y = np.where(finite, losses, losses[finite].max())
    x, y = subset(units, y, rng)
    seen = len(losses)
    fx = features(x, choices)
    gp = _regressor(fx.shape[1], fit, seen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning at a bound
        gp.fit(fx, y)
    if gp.optimizer is not None:
        fit.theta, fit.points = np.array(gp.kernel_.theta), seen
    candidates = np.vstack([rng.random((CANDIDATES, units.shape[1])), near(x, y, rng)])
    mean, sd = gp.predict(features(candidates, choices), return_std=True)
    return candidates[np.argsort(mean - KAPPA * sd, kind="stable")]


def near(units: np.ndarray, losses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``CANDIDATES`` points a Gaussian step (sd ``LOCAL``) from the ``TOP`` best, in the cube."""
    top = units[np.argsort(losses, kind="stable")[:TOP]]
    steps = rng.normal(0.0, LOCAL, (CANDIDATES, units.shape[1]))
    return np.clip(top[rng.integers(len(top), size=CANDIDATES)] + steps, 0.0, 1.0)


def subset(
    units: np.ndarray, losses: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The points to fit: all of them up to ``CAP``; beyond, the best ``CAP // 2`` and a
    random draw of the others."""
    if len(losses) <= CAP:
        return units, losses
    order = np.argsort(losses, kind="stable")
    rest = rng.choice(order[CAP // 2 :], CAP - CAP // 2, replace=False)
    keep = np.concatenate([order[: CAP // 2], rest])
    return units[keep], losses[keep]


def _regressor(width: int, fit: Fit, seen: int):
    """A regressor that optimises its kernel when ``seen`` points have grown by ``REFIT``
    since the last optimisation (or none was made), else keeps ``fit``'s hyperparameters."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=np.full(width, 0.3), length_scale_bounds=(1e-2, 1e2), nu=2.5
    ) + WhiteKernel(1e-3, (1e-6, 1e-1))
    fresh = fit.theta is None or len(fit.theta) != len(kernel.theta)
    if fresh or seen >= REFIT * fit.points:
        return GaussianProcessRegressor(kernel, normalize_y=True)
    kept = kernel.clone_with_theta(fit.theta)
    return GaussianProcessRegressor(kept, normalize_y=True, optimizer=None)
