"""COCO problems in studies, Optuna's samplers as methods, concurrency for every method, and the
COCO part of the report. In-process (no Ray)."""

import re
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats

from raytune_hpo.errors import SpecError
from raytune_hpo.study import StudySpec, analysis, check, coco, compare, load_study
from raytune_hpo.study.runner import OptunaProposer, drive, run_direct
from raytune_hpo.sweep.space import SearchSpace

cocoex = pytest.importorskip("cocoex")

RANDOM = {"name": "random", "searcher": {"name": "random"}}


def study(**over):
    base = {
        "name": "c",
        "problems": [{"bbob": [1, 8], "dims": 2}],
        "methods": [RANDOM],
        "repetitions": 2,
        "budget": 12,
    }
    return check(StudySpec.from_dict({**base, **over}))


# ---------------------------------------------------------------------- problems
@pytest.mark.parametrize("function", range(1, 25))
def test_bbob_regret_is_zero_at_the_suites_optimum_and_positive_elsewhere(function):
    p = coco.CocoProblem("bbob", function, 5, 1)
    bare = cocoex.BareProblem("bbob", function, 5, 1)
    x_opt = bare.best_parameter()
    at = {f"x{i}": v for i, v in enumerate(x_opt)}
    assert p.regret(p(at)) == pytest.approx(0.0, abs=1e-12)
    assert p.minimum == bare.best_value()
    away = {f"x{i}": float(np.clip(v + 1.0, -5, 5)) for i, v in enumerate(x_opt)}
    assert p.regret(p(away)) > 0
    assert p.bounds == ((-5.0, 5.0),) * 5 and p.group == coco.group_of(function)


def test_mixint_space_and_optimum_follow_cocoex(tmp_path, monkeypatch):
    # cocoex prints a mixint problem's optimal point into ./._bbob_problem_best_parameter.txt
    monkeypatch.chdir(tmp_path)
    suite = cocoex.Suite("bbob-mixint", "instances: 2", "dimensions: 5")
    for raw in suite:
        p = coco.CocoProblem("bbob-mixint", raw.id_function, 5, 2)
        space = p.space()
        assert [space[f"x{i}"]["type"] for i in range(5)] == ["int"] * 4 + ["float"]
        assert [space[f"x{i}"]["high"] for i in range(4)] == [1, 3, 7, 15]
        raw._best_parameter("print")
        x_opt = np.loadtxt(tmp_path / "._bbob_problem_best_parameter.txt")
        assert p.regret(p({f"x{i}": v for i, v in enumerate(x_opt)})) == pytest.approx(
            0.0, abs=1e-9 * max(1.0, abs(p.minimum))
        )
        flipped = np.where(np.arange(5) == 0, 1 - x_opt, x_opt)  # the binary variable
        assert p(dict(zip(space, flipped, strict=True))) > p.minimum


def test_suite_dimensions_are_cocoex_own():
    for name, spec in coco.SUITES.items():
        dims = cocoex.Suite(name, "instances: 1", "function_indices: 1").dimensions
        assert set(spec["dims"]) <= set(dims)
        assert spec["dims"] == tuple(d for d in dims if d < 50)  # mixint: bbob-based dims only


# ---------------------------------------------------------------------- study files
def test_coco_entries_become_one_problem_per_function_and_round_trip():
    s = study(
        problems=[
            {"bbob": "all", "dims": 5, "instance": 3},
            {"bbob-mixint": [2], "dims": 10},
            {"function": "branin"},
        ],
        max_concurrent=4,  # the older name of concurrency
    )
    labels = [q.label for q in s.problems]
    assert labels[:2] == ["bbob_f001_i03_d05", "bbob_f002_i03_d05"] and len(labels) == 26
    assert labels[24:] == ["bbob-mixint_f002_i01_d10", "branin"]
    assert s.concurrency == 4
    again = StudySpec.model_validate(s.model_dump(exclude_none=True))
    assert [q.label for q in again.problems] == labels and again.concurrency == 4


