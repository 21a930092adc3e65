"""Studies with several objectives: bi-objective problems (pymoo), the hypervolume score
(moocore), searchers and Optuna samplers told every objective, one-line spec errors, the report.
In-process, no Ray."""

import re
from pathlib import Path

import moocore
import numpy as np
import pandas as pd
import pytest

from raytune_hpo.objectives import MULTI_OBJECTIVE_SEARCHERS
from raytune_hpo.searchers import SEARCHERS
from raytune_hpo.study import StudySpec, analysis, check, compare, run_direct
from raytune_hpo.study import report as study_report
from raytune_hpo.study.pareto import ParetoProblem, hypervolume_after_each, worst
from raytune_hpo.study.runner import OptunaProposer, SearcherProposer, drive
from raytune_hpo.study.samplers import make_sampler
from raytune_hpo.sweep.space import SearchSpace
from raytune_hpo.sweep.spec import SpecError

pytest.importorskip("pymoo")

METHODS = [
    {"name": "random", "searcher": {"name": "random"}},
    {"name": "nsga2", "optuna": "nsga2"},
]


def study(**over):
    base = {
        "name": "mo",
        "problems": [{"function": "zdt1", "dims": 3}],
        "methods": METHODS,
        "repetitions": 2,
        "budget": 30,
    }
    return check(StudySpec.from_dict({**base, **over}))


def nondominated(points: np.ndarray) -> np.ndarray:
    """The test's own O(n^2) sort: the points no other point dominates (minimising)."""
    keep = []
    for i, p in enumerate(points):
        dominated = any((q <= p).all() and (q < p).any() for j, q in enumerate(points) if j != i)
        if not dominated:
            keep.append(p)
    return np.array(keep)


@pytest.mark.parametrize("method", METHODS)
def test_score_is_moocores_hypervolume_of_the_runs_own_front(method):
    s = study()
    problem = s.problems[0]
    fn = problem.make()
    df = run_direct(s, problem, s.methods[METHODS.index(method)], 0)
    assert len(df) == 30 and {"f1", "f2"} <= set(df.columns)
    for i in (1, 7, 30):  # the score after i evaluations
        front = nondominated(df[["f1", "f2"]].to_numpy()[:i])
        scaled = (front - fn.ideal) / (fn.reference - fn.ideal)
        expected = moocore.hypervolume(scaled, ref=[1.0, 1.0])
        assert df["value"].iloc[i - 1] == pytest.approx(expected, rel=1e-12)
    assert (np.diff(df["value"]) >= 0).all()
    assert 0 < df["value"].iloc[-1] < fn.optimum


def test_a_dominated_point_leaves_the_score_a_dominating_one_raises_it():
    fn = ParetoProblem("zdt1", 3)
    pts = pd.DataFrame({"f1": [0.2, 0.6], "f2": [3.0, 1.5]})
    base = hypervolume_after_each(pts, fn.objectives, fn.box)[-1]
    dominated = pd.concat([pts, pd.DataFrame({"f1": [0.7], "f2": [2.0]})], ignore_index=True)
    better = pd.concat([pts, pd.DataFrame({"f1": [0.1], "f2": [1.0]})], ignore_index=True)
    broken = pd.concat([pts, pd.DataFrame({"f1": [np.nan], "f2": [0.0]})], ignore_index=True)
    assert hypervolume_after_each(dominated, fn.objectives, fn.box)[-1] == pytest.approx(base)
    assert hypervolume_after_each(better, fn.objectives, fn.box)[-1] > base + 1e-3
    assert hypervolume_after_each(broken, fn.objectives, fn.box)[-1] == pytest.approx(base)


@pytest.mark.parametrize("function", ["zdt1", "zdt2", "dtlz2"])
def test_reference_point_lies_beyond_every_point_of_the_box(function):
    fn = ParetoProblem(function, 4)
    x = np.random.default_rng(0).random((2000, 4))
    corners = np.array([[0.0, 1, 1, 1], [1.0, 1, 1, 1], [0.0, 0, 0, 0], [0.5, 0, 0, 0]])
    if function == "dtlz2":  # the distance variables worst at 0 or 1, the angle at either end
        corners = np.array([[0.0, 0, 1, 0], [1.0, 1, 0, 1], [0.5, 0, 0, 0]])
    pts = np.vstack([fn._problem.evaluate(np.vstack([x, corners]))])
    w = np.asarray(worst(function, 4))
    assert (pts <= w + 1e-12).all()
    assert pts.max(axis=0) == pytest.approx(w)  # attained: the worst is not loose
    assert fn.reference == pytest.approx(w + 0.1 * (w - fn.ideal))
    assert fn.box.hypervolume(pts) < fn.optimum < 1.0


