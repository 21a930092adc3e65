"""The approximate-gradient search's grid (``_lattice``): pure functions, checked in-process."""

import math

import numpy as np
import pytest

from raytune_hpo.searchers._lattice import Lattice, direction
from raytune_hpo.sweep.space import SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-0, "log": True},
        "units": {"type": "int", "low": 4, "high": 8},
        "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    }
)


def lattice(levels=5, depth=2):
    return Lattice.build(list(SPACE.params.values()), levels, depth)


def test_coarse_levels_are_exact_and_halving_is_log_spaced():
    lat = lattice()
    assert lat.axes[0] == pytest.approx((1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    assert lat.fine == (True, True, False) and lat.ints == (False, True, False)
    assert lat.span(0) == 4 << 2 and lat.span(2) == 2
    assert lat.value(0, 8) == lat.axes[0][2]  # index 8 = coarse level 2, exactly
    assert lat.value(0, 6) == pytest.approx(math.sqrt(1e-3 * 1e-2))  # halfway, log-wise
    assert lat.size == 17 * 17 * 3 and lat.coarse_size == 5 * 5 * 3  # units: 4..8, 5 levels


def test_fine_integer_points_that_round_alike_are_one_configuration():
    lat = lattice()
    ks = range(lat.span(1) + 1)
    keys = {lat.key((0, k, 0)) for k in ks}
    assert len(keys) == len({lat.value(1, k) for k in ks}) == 5  # 4..8


def test_neighbours_steps_and_snapping():
    lat = lattice()
    assert lat.step(0, 0) == 4 and lat.step(0, 2) == 1 and lat.step(2, 0) == 1
    assert sorted(lat.neighbours((0, 8, 1), 0)) == [
        (0, 4, 1),
        (0, 8, 0),
        (0, 8, 2),
        (0, 12, 1),
        (4, 8, 1),
    ]
    assert lat.snap(np.array([0.5, 0.0, 0.99]), 0) == (8, 0, 2)
    assert lat.snap(np.array([0.5, 0.0, 0.99]), 2) == (8, 0, 2)


def test_direction_follows_the_finite_differences_and_line_points_stay_inside():
    lat = lattice()
    centre = (8, 8, 1)

    def loss(idx):  # downhill towards larger lr, flat in units, gelu (2) best
        return -idx[0] + (0 if idx[2] == 2 else 1)

    move = direction(lat, centre, 0, loss)
    assert move[0] == 4  # the largest slope moves one grid step (4 fine cells at depth 0)
    assert move[1] == 0 and move[2] == 1  # flat; a step to the better choice
    assert lat.line_point(centre, move, 8) == (16, 8, 2)  # clipped to the grid
    # At an edge the one-sided difference only steps back inside when that goes downhill.
    edge = (16, 8, 2)
    assert direction(lat, edge, 0, loss)[0] == 0
    assert direction(lat, edge, 0, lambda i: i[0])[0] == -4