@pytest.mark.parametrize(
    "over, field, message",
    [
        ({"problems": [{"bbob": [1, 25], "dims": 5}]}, "problems.0.bbob", "1 to 24 or all"),
        ({"problems": [{"bbob": "most", "dims": 5}]}, "problems.0.bbob", "1 to 24"),
        ({"problems": [{"bbob": [1], "dims": 7}]}, "problems.0.dims", "2, 3, 5, 10, 20, 40"),
        ({"problems": [{"bbob": [1]}]}, "problems.0.dims", "needs dims"),
        ({"problems": [{"bbob-mixint": [1], "dims": 3}]}, "problems.0.dims", "5, 10, 20, 40"),
        ({"problems": [{"bbob-biobj": [1], "dims": 5}]}, "problems.0.bbob-biobj", "objectives"),
        (
            {"problems": [{"function": "levy", "dims": 2, "instance": 2}]},
            "problems.0.instance",
            "only COCO problems",
        ),
        ({"methods": [{"name": "o", "optuna": "hyperopt"}]}, "methods.0.optuna", "tpe, gp, cmaes"),
        ({"methods": [{"name": "o"}]}, "methods.0", "either searcher"),
        (
            {"methods": [{"name": "o", "optuna": "cmaes", "options": {"sigma": 2}}]},
            "methods.0.options.sigma",
            "allowed: x0, sigma0",
        ),
        (
            {"methods": [{"name": "o", "optuna": "tpe", "options": {"n_startup_trials": 2.5}}]},
            "methods.0.options.n_startup_trials",
            "valid integer",
        ),
        ({"concurrency": 2, "max_concurrent": 2}, "max_concurrent", "not both"),
    ],
)
def test_bad_coco_and_optuna_entries_name_the_field(over, field, message):
    with pytest.raises(SpecError, match=re.escape(message)) as e:
        study(**over)
    assert e.value.dotted_field == field
    assert "\n" not in str(e.value)


