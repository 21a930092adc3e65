"""The example plug-in under the searcher contract, and doing its job: beating random search
on a smooth bowl with the same budget and seeds."""

import sys
from pathlib import Path

import numpy as np
import pytest

from raytune_hpo import testing
from raytune_hpo.sweep.space import SearchSpace

sys.path.insert(0, str(Path(__file__).parent))
from local_search import LocalSearch  # noqa: E402


def make(seed, space=testing.MIXED, **options):
    return LocalSearch(SearchSpace.from_dict(space), "loss", "min", seed=seed, **options)


def test_contract():
    testing.check_contract(make)


def test_bad_options_name_the_field():
    for options, field in (({"step": 0}, "step"), ({"grow": 1}, "grow"), ({"init": 0}, "init")):
        with pytest.raises(ValueError, match=f"^{field}: "):
            make(0, **options)


def test_beats_random_search_on_a_bowl():
    bowl = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(4)}

    def f(cfg):
        return sum((cfg[f"x{i}"] - 0.3) ** 2 for i in range(4))

    ours, rand = [], []
    for seed in range(10):
        ours.append(min(f(c) for c in testing.drive(make(seed, bowl), 60, f=f)))
        rng = np.random.default_rng(seed)
        rand.append(
            min(f({f"x{i}": v for i, v in enumerate(rng.uniform(-1, 1, 4))}) for _ in range(60))
        )
    assert np.median(ours) < np.median(rand) / 3
