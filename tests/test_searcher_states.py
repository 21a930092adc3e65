"""States saved by this version of each built-in searcher of ours restore, and the restored
searcher continues as the saver did.

``tests/data/searcher-states/<name>.pkl`` is the state one searcher saved mid-run (six trials
completed, two suggested and still running); ``<name>.json`` holds the two running trials and
what the saver suggested after it saved. The test restores each state into a fresh instance
built with another seed, completes the two trials as the saver did and compares what comes
next. A change that breaks reading the states users have saved (an attribute renamed, a class
moved, a version bumped without reading the old one) fails here.

``<name>-mo.*`` are the same for a searcher told two objectives and a constraint (the state's
version 2: the objectives, the scalarisation's weights, Optuna's multi-objective study).

Record them again (only on purpose, with the format's version bumped) with
``python tests/test_searcher_states.py --record [NAME ...]`` (a new searcher's only: name it;
the states of version 1 stay as they were recorded, and must go on loading)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from raytune_hpo.objectives import Objectives
from raytune_hpo.searchers import create_searcher
from raytune_hpo.testing import drive

STATES = Path(__file__).parent / "data" / "searcher-states"
NAMES = ["sobol", "lhs", "rsa", "hypertiling", "pso", "approx_gradient", "bohb", "bayesopt", "tpe"]
NAMES += ["nsga2", "ngopt", "smac", "auto"]
# Told two objectives (loss down, size up) and a constraint on a third metric.
ONE_METRIC = ("bohb", "ngopt", "smac")  # they refuse several objectives
MO = [f"{n}-mo" for n in NAMES if n not in ONE_METRIC]
OBJECTIVES = Objectives.from_fields(["loss", "size"], ["min", "max"], {"inner": {"max": 0.5}})
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
    base = name.removesuffix("-mo")
    told = {"objectives": OBJECTIVES} if name in MO else {}
    return create_searcher(
        base, space=SPACE, metric="loss", mode="min", seed=seed, **OPTIONS.get(base, {}), **told
    )


def loss(c: dict) -> float:
    return (math.log10(c["lr"]) + 3) ** 2 + (c["units"] - 16) ** 2 / 100 + c["opt"]["inner"]


def result(c: dict) -> dict:
    size = float(c["units"] * c["layers"])
    return {"loss": loss(c), "size": size, "inner": c["opt"]["inner"], "training_iteration": 1}


def complete(s, pending: list) -> list[dict]:
    """Complete the running trials, then the four suggestions that follow."""
    for tid, cfg in pending:
        s.on_trial_complete(tid, result(cfg))
    return drive(s, 4, start=100, report=result)


def record(name: str) -> None:
    s = make(name, seed=3)
    drive(s, 6, report=result)
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


@pytest.mark.parametrize("name", NAMES + MO)
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
    assert {p.stem for p in STATES.glob("*.pkl")} == set(NAMES) | set(MO)
    from raytune_hpo.searchers import searcher_entry, takes_objectives

    told = {n.removesuffix("-mo") for n in MO}
    assert told == {n for n in NAMES if takes_objectives(n, searcher_entry(n))}


def test_a_multi_objective_state_is_of_the_version_that_adds_the_objectives():
    import pickle

    for name in MO:
        with open(STATES / f"{name}.pkl", "rb") as f:
            state = pickle.load(f)
        if name == "auto-mo":  # auto's state holds the chosen searcher's own
            state = state["state"]["_inner_state"]
            assert state["searcher"] == "TPESearch", state["searcher"]
        # version 2 added the objectives; a later version of the class still reads it
        assert state["version"] >= 2, name


if __name__ == "__main__" and "--record" in sys.argv:
    for searcher in sys.argv[sys.argv.index("--record") + 1 :] or NAMES + MO:
        record(searcher)
