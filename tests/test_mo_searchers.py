"""Searchers that learn several objectives and constraints (issue 22, part 2): in-process loops
on ZDT1 (written here) where Ray adds nothing: each learning searcher's front beats random
search's in hypervolume, learns a constraint (more feasible suggestions later than earlier),
saves and restores mid-run; the scalarisation; plug-ins refused without the declaration; warm
start of a multi-objective sweep told to tpe; and one short real sweep (tpe and pso under
ASHA) through the ``ray_session`` fixture."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import moocore
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from raytune_hpo import testing
from raytune_hpo.objectives import Objectives
from raytune_hpo.objectives.scalarise import RHO, Scalarisation, simplex_lattice
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.searchers import create_searcher
from raytune_hpo.sweep.spec import SpecError, SweepSpec

SPACE = {
    "x1": {"type": "float", "low": 0.0, "high": 1.0},
    "x2": {"type": "float", "low": 0.0, "high": 1.0},
}
# acc (max) is -x1, so that a max-mode objective is learnt too; cost (min) is ZDT1's f2.
TWO = Objectives.from_fields(["acc", "cost"], ["max", "min"])
DISK = {"dist": {"max": 0.04}}  # within 0.2 of (0.5, 0.5): about an eighth of the square
OPTIONS = {
    "bayesopt": {"n_initial_points": 6},
    "nsga2": {"population_size": 10},
}
# Evaluations per searcher: NSGA-II's generations need more; the GP is slow to fit.
BUDGET = {"tpe": 40, "bayesopt": 16, "nsga2": 200, "pso": 40, "approx_gradient": 40}
LEARNERS = list(BUDGET)
SEEDS = (0, 1, 2)


def zdt1(c: dict) -> dict:
    """ZDT1 (Zitzler, Deb & Thiele, 2000) in two variables, as Tune reports it."""
    x1, x2 = c["x1"], c["x2"]
    g = 1 + 9 * x2
    return {
        "acc": -x1,
        "cost": g * (1 - math.sqrt(x1 / g)),
        "dist": (x1 - 0.5) ** 2 + (x2 - 0.5) ** 2,
        "training_iteration": 1,
    }


def make(name: str, seed: int, objectives: Objectives = TWO, **kw):
    return create_searcher(
        name,
        space=SPACE,
        metric=objectives.metrics[0],
        mode=objectives.modes[0],
        seed=seed,
        objectives=objectives,
        **{**OPTIONS.get(name, {}), **kw},
    )


def drive(s, n: int, start: int = 0) -> list[dict]:
    """Suggest and complete up to ``n`` trials on ZDT1; their configurations."""
    return testing.drive(s, n, start, report=zdt1)


def hypervolume(configs: list[dict]) -> float:
    losses = np.array([[-zdt1(c)["acc"], zdt1(c)["cost"]] for c in configs])
    return float(moocore.hypervolume(losses, ref=[1.1, 1.1]))  # near ZDT1's front


def random_configs(seed: int, n: int) -> list[dict]:
    return [{"x1": a, "x2": b} for a, b in np.random.default_rng(seed).random((n, 2))]


@pytest.mark.parametrize("name", LEARNERS)
def test_each_learning_searcher_finds_a_better_front_than_random_search(name):
    n = BUDGET[name]
    ours = [hypervolume(drive(make(name, seed), n)) for seed in SEEDS]
    rand = [hypervolume(random_configs(seed, n)) for seed in SEEDS]
    assert np.mean(ours) > np.mean(rand), (ours, rand)


@pytest.mark.parametrize("name", [n for n in LEARNERS if n != "bayesopt"])  # the GP: slow
def test_one_objective_told_as_if_mode_were_reversed_does_worse(name):
    """The directions matter: the same searcher told the opposite trade-off (acc minimised)
    finds a worse front of the real one (so the objectives reach it, each in its mode)."""
    n = BUDGET[name]
    wrong = Objectives.from_fields(["acc", "cost"], ["min", "min"])
    right = [hypervolume(drive(make(name, seed), n)) for seed in SEEDS]
    reversed_ = [hypervolume(drive(make(name, seed, wrong), n)) for seed in SEEDS]
    assert np.mean(right) > np.mean(reversed_), (right, reversed_)


def feasible(c: dict) -> bool:
    return zdt1(c)["dist"] <= DISK["dist"]["max"]


@pytest.mark.parametrize(
    "name, n",
    [("tpe", 60), ("nsga2", 200), ("pso", 60), ("approx_gradient", 60), ("bayesopt", 16)],
)
def test_a_constraint_is_learnt(name, n):
    """More of the second half's suggestions are feasible than of the first's (ZDT1's front,
    at x2 = 0, lies outside the feasible disk: a searcher that ignored it would go there)."""
    objectives = Objectives.from_fields(["acc", "cost"], ["max", "min"], DISK)
    first, second = [], []
    for seed in SEEDS:
        configs = drive(make(name, seed, objectives), n)
        half = len(configs) // 2
        first += [feasible(c) for c in configs[:half]]
        second += [feasible(c) for c in configs[half:]]
    assert np.mean(second) > np.mean(first), (np.mean(first), np.mean(second))


def test_optuna_gets_the_constraint_values_and_fails_a_result_without_them():
    objectives = Objectives.from_fields(["acc", "cost"], ["max", "min"], DISK)
    s = make("tpe", 0, objectives)
    configs = [s.suggest(f"t{i}") for i in range(3)]
    s.on_trial_complete("t0", zdt1(configs[0]))
    s.on_trial_complete("t1", {"acc": 0.5, "cost": 1.0})  # no dist: a failed trial
    s.on_trial_complete("t2", {**zdt1(configs[2]), "cost": math.nan})  # the worst cost so far
    t0, t1, t2 = s.study.trials
    r = zdt1(configs[0])
    assert t0.values == [r["acc"], r["cost"]]
    assert t0.constraints == {"dist <= 0.04": pytest.approx((r["dist"] - 0.04) / 0.04)}
    assert t1.state == optuna.trial.TrialState.FAIL
    assert t2.values[1] == r["cost"]  # NaN: the worst finite value of that objective
    assert s.study.metric_names == ["acc", "cost"]
    assert [d.name for d in s.study.directions] == ["MAXIMIZE", "MINIMIZE"]


@pytest.mark.parametrize("name", LEARNERS)
def test_save_and_restore_mid_run_gives_the_same_next_suggestions(name, tmp_path):
    objectives = Objectives.from_fields(["acc", "cost"], ["max", "min"], DISK)
    kw = {"n_initial_points": 30} if name == "bayesopt" else {}  # the GP is slow to fit
    ref = make(name, 3, objectives, **kw)
    drive(ref, 12)
    pending = [(f"p{i}", ref.suggest(f"p{i}")) for i in range(2)]
    ref.save(str(tmp_path / "s.pkl"))
    restored = make(name, 99, objectives, **kw)  # another seed: everything from the file
    restored.restore(str(tmp_path / "s.pkl"))
    for s in (ref, restored):
        for tid, c in pending:
            s.on_trial_complete(tid, zdt1(c))
    assert drive(restored, 6, start=100) == drive(ref, 6, start=100)


# ---------------------------------------------------------------------- the scalarisation
def test_the_lattice_is_parego_s_and_the_scalarisation_puts_feasible_first():
    lattice = simplex_lattice(2)
    assert len(lattice) == 11 and np.allclose(lattice.sum(axis=1), 1)
    assert len(simplex_lattice(3)) == 15  # s = 4: C(6, 2)
    objectives = Objectives.from_fields(["acc", "cost"], ["max", "min"], DISK)
    sc = Scalarisation(objectives)
    rows = np.array([sc.row(zdt1(c)) for c in random_configs(0, 30)])
    assert np.allclose(sc.low, rows[:, :2].min(axis=0))  # min and max seen so far
    assert np.allclose(sc.high, rows[:, :2].max(axis=0))
    w = sc.weights(np.random.default_rng(0))
    s = sc.loss(rows, w)
    ok = rows[:, 2] == 0
    assert ok.any() and (~ok).any()
    assert s[ok].max() <= 1 + RHO < s[~ok].min()  # every feasible one before every other
    worse = np.argsort(rows[~ok, 2])  # the infeasible ones by their violation
    assert (np.diff(s[~ok][worse]) >= 0).all()
    f = (rows[ok, :2] - sc.low) / (sc.high - sc.low)  # Knowles' formula, written out
    assert np.allclose(s[ok], (w * f).max(axis=1) + RHO * (w * f).sum(axis=1))
    assert sc.loss(sc.row(None, error=True), w) == math.inf


def test_pso_gives_each_particle_its_own_weights_and_ag_each_walk():
    pso = make("pso", 1)
    drive(pso, 10)
    assert pso._weights.shape == (8, 2) and len({tuple(w) for w in pso._weights}) > 1
    ag = make("approx_gradient", 1, walkers=3)
    for i in range(6):  # three walks at once, none finished yet
        ag.suggest(f"w{i}")
    assert all(w.weights is not None and w.weights.sum() == pytest.approx(1) for w in ag._walks)


# ---------------------------------------------------------------------- sweep files
PLUGIN = """
from ray.tune.search import Searcher


