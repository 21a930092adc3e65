"""The exploration model (``raytune_hpo.searchers._explore_model``): in-process, no Ray."""

from __future__ import annotations

import numpy as np
import pytest

from raytune_hpo.searchers import _explore_model as model_of


def bowl(u: np.ndarray) -> np.ndarray:
    return ((u - np.array([0.7, 0.2])) ** 2).sum(axis=1)


def test_the_best_rated_candidates_lie_near_the_minimum_of_the_results():
    rng = np.random.default_rng(3)
    units = rng.random((30, 2))
    ranked = model_of.ranked(units, bowl(units), rng, choices=[0, 0], fit=model_of.Fit())
    assert ranked is not None and ranked.shape == (2 * model_of.CANDIDATES, 2)
    top, bottom = bowl(ranked[:10]).mean(), bowl(ranked[-10:]).mean()
    assert top < 0.02 < 0.3 < bottom  # the model found the bowl; a random order would not


def test_failed_points_count_as_the_worst_and_a_model_needs_two_distinct_losses():
    rng = np.random.default_rng(0)
    units = rng.random((12, 2))
    losses = bowl(units)
    losses[units[:, 0] > 0.5] = np.inf  # everything right of the middle failed
    ranked = model_of.ranked(units, losses, rng, choices=[0, 0], fit=model_of.Fit())
    assert ranked is not None and (ranked[:10, 0] < 0.6).all()
    fit = model_of.Fit()
    assert model_of.ranked(units, np.full(12, np.inf), rng, choices=[0, 0], fit=fit) is None
    assert model_of.ranked(units, np.ones(12), rng, choices=[0, 0], fit=fit) is None
    assert fit.theta is None


def test_hyperparameters_are_optimised_again_only_once_the_points_grew_by_an_eighth():
    rng = np.random.default_rng(1)
    units = rng.random((40, 2))
    fit = model_of.Fit()
    model_of.ranked(units[:16], bowl(units[:16]), rng, choices=[0, 0], fit=fit)
    assert fit.points == 16 and fit.theta is not None
    kept = fit.theta.copy()
    model_of.ranked(units[:17], bowl(units[:17]), rng, choices=[0, 0], fit=fit)
    assert fit.points == 16 and np.array_equal(fit.theta, kept)  # reused, not optimised
    model_of.ranked(units[:18], bowl(units[:18]), rng, choices=[0, 0], fit=fit)
    assert fit.points == 18  # 18 >= 1.125 * 16


def test_a_long_sweep_fits_at_most_the_cap_and_keeps_the_best_half_of_it():
    rng = np.random.default_rng(2)
    units = rng.random((2000, 2))
    losses = bowl(units)
    x, y = model_of.subset(units, losses, rng)
    assert len(y) == model_of.CAP
    best = np.sort(losses)[: model_of.CAP // 2]
    assert np.isin(best, y).all()
    assert y.max() > np.sort(losses)[model_of.CAP]  # the rest is drawn from all the others
    fit = model_of.Fit()
    ranked = model_of.ranked(units, losses, rng, choices=[0, 0], fit=fit)
    assert ranked is not None and fit.points == 2000


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
def test_an_unordered_categorical_is_one_hot_so_its_list_order_is_no_distance(order):
    units = np.array([[(k + 0.5) / 3, 0.25] for k in order])
    f = model_of.features(units, [3, 0])
    assert f.shape == (3, 4) and (f[:, :3].sum(axis=1) == 1).all()
    d01 = np.linalg.norm(f[0] - f[1])
    d02 = np.linalg.norm(f[0] - f[2])
    assert d01 == pytest.approx(d02)  # every two different choices are equally far apart
    assert (f[:, 3] == 0.25).all()


def test_half_the_candidates_step_from_the_best_points_and_stay_in_the_cube():
    rng = np.random.default_rng(4)
    units = np.vstack([np.full((5, 2), 0.98), rng.random((40, 2)) * 0.5])
    losses = np.concatenate([np.zeros(5), np.ones(40)])  # the five at the corner are best
    near = model_of.near(units, losses, rng)
    assert near.shape == (model_of.CANDIDATES, 2)
    assert ((near >= 0) & (near <= 1)).all() and (near == 1.0).any()  # clipped at the edge
    assert np.abs(near - 0.98).max() < 6 * model_of.LOCAL


def test_past_the_cap_the_near_candidates_still_step_from_the_best_points():
    """Beyond ``CAP`` points the model fits a subset; the near candidates must step from the
    best of all points, not from the subset's positions read in the whole array."""
    rng = np.random.default_rng(5)
    best = np.array([0.9, 0.9])
    units = np.vstack([np.full((5, 2), 0.1), rng.random((400, 2))])  # the first five are poor
    losses = np.linalg.norm(units - best, axis=1)
    ranked = model_of.ranked(units, losses, rng, choices=[0, 0], fit=model_of.Fit())
    assert ranked is not None
    close = (np.linalg.norm(ranked - best, axis=1) < 0.25).sum()
    assert close >= model_of.CANDIDATES  # all the near ones, and a few uniform ones
