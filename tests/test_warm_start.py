"""Warm start: searchers told earlier results (Ray's ``add_evaluated_point``) before they
suggest, the sweep file's ``warm_start`` read from earlier sweep directories, one-line errors
for bad ones, and Optuna studies kept in SQLite."""

import math
import shutil
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from raytune_hpo.plan import warm_start
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.searchers import create_searcher
from raytune_hpo.sweep.space import SearchSpace
from raytune_hpo.sweep.spec import SweepSpec

SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}
BEST = np.array([0.8, 0.2])


def searcher(name, **kw):
    return create_searcher(
        name, space=SearchSpace.from_dict(SPACE), seed=0, metric="v", mode="max", **kw
    )


def earlier_points(n=30, seed=1):
    """Random points scored by closeness to BEST (mode max)."""
    pts = np.random.default_rng(seed).random((n, 2))
    return pts, -((pts - BEST) ** 2).sum(1)


def tell(s, pts, values, **kw):
    for p, v in zip(pts, values, strict=True):
        s.add_evaluated_point({"x": float(p[0]), "y": float(p[1])}, float(v), **kw)


def first_distance(s, n=6) -> float:
    """Mean distance of the first ``n`` suggestions to BEST."""
    got = np.array([[c["x"], c["y"]] for c in (s.suggest(f"t{i}") for i in range(n))])
    return float(np.linalg.norm(got - BEST, axis=1).mean())


# ---------------------------------------------------------------------- searchers
@pytest.mark.parametrize(
    ("name", "options"), [("tpe", {}), ("bayesopt", {}), ("bohb", {"random_fraction": 0.0})]
)
def test_model_based_searchers_start_near_the_earlier_best(name, options):
    cold = first_distance(searcher(name, **options))
    warm = searcher(name, **options)
    tell(warm, *earlier_points())
    assert first_distance(warm) < 0.6 * cold


def test_approx_gradient_first_walk_starts_at_the_earlier_best():
    cold = first_distance(searcher("approx_gradient"), n=5)  # a centre and its 4 neighbours
    warm = searcher("approx_gradient")
    tell(warm, *earlier_points())
    assert first_distance(warm, n=5) < 0.6 * cold


def test_pso_swarm_moves_toward_the_earlier_best():
    def second_suggestion(warm: bool) -> np.ndarray:
        s = searcher("pso", swarm_size=1)
        if warm:
            tell(s, [BEST], [1.0])
        s.suggest("a")
        s.on_trial_complete("a", {"v": 0.0})
        c = s.suggest("b")
        return np.array([c["x"], c["y"]])

    cold, warm = second_suggestion(False), second_suggestion(True)
    assert np.linalg.norm(warm - BEST) < 0.5 * np.linalg.norm(cold - BEST)


def test_rsa_keeps_its_distance_from_earlier_points():
    earlier, values = earlier_points(20, seed=3)

    def closest(warm: bool) -> tuple[float, float]:
        s = searcher("rsa", budget=20)
        if warm:
            tell(s, earlier, values)
        new = np.array([[c["x"], c["y"]] for c in (s.suggest(f"t{i}") for i in range(20))])
        return float(np.linalg.norm(new[:, None] - earlier[None], axis=2).min()), s.radius

    cold_min, cold_radius = closest(False)
    warm_min, warm_radius = closest(True)
    assert cold_min < cold_radius  # blind to them, RSA lands next to earlier points
    assert warm_min >= warm_radius  # told, it keeps the radius (sized for 40 points)
    assert warm_radius < cold_radius


def test_sobol_continues_the_sequence_of_an_earlier_sobol_sweep():
    cold = searcher("sobol")
    sequence = [cold.suggest(f"t{i}") for i in range(8)]
    warm = searcher("sobol")
    for c in sequence[:5]:
        warm.add_evaluated_point(c, 0.5)
    assert [warm.suggest(f"w{i}") for i in range(3)] == sequence[5:]


