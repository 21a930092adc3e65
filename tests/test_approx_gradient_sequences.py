"""The approximate-gradient search suggests exactly what it suggested before its walks and grid
arithmetic were split into ``_lattice`` (pure functions) and an explicit phase type: the first
suggestions of seeded runs on a 3-D mixed space (log float, int, categorical), sequential,
with trials in flight, warm-started, and a small grid run to ``FINISHED``, were recorded from
the code before that change (``tests/data/approx-gradient-sequences.json``).

Re-record (only after a deliberate change of the algorithm's sequence) with
``python tests/test_approx_gradient_sequences.py --record``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from ray.tune.search import Searcher

from raytune_hpo.searchers import ApproxGradientSearch

RECORDED = Path(__file__).parent / "data" / "approx-gradient-sequences.json"
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "units": {"type": "int", "low": 4, "high": 40},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
}
# The algorithm these sequences were recorded from: the paper's step, new walks for free
# slots, categoricals walked in their list's order (the defaults before issue 37).
PAPER = {"model": "none", "fill": "walks", "categorical": "ordered", "design": 0}
# name -> (seed, options, suggestions, trials in flight, warm start)
RUNS = {
    "seed0": (0, {}, 60, 1, False),
    "seed1": (1, {}, 60, 1, False),
    "seed2-levels3": (2, {"levels": 3}, 60, 1, False),
    "seed3-in-flight4": (3, {}, 60, 4, False),
    "seed4-warm": (4, {}, 60, 1, True),
    "seed5-two-walkers": (5, {"walkers": 2}, 60, 3, False),
    "seed6-refine1-to-finish": (6, {"refine": 1, "levels": 3}, 400, 2, False),
}


def loss(c: dict) -> float:
    """Two basins in lr, a slope in units, one best activation."""
    x = math.log10(c["lr"])
    return (
        min((x + 3.2) ** 2, 0.3 + (x + 1.5) ** 2)
        + abs(c["units"] - 13) / 9
        + ({"relu": 0.0, "tanh": 0.2, "gelu": 0.1}[c["act"]])
    )


def run(seed: int, options: dict, n: int, in_flight: int, warm: bool) -> list:
    """The suggestions of one run: up to ``in_flight`` trials out at once, the oldest completing
    first; ``FINISHED`` ends it (recorded as the string)."""
    s = ApproxGradientSearch(SPACE, "loss", "min", seed=seed, **PAPER, **options)
    if warm:
        for lr, units, act in ((1e-3, 10, "relu"), (3e-2, 30, "tanh"), (2e-4, 5, "gelu")):
            s.add_evaluated_point(
                {"lr": lr, "units": units, "act": act}, loss({"lr": lr, "units": units, "act": act})
            )
    out, live, i = [], [], 0
    while len(out) < n:
        cfg = s.suggest(f"t{i}")
        if cfg == Searcher.FINISHED:
            out.append(cfg)
            break
        if cfg is None:
            assert live, "None with nothing in flight"
        else:
            out.append(cfg)
            live.append((f"t{i}", cfg))
            i += 1
        if len(live) >= in_flight or cfg is None:
            tid, done = live.pop(0)
            s.on_trial_complete(tid, {"loss": loss(done)})
    return out


@pytest.mark.parametrize("name", RUNS)
def test_same_suggestions_as_recorded(name):
    recorded = json.loads(RECORDED.read_text())[name]
    assert run(*RUNS[name]) == recorded


def test_the_recording_covers_the_finished_end():
    recorded = json.loads(RECORDED.read_text())
    assert recorded["seed6-refine1-to-finish"][-1] == Searcher.FINISHED
    assert all(len(recorded[k]) == 60 for k in RUNS if not k.endswith("finish"))


if __name__ == "__main__" and "--record" in sys.argv:
    RECORDED.write_text(json.dumps({k: run(*v) for k, v in RUNS.items()}, indent=0) + "\n")