def test_searchers_and_samplers_are_told_every_objective():
    fn = ParetoProblem("zdt2", 3)

    class Recorder:  # a searcher as the runner sees one: suggest and on_trial_complete
        def __init__(self):
            self.rng, self.told = np.random.default_rng(1), []

        def suggest(self, trial_id):
            return {f"x{i}": float(v) for i, v in enumerate(self.rng.random(3))}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.told.append(result)

    rec = Recorder()
    df = drive(SearcherProposer(rec), fn.at, 5, 1)
    assert [r["f1"] for r in rec.told] == list(df["f1"])
    assert [r["f2"] for r in rec.told] == list(df["f2"])
    assert all(r["training_iteration"] == 1 for r in rec.told)
    optuna = OptunaProposer(make_sampler("tpe", {}, 0), SearchSpace.from_dict(fn.space()), fn.modes)
    df = drive(optuna, fn.at, 5, 1)
    assert [t.values for t in optuna.study.trials] == df[["f1", "f2"]].values.tolist()
    assert len(optuna.study.directions) == 2


def _one_objective_searcher() -> str:
    names = [n for n in SEARCHERS if n not in MULTI_OBJECTIVE_SEARCHERS]
    if not names:
        pytest.skip("every searcher takes several objectives")
    return names[0]


@pytest.mark.parametrize(
    "over, message",
    [
        ({"methods": [{"name": "c", "optuna": "cmaes"}]}, "methods.0.optuna: 'cmaes' takes one"),
        (
            {
                "methods": [
                    {"name": "a", "searcher": {"name": "random"}, "scheduler": {"name": "asha"}}
                ]
            },
            "methods.0.scheduler.name: a problem with several objectives",
        ),
        (
            {"problems": [{"function": "zdt1", "dims": 3, "reference": [1, 2, 3]}]},
            "problems.0.reference: ",
        ),
        (
            {"problems": [{"function": "zdt1", "dims": 3, "reference": [2, -1]}]},
            "problems.0.reference.1: ",
        ),
        ({"problems": [{"function": "zdt1", "dims": 1}]}, "problems.0.dims: "),
        ({"problems": [{"function": "zdt1"}]}, "problems.0.dims: "),
        ({"problems": [{"function": "zdt1", "dims": 3, "max_budget": 9}]}, "problems.0.max_budget"),
        ({"problems": [{"function": "branin", "reference": [1, 1]}]}, "problems.0.reference: only"),
        (
            {"problems": [{"function": "zdt1", "dims": 3}, {"function": "branin"}]},
            "problems: give problems with one objective or problems with several",
        ),
    ],
)
def test_bad_multi_objective_study_files_name_the_field(over, message):
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        study(**over)
    assert "\n" not in str(info.value)


def test_a_searcher_of_one_objective_is_refused_naming_the_method():
    name = _one_objective_searcher()
    methods = [METHODS[0], {"name": "one", "searcher": {"name": name}}]
    with pytest.raises(SpecError, match=r"methods\.1\.searcher\.name: .*allowed with several"):
        study(methods=methods)


def test_tpe_beats_random_and_the_report_has_the_table(tmp_path):
    s = study(
        problems=[{"function": "zdt1", "dims": 5}],
        methods=[METHODS[0], {"name": "tpe", "optuna": "tpe"}],
        repetitions=3,
        budget=60,
    )
    trials = compare(s, tmp_path, log=lambda _: None)
    final = analysis.final_best(trials, "max").pivot(index="rep", columns="method", values="best")
    assert (final["tpe"] > final["random"]).all()
    paths = study_report.build(tmp_path)
    md = Path(paths["markdown"]).read_text()
    assert "Several objectives: final hypervolume per method" in md
    assert "reference (1.1, 11)" in md and (tmp_path / "fronts.png").stat().st_size > 1000
    mean = final["tpe"].mean()
    row = next(line for line in md.splitlines() if line.startswith("| zdt1-5d") and "+-" in line)
    assert f"{mean:.4f} +- {final['tpe'].std(ddof=1):.4f} (1.0)" in row