@pytest.mark.parametrize("name", ["lhs", "hypertiling"])
def test_designs_put_earlier_points_in_the_place_of_design_points(name):
    design = searcher(name, budget=10)
    points = [design.suggest(f"t{i}") for i in range(10)]
    warm = searcher(name, budget=6)
    for c in points[:4]:  # exactly four points of the 10-point design
        warm.add_evaluated_point(c, 0.1)
    got = [warm.suggest(f"w{i}") for i in range(6)]
    key = lambda c: (c["x"], c["y"])  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, points[4:]))
    assert warm.suggest("done") == "FINISHED"


@pytest.mark.parametrize("name", ["pso", "tpe", "hypertiling"])
def test_a_warm_started_searcher_saves_and_restores(tmp_path, name):
    s = searcher(name)
    tell(s, *earlier_points(12))
    s.suggest("a")
    s.save(str(tmp_path / "state.pkl"))
    restored = searcher(name)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.prior[1].tolist() == s.prior[1].tolist()
    assert [restored.suggest(f"n{i}") for i in range(3)] == [s.suggest(f"n{i}") for i in range(3)]


def test_earlier_failures_are_failed_trials_and_nan_the_worst_value():
    s = searcher("tpe")
    tell(s, *earlier_points(3))
    s.add_evaluated_point({"x": 0.1, "y": 0.1}, None, error=True)
    s.add_evaluated_point({"x": 0.2, "y": 0.2}, math.nan)
    trials = s.study.trials
    values = [t.value for t in trials]
    assert trials[3].state == optuna.trial.TrialState.FAIL and values[3] is None
    assert values[4] == min(values[:3])  # mode max: worst = lowest finite value
    assert np.isinf(s.prior[1][3:]).all()


def test_add_evaluated_point_needs_metric_and_mode():
    s = create_searcher("pso", space=SearchSpace.from_dict(SPACE), seed=0)
    with pytest.raises(RuntimeError, match="metric and mode"):
        s.add_evaluated_point({"x": 0.5, "y": 0.5}, 1.0)


# ---------------------------------------------------------------------- Optuna storage
@pytest.mark.parametrize("name", ["tpe", "bayesopt"])
def test_optuna_study_in_sqlite_survives_save_and_restore(tmp_path, name):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    s = searcher(name, storage=url, study_name="s1")
    for i in range(3):
        c = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", {"v": c["x"]})
    s.save(str(tmp_path / "state.pkl"))
    restored = searcher(name, storage=url, study_name="s1")
    restored.restore(str(tmp_path / "state.pkl"))
    c = restored.suggest("t3")
    restored.on_trial_complete("t3", {"v": c["x"]})
    study = optuna.load_study(study_name="s1", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    assert [t.value for t in done] == [t.params["x"] for t in done]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"storage": "path.db"}, "storage: an RDB URL such as sqlite:///sweep.db"),
        ({"study_name": "s"}, "study_name: names a study kept in a database; give storage"),
        ({"storage": "sqlite:///x.db", "study_name": ""}, "study_name: must be a non-empty"),
    ],
)
def test_bad_storage_options(options, expected):
    with pytest.raises(ValueError, match=expected):
        searcher("tpe", **options)


# ---------------------------------------------------------------------- sweep directories
def earlier_dir(tmp_path, space, rows, name="old") -> Path:
    """A finished sweep's directory as run.py leaves it: sweep.yaml and results.csv."""
    d = tmp_path / name
    d.mkdir()
    spec = SweepSpec.from_dict({"name": name, "space": space, "trainable": {"model": "mlp"}})
    (d / "sweep.yaml").write_text(spec.to_yaml())
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    return d


MIXED = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64]},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
}
ROWS = [
    {"trial_id": "a", "status": "OK", "epochs": 3, "val_accuracy": 0.9,
     "config.lr": 1e-3, "config.batch_size": 64, "config.optimizer": "adam"},
    {"trial_id": "b", "status": "ERROR", "epochs": 1, "val_accuracy": math.nan,
     "config.lr": 5e-2, "config.batch_size": 32, "config.optimizer": "sgd"},
    {"trial_id": "c", "status": "OK", "epochs": 2, "val_accuracy": 0.5,
     "config.lr": 1e-2, "config.batch_size": 32, "config.optimizer": "sgd"},
    {"trial_id": "d", "status": "OK", "epochs": 2, "val_accuracy": 0.7,
     "config.lr": 1.0, "config.batch_size": 32, "config.optimizer": "sgd"},
]  # fmt: skip