class Mine(Searcher):
    def __init__(self, space, metric=None, mode=None, objectives=None):
        super().__init__(metric=metric, mode=mode)
        self.objectives = objectives

    def suggest(self, trial_id):
        return {"lr": 0.01}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


class Declared(Mine):
    supports_multi_objective = True

    def add_evaluated_point(self, parameters, value, error=False, pruned=False,
                            intermediate_values=None):
        pass
"""
CNN = {"trainable": {"model": "mlp", "epochs": 2}}
LR = {"lr": {"type": "float", "low": 1e-3, "high": 0.1}}
METRICS = {"metric": ["val_accuracy", "latency_ms"], "mode": ["max", "min"]}


def sweep(tmp_path, **fields) -> Path:
    (tmp_path / "mine.py").write_text(PLUGIN)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**CNN, **METRICS, "space": LR, **fields}))
    return path


def test_a_plugin_without_the_declaration_is_refused_in_one_line(tmp_path, one_line_error):
    path = sweep(tmp_path, searcher={"name": "mine.py:Mine"})
    with pytest.raises(SpecError, match=r"searcher\.name: plug-in 'mine\.py:Mine' does not "):
        assemble(SweepSpec.from_yaml(path))
    one_line_error(["run", str(path)], "supports_multi_objective = True")
    declared = assemble(SweepSpec.from_yaml(sweep(tmp_path, searcher={"name": "mine.py:Declared"})))
    assert declared.searcher().objectives == declared.objectives  # it is given them


def test_a_declared_plugin_told_earlier_results_as_one_value_is_refused(tmp_path):
    old = earlier_sweep(tmp_path)
    path = sweep(tmp_path, searcher={"name": "mine.py:Declared"}, warm_start=str(old))
    with pytest.raises(SpecError, match=r"warm_start: searcher mine\.py:Declared would be told"):
        assemble(SweepSpec.from_yaml(path))


def earlier_sweep(tmp_path) -> Path:
    """A finished multi-objective sweep: sweep.yaml and results.csv, one trial failed."""
    d = tmp_path / "old"
    d.mkdir()
    spec = SweepSpec.from_dict({**CNN, **METRICS, "name": "old", "space": LR})
    (d / "sweep.yaml").write_text(spec.to_yaml())
    rows = [
        {"trial_id": "a", "status": "OK", "epochs": 2, "val_accuracy": 0.9, "latency_ms": 3.0,
         "params_m": 0.04, "config.lr": 0.01},
        {"trial_id": "b", "status": "OK", "epochs": 2, "val_accuracy": 0.7, "latency_ms": 1.0,
         "params_m": 0.2, "config.lr": 0.05},
        {"trial_id": "c", "status": "ERROR", "epochs": 1, "val_accuracy": math.nan,
         "latency_ms": math.nan, "params_m": math.nan, "config.lr": 0.002},
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    return d


def test_warm_start_of_a_multi_objective_sweep_is_told_to_tpe(tmp_path):
    old = earlier_sweep(tmp_path)
    bounds = {"params_m": {"max": 0.05}}
    path = sweep(tmp_path, searcher={"name": "tpe"}, warm_start=str(old), constraints=bounds)
    plan = assemble(SweepSpec.from_yaml(path))
    study = plan.searcher("run-1").study  # told before it suggests anything
    a, b, c = study.trials
    assert a.values == [0.9, 3.0] and b.values == [0.7, 1.0]
    assert a.constraints == {"params_m <= 0.05": pytest.approx(-0.2)}  # feasible
    assert b.constraints == {"params_m <= 0.05": pytest.approx(3.0)}  # 0.15 over, / 0.05
    assert c.state == optuna.trial.TrialState.FAIL
    assert [t.params["lr"] for t in study.trials] == [0.01, 0.05, 0.002]
    assert isinstance(plan.searcher().suggest("first"), dict)


@pytest.mark.parametrize("name", ["pso", "approx_gradient"])
def test_warm_start_of_a_multi_objective_sweep_is_told_to_the_scalarised(tmp_path, name):
    old = earlier_sweep(tmp_path)
    plan = assemble(
        SweepSpec.from_yaml(sweep(tmp_path, searcher={"name": name}, warm_start=[str(old)]))
    )
    s = plan.searcher("run-1")
    rows = s._rows["prior"]
    assert [list(r) for r in rows[:2]] == [[-0.9, 3.0, 0.0], [-0.7, 1.0, 0.0]]
    assert np.isinf(rows[2]).all()  # the failed trial
    assert list(s._scal.low) == [-0.9, 1.0] and list(s._scal.high) == [-0.7, 3.0]


# ---------------------------------------------------------------------- a real sweep
TRAIN = """
from ray import tune


