"""States saved by this version of each built-in searcher of ours restore, and the restored
searcher continues as the saver did.

``tests/data/searcher-states/<name>.pkl`` is the state one searcher saved mid-run (six trials
completed, two suggested and still running); ``<name>.json`` holds the two running trials and
what the saver suggested after it saved. The test restores each state into a fresh instance
built with another seed, completes the two trials as the saver did and compares what comes
next. A change that breaks reading the states users have saved (an attribute renamed, a class
moved, a version bumped without reading the old one) fails here.

Record them again (only on purpose, with the format's version bumped) with
``python tests/test_searcher_states.py --record [NAME ...]`` (a new searcher's only: name it;
the states of version 1 stay as they were recorded, and must go on loading)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from raytune_hpo.searchers import create_searcher
from raytune_hpo.testing import drive

STATES = Path(__file__).parent / "data" / "searcher-states"
NAMES = ["sobol", "lhs", "rsa", "hypertiling", "pso", "approx_gradient", "bohb", "bayesopt", "tpe"]
NAMES += ["nsga2"]
# A mixed space whose values all write to JSON (log float, int, categorical, nesting, constants).
SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
    "units": {"type": "int", "low": 4, "high": 64, "log": True},
    "layers": {"type": "int", "low": 1, "high": 4},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    "opt": {"inner": {"type": "float", "low": -1.0, "high": 1.0}, "const": "kept"},
    "fixed": 7,
}
# bayesopt stays in its seeded random phase: GP numerics may differ across machines.
OPTIONS = {"lhs": {"budget": 20}, "rsa": {"budget": 20}, "bayesopt": {"n_initial_points": 20}}
OPTIONS["nsga2"] = {"population_size": 4}  # its genetic operators act within the run


def make(name: str, seed: int):
    return create_searcher(
        name, space=SPACE, metric="loss", mode="min", seed=seed, **OPTIONS.get(name, {})
    )


def loss(c: dict) -> float:
    return (math.log10(c["lr"]) + 3) ** 2 + (c["units"] - 16) ** 2 / 100 + c["opt"]["inner"]


def complete(s, pending: list) -> list[dict]:
    """Complete the running trials, then the four suggestions that follow."""
    for tid, cfg in pending:
        s.on_trial_complete(tid, {"loss": loss(cfg), "training_iteration": 1})
    return drive(s, 4, start=100, f=loss)


def record(name: str) -> None:
    s = make(name, seed=3)
    drive(s, 6, f=loss)
    pending = [[f"p{i}", s.suggest(f"p{i}")] for i in range(2)]
    s.save(str(STATES / f"{name}.pkl"))
    then = complete(s, pending)
    text = json.dumps({"pending": pending, "then": then}, indent=1)
    (STATES / f"{name}.json").write_text(text + "\n")


def same(got, want) -> bool:
    if isinstance(want, float):
        return got == pytest.approx(want, rel=1e-9, abs=1e-12)
    if isinstance(want, dict):
        return set(got) == set(want) and all(same(got[k], want[k]) for k in want)
    return type(got) is type(want) and got == want


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_state_restores_and_continues_as_the_saver_did(name):
    saved = json.loads((STATES / f"{name}.json").read_text())
    s = make(name, seed=99)  # another seed: everything comes from the file
    s.restore(str(STATES / f"{name}.pkl"))
    then = complete(s, saved["pending"])
    assert len(then) == len(saved["then"]) == 4
    for got, want in zip(then, saved["then"], strict=True):
        assert same(got, want), (got, want)


def test_every_searcher_of_ours_has_a_saved_state():
    from raytune_hpo.searchers import SEARCHERS, owns_space

    assert {n for n in SEARCHERS if owns_space(n)} == set(NAMES)
    assert {p.stem for p in STATES.glob("*.pkl")} == set(NAMES)


if __name__ == "__main__" and "--record" in sys.argv:
    for searcher in sys.argv[sys.argv.index("--record") + 1 :] or NAMES:
        record(searcher)