def sweep_file(tmp_path, **fields) -> str:
    path = tmp_path / "sweep.yaml"
    base = {"storage_path": str(tmp_path / "out"), "space": MIXED, "searcher": {"name": "tpe"}}
    path.write_text(yaml.safe_dump({**base, "trainable": {"model": "mlp"}, **fields}))
    return str(path)


def test_earlier_results_are_read_with_their_types(tmp_path):
    d = earlier_dir(tmp_path, MIXED, ROWS)
    spec = SweepSpec.from_yaml(sweep_file(tmp_path, warm_start="old"))  # relative to the file
    assert spec.warm_start_paths == [d.resolve()]
    assert yaml.safe_load(spec.to_yaml())["warm_start"] == [str(d.resolve())]
    points, notes = warm_start.load(spec)
    # Row d's lr lies outside this space's bounds (1.0 > 0.1): left out, and said so.
    assert [p.config for p in points] == [
        {"lr": 1e-3, "batch_size": 64, "optimizer": "adam"},
        {"lr": 5e-2, "batch_size": 32, "optimizer": "sgd"},
        {"lr": 1e-2, "batch_size": 32, "optimizer": "sgd"},
    ]
    assert type(points[0].config["batch_size"]) is int
    assert [(p.value, p.error, p.budget) for p in points] == [
        (0.9, False, 3.0),
        (None, True, 1.0),
        (0.5, False, 2.0),
    ]
    assert any("1 of 4 trials left out" in n for n in notes)
    plan = assemble(spec)
    assert plan.warm == points
    study = plan.searcher("run-1").study  # told before it suggests anything
    assert [t.params for t in study.trials] == [
        {"lr": 1e-3, "batch_size": 1, "optimizer": 1},
        {"lr": 5e-2, "batch_size": 0, "optimizer": 0},
        {"lr": 1e-2, "batch_size": 0, "optimizer": 0},
    ]
    assert [t.value for t in study.trials] == [0.9, None, 0.5]  # failed: a FAIL trial
    assert study.trials[1].state == optuna.trial.TrialState.FAIL


def test_searchers_that_cannot_learn_are_warned_about(tmp_path):
    earlier_dir(tmp_path, MIXED, ROWS)
    spec = SweepSpec.from_yaml(sweep_file(tmp_path, warm_start="old", searcher={"name": "random"}))
    assert any("searcher random cannot learn" in w for w in assemble(spec).warnings)


def test_bad_warm_start_directories_are_one_line_errors(tmp_path, one_line_error):
    one_line_error(["run", sweep_file(tmp_path, warm_start="gone")], "/gone: no such directory")
    (tmp_path / "empty").mkdir()
    one_line_error(["run", sweep_file(tmp_path, warm_start=["empty"])], "empty: holds no sweep")
    earlier_dir(tmp_path, MIXED, [], name="nothing")
    (tmp_path / "nothing" / "results.csv").unlink()
    one_line_error(["run", sweep_file(tmp_path, warm_start="nothing")], "nothing: holds no results")
    one_line_error(["run", sweep_file(tmp_path, warm_start=[])], "warm_start: give one or more")
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"momentum": {"type": "float", "low": 0.0, "high": 0.9}}, "momentum only in its space"),
        ({"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
         "space.lr.low is 1e-05 there, 0.0001 here"),
        ({"lr": {"type": "float", "low": 1e-4, "high": 1e-1}},
         "space.lr.log is False there, True here"),
        ({"batch_size": {"type": "int", "low": 32, "high": 64}},
         "space.batch_size.type is 'int' there, 'categorical' here"),
        ({"optimizer": {"type": "categorical", "choices": ["sgd", "rmsprop", "adam"]}},
         "space.optimizer.choices"),
    ],
)  # fmt: skip
def test_a_space_that_differs_warns_and_keeps_what_fits(tmp_path, change, expected):
    earlier_dir(tmp_path, {**MIXED, **change}, ROWS)
    points, notes = warm_start.load(SweepSpec.from_yaml(sweep_file(tmp_path, warm_start="old")))
    assert any("its space differs" in n and expected in n for n in notes), notes
    assert len(points) == 3, "rows a, b, c fit this space whatever the earlier space was"
    assert any("1 of 4 trials left out (1 with lr outside this sweep's space)" in n for n in notes)