def test_optuna_method_on_a_sweep_problem_is_refused(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("metric: loss\nmode: min\nspace: {x: {type: float, low: 0, high: 1}}\n")
    with pytest.raises(SpecError, match="function problems only") as e:
        study(problems=[{"sweep": str(sweep)}], methods=[{"name": "o", "optuna": "tpe"}])
    assert e.value.dotted_field == "methods.0.optuna"


def test_missing_cocoex_names_the_extra(monkeypatch, one_line_error, tmp_path):
    coco._coco.cache_clear()  # built problems would hide the missing module
    monkeypatch.setitem(sys.modules, "cocoex", None)  # what `import cocoex` meets without it
    with pytest.raises(SpecError, match=re.escape('pip install -e ".[bench]"')):
        study()
    path = tmp_path / "s.yaml"
    path.write_text("problem: {bbob: all, dims: 5}\nmethods: [{name: r, searcher: {name: random}}]")
    one_line_error(["compare", str(path), "--out", str(tmp_path / "out")], "coco-experiment")
    coco._coco.cache_clear()


# ---------------------------------------------------------------------- methods, concurrency
class _SeeingRandom(optuna.samplers.RandomSampler):
    """Optuna's random sampler, noting how many results it had when asked for each trial."""

    def __init__(self, seed):
        super().__init__(seed=seed)
        self.seen: dict[int, int] = {}

    def sample_independent(self, study, trial, name, distribution):
        self.seen[trial.number] = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        return super().sample_independent(study, trial, name, distribution)


@pytest.mark.parametrize("k", [1, 3])
def test_k_suggestions_are_out_before_the_first_result(k):
    p = coco.CocoProblem("bbob", 3, 2, 1)
    sampler = _SeeingRandom(seed=0)
    rows = drive(OptunaProposer(sampler, SearchSpace.from_dict(p.space())), p.at, 10, k)
    assert len(rows) == 10
    # Trial n is asked for once n - k + 1 results are back: k are always out, oldest first.
    assert sampler.seen == {n: max(0, n - k + 1) for n in range(10)}
    assert list(rows["out"]) == [min(k, 10 - n) for n in range(10)]
    assert (rows["value"] > p.minimum).all()


def test_optuna_and_our_searchers_run_with_the_same_seeds_and_concurrency():
    methods = [
        {"name": "optuna-cmaes", "optuna": "cmaes", "options": {"popsize": 6}},
        {"name": "ag", "searcher": {"name": "approx_gradient"}},
    ]
    one, four = (
        study(methods=methods, budget=30, concurrency=c, problems=[{"bbob": 10, "dims": 5}])
        for c in (1, 4)
    )
    q = one.problems[0]
    for m in one.methods:
        a, b = run_direct(one, q, m, 0), run_direct(one, q, m, 0)
        pd.testing.assert_frame_equal(a, b)  # seeded: the same run twice
        assert not np.allclose(a["value"], run_direct(one, q, m, 1)["value"])  # seed + rep
        assert len(a) == 30 and (a["value"] > q.make().minimum).all()
        # Four out at once: the method decides with fewer results, so its run differs.
        assert not np.allclose(a["value"], run_direct(four, q, m, 0)["value"])


# ---------------------------------------------------------------------- report
def test_groups_table_ranks_where_each_method_is_strong():
    rng = np.random.default_rng(0)
    rows = []
    for f in (1, 2, 15, 16):
        label = coco.problem_id("bbob", f, 2, 1)
        for rep in range(4):
            for method, good in (("a", f < 10), ("b", f >= 10)):
                regret = 10 ** rng.uniform(-6, -5) if good else 10 ** rng.uniform(-1, 0)
                rows.append((label, method, rep, 0, 100.0 + regret, 1))
    trials = pd.DataFrame(rows, columns=["problem", "method", "rep", "trial", "value", "budget"])
    minima = dict.fromkeys(trials["problem"], 100.0)
    table = analysis.log_regret_table(trials, minima)
    groups = {p: coco.group_of(int(p[6:9])) for p in minima}
    ranks = analysis.rank_by_group(table, groups).set_index("group")
    assert ranks.loc["separable", "a"] == 1.0 and ranks.loc["separable", "b"] == 2.0
    assert ranks.loc["multi-modal, adequate global structure", "b"] == 1.0
    assert ranks.loc["all", "a"] == ranks.loc["all", "b"] == 1.5
    x = np.log10(trials.query("method == 'a' and problem == 'bbob_f001_i01_d02'")["value"] - 100)
    cell = table.set_index(["problem", "method"]).loc[("bbob_f001_i01_d02", "a")]
    assert cell["mean"] == pytest.approx(x.mean())
    lo, hi = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((lo, hi))
    counts = analysis.at_or_below(table).set_index("method")
    assert counts.loc["a", "b"] == 2 and counts.loc["b", "a"] == 2 and counts.loc["a", "a"] == 4


def test_report_of_a_coco_study_has_functions_groups_and_ranks(tmp_path):
    methods = [RANDOM, {"name": "optuna-tpe", "optuna": "tpe"}]
    s = study(methods=methods, problems=[{"bbob": [1, 10, 20], "dims": 2}], budget=15)
    trials = compare(s, tmp_path, log=lambda m: None)
    from raytune_hpo.study import report

    report.build(tmp_path)
    md = (tmp_path / "report.md").read_text()
    for name in ("Sphere", "Ellipsoidal", "Schwefel x sin(x)", "high conditioning, unimodal"):
        assert name in md
    assert "![log_regret.png](log_regret.png)" in md and (tmp_path / "log_regret.png").is_file()
    # The 'all' row of the groups table: each method's mean rank, recomputed here from trials.
    finals = trials.groupby(["problem", "rep", "method"])["value"].min().unstack()
    mean_rank = finals.rank(axis=1).mean()
    row = next(line for line in md.splitlines() if line.startswith("| all"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert [float(c) for c in cells[2:]] == pytest.approx(
        [mean_rank["random"], mean_rank["optuna-tpe"]], abs=0.005
    )
    spec, _ = load_study(tmp_path)
    assert spec.recorded["bbob_f010_i01_d02"].minimum == coco.CocoProblem("bbob", 10, 2).minimum