def train(config):
    x, y = config["x"], config["y"]
    for step in range(1, 4):
        tune.report({"acc": x * step / 3, "cost": x**2 + y})
"""


@pytest.mark.integration
@pytest.mark.parametrize("name", ["tpe", "pso"])
def test_a_real_sweep_under_asha_tells_the_searcher_both_objectives(ray_session, tmp_path, name):
    from raytune_hpo.run.extend import extend
    from raytune_hpo.run.sweep import run_sweep

    (tmp_path / "two.py").write_text(TRAIN)
    searcher = {"name": name}
    if name == "tpe":
        searcher["storage"] = f"sqlite:///{tmp_path / 'study.db'}"
    spec = SweepSpec.from_dict(
        {
            "name": f"mo-{name}",
            "metric": ["acc", "cost"],
            "mode": ["max", "min"],
            "seed": 2,
            "num_samples": 8,
            "max_concurrent": 2,
            "searcher": searcher,
            "scheduler": {"name": "asha", "max_t": 3, "grace_period": 1, "reduction_factor": 2},
            "space": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "y": {"type": "float", "low": 0.0, "high": 1.0},
            },
            "trainable": {"function": "two.py:train", "metrics": ["acc", "cost"]},
            "storage_path": str(tmp_path / "out"),
        },
        base_dir=str(tmp_path),
    )
    result = run_sweep(spec)
    table = result.table
    assert len(table) == 8 and (table["status"] == "OK").all()
    check_told(name, result, searcher)
    grown = extend(result.path, num_samples=2)  # the searcher restored, objectives and all
    assert len(grown.table) == 10 and grown.table["trial_id"].is_unique
    check_told(name, grown, searcher)


def check_told(name: str, result, searcher: dict) -> None:
    """The searcher was told both objectives of every trial of ``result``."""
    table = result.table
    told = {(round(a, 9), round(c, 9)) for a, c in zip(table["acc"], table["cost"], strict=True)}
    if name == "tpe":  # the study in the database: both objectives, named for the dashboard
        study = optuna.load_study(study_name=Path(result.path).name, storage=searcher["storage"])
        assert study.metric_names == ["acc", "cost"]
        values = {(round(t.values[0], 9), round(t.values[1], 9)) for t in study.trials}
        assert values == told
        return
    state = sorted(Path(result.path).glob("searcher-state-*.pkl"))[-1]
    attrs = pickle.loads(state.read_bytes())["state"]
    assert len(attrs["_rows"]["observed"]) == len(table)  # every trial, as a row of both
    losses = np.array([[-a, c] for a, c in told])
    assert np.allclose(attrs["_scal"].low, losses.min(axis=0))
    assert np.allclose(attrs["_scal"].high, losses.max(axis=0))
    assert attrs["_weights"].shape == (8, 2)  # the particles' weights, kept