def test_narrower_bounds_drop_the_trials_outside_with_a_count(tmp_path):
    earlier_dir(tmp_path, MIXED, ROWS)
    narrow = {**MIXED, "lr": {"type": "float", "low": 5e-3, "high": 1e-1, "log": True}}
    points, notes = warm_start.load(
        SweepSpec.from_yaml(sweep_file(tmp_path, warm_start="old", space=narrow))
    )
    assert sorted(p.config["lr"] for p in points) == [1e-2, 5e-2]
    assert any("2 of 4 trials left out (2 with lr outside this sweep's space)" in n for n in notes)


def test_a_parameter_the_earlier_sweep_did_not_search_takes_its_default(tmp_path):
    earlier_dir(tmp_path, {k: v for k, v in MIXED.items() if k != "optimizer"}, ROWS)
    points, notes = warm_start.load(SweepSpec.from_yaml(sweep_file(tmp_path, warm_start="old")))
    assert {p.config["optimizer"] for p in points} == {"adam"}  # the CNN's default optimizer
    assert len(points) == 3 and any("optimizer not in its space" in n for n in notes)
    # A new parameter whose earlier value is unknown (the model's own widths): none can be kept.
    wider = {**MIXED, "f6": {"type": "int", "low": 8, "high": 64}}
    points, notes = warm_start.load(
        SweepSpec.from_yaml(sweep_file(tmp_path, warm_start="old", space=wider))
    )
    assert points == () and any("4 of 4 trials left out" in n for n in notes), notes


@pytest.mark.integration
def test_a_sweep_warm_started_from_a_real_sweep(ray_session, tmp_path):
    """Sweep A keeps its TPE study in SQLite; sweep B, warm-started from A's directory, starts
    its study with A's trials and values; A without results.csv reads Ray's trial files."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space = {
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "batch_size": {"type": "categorical", "choices": [32, 64]},
    }
    base = {
        "storage_path": str(tmp_path),
        "space": space,
        "trainable": {"model": "mlp", "epochs": 2},
        "max_concurrent": 1,
    }
    a = run_sweep(
        SweepSpec.from_dict(
            {**base, "name": "a", "num_samples": 3, "searcher": {"name": "tpe", "storage": url}}
        )
    )
    a_rows = a.table[["config.lr", "config.batch_size", "val_accuracy"]]
    expected = sorted(map(tuple, a_rows.itertuples(index=False)))
    study_a = optuna.load_study(study_name=Path(a.path).name, storage=url)
    got = [(t.params["lr"], [32, 64][t.params["batch_size"]], t.value) for t in study_a.trials]
    assert sorted(got) == expected  # the study named after the run holds its trials and values

    spec_b = SweepSpec.from_dict(
        {
            **base,
            "name": "b",
            "num_samples": 1,
            "warm_start": [a.path],
            "searcher": {"name": "tpe", "storage": url, "study_name": "b-study"},
        }
    )
    b = run_sweep(spec_b)
    study_b = optuna.load_study(study_name="b-study", storage=url)
    told = [(t.params["lr"], [32, 64][t.params["batch_size"]], t.value) for t in study_b.trials]
    assert sorted(told[:3]) == expected  # A's results first, then B's own trial
    assert len(study_b.trials) == 4 and told[3][2] == b.table["val_accuracy"][0]

    # An interrupted sweep has no results.csv: Ray's trial files give the same points.
    copy = tmp_path / "a-interrupted"
    shutil.copytree(a.path, copy)
    (copy / "results.csv").unlink()
    from_ray = warm_start.load(spec_b.with_fields(warm_start=[str(copy)]))[0]
    assert sorted(from_ray, key=str) == sorted(assemble(spec_b).warm, key=str)
