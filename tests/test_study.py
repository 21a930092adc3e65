"""Studies: the study file, in-process and Ray Tune runs, resumption, statistics, the report."""

import json
import math
import re
import shutil
from pathlib import Path

import browser
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from raytune_hpo.cli.commands import main
from raytune_hpo.study import StudySpec, analysis, check, compare, load_study
from raytune_hpo.study.functions import make_problem
from raytune_hpo.sweep.spec import SpecError

METHODS = [
    {"name": "random", "searcher": {"name": "random"}},
    {"name": "pso", "searcher": {"name": "pso", "swarm_size": 6}},
]


def study(**over):
    base = {
        "name": "s",
        "problem": {"function": "branin"},
        "methods": METHODS,
        "repetitions": 3,
        "budget": 30,
    }
    return check(StudySpec.from_dict({**base, **over}))


@pytest.mark.parametrize(
    "over, message",
    [
        ({"methods": [{"name": "x", "searcher": {"name": "nope"}}]}, "methods.0.searcher: unknown"),
        ({"methods": [{"name": "x", "searcher": {"name": "pso", "speed": 1}}]}, "allowed:"),
        ({"methods": METHODS + METHODS[:1]}, "names must be unique"),
        ({"problem": {"function": "branin", "sweep": "a.yaml"}}, "give one of function"),
        ({"problem": {"function": "rosenbrock"}}, "problems.0.function"),
        ({"repetitions": 0}, "repetitions"),
    ],
)
def test_bad_study_files_name_the_field(over, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        study(**over)


def test_function_study_runs_in_process_and_resumes(tmp_path):
    s = study()
    logs = []
    trials = compare(s, tmp_path, log=logs.append)
    assert len(trials) == 2 * 3 * 30
    assert set(trials["method"]) == {"random", "pso"} and set(trials["rep"]) == {0, 1, 2}
    assert logs[-1].startswith("[6/6]") and "leader" in logs[-1]
    # Different repetitions are different seeds; the same seed reproduces its run.
    r = trials[trials["method"] == "random"]
    assert not np.allclose(r[r["rep"] == 0]["value"], r[r["rep"] == 1]["value"])
    # Resumable: finished runs are kept, a missing one is run again, identically.
    victim = tmp_path / "runs" / "branin--pso--1.csv"
    before = pd.read_csv(victim)
    victim.unlink()
    logs.clear()
    again = compare(s, tmp_path, log=logs.append)
    assert sum("done" in line for line in logs) == 1 and sum("kept" in line for line in logs) == 5
    pd.testing.assert_frame_equal(pd.read_csv(victim), before)
    assert len(again) == len(trials)
    _, loaded = load_study(tmp_path)
    assert len(loaded) == len(trials)


def test_multifidelity_function_is_a_biased_noisy_view_at_low_budget():
    mf = make_problem("branin", max_budget=27)
    rng = np.random.default_rng(0)
    opt = {"x0": math.pi, "x1": 2.275}
    assert mf.at(opt, 27, rng) == pytest.approx(mf.minimum, abs=1e-4)  # full budget: exact
    grid = [{"x0": a, "x1": b} for a in np.linspace(-5, 10, 31) for b in np.linspace(0, 15, 31)]
    low = [mf.at(c, 1, np.random.default_rng(1)) for c in grid]
    full = [mf.at(c, 27, rng) for c in grid]
    assert np.argmin(low) != np.argmin(full)  # biased: low budgets rank differently
    assert stats.spearmanr(low, full).statistic > 0.3  # ... but are informative
    spread = [np.std([mf.at(opt, b, np.random.default_rng(i)) for i in range(50)]) for b in (1, 9)]
    assert spread[0] > spread[1] > 0  # noisier at lower budgets
    with pytest.raises(ValueError, match="budget"):
        mf.at(opt, 28, rng)


def _table(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for method, finals in values.items():
        for rep, v in enumerate(finals):
            rows += [
                {
                    "problem": "p",
                    "method": method,
                    "rep": rep,
                    "trial": 0,
                    "value": v + 1,
                    "budget": 1,
                },
                {"problem": "p", "method": method, "rep": rep, "trial": 1, "value": v, "budget": 1},
            ]
    return pd.DataFrame(rows)


def test_statistics_of_final_best_values():
    rng = np.random.default_rng(0)
    good = rng.normal(1.0, 0.1, 10)
    bad = good + rng.uniform(0.5, 1.0, 10)  # worse in every repetition
    same = good + rng.normal(0, 0.001, 10) * np.where(np.arange(10) % 2, 1, -1)
    trials = _table({"good": list(good), "bad": list(bad), "same": list(same)})
    summ = analysis.summary(trials, "min", minima={"p": 0.0})
    g = summ.set_index("method")
    assert g.loc["good", "mean"] == pytest.approx(good.mean())
    lo, hi = stats.t.interval(0.95, 9, loc=good.mean(), scale=stats.sem(good))
    assert (g.loc["good", "ci_low"], g.loc["good", "ci_high"]) == pytest.approx((lo, hi))
    assert g.loc["bad", "rank"] == 3.0  # worst in every repetition
    assert g.loc["bad", "norm_loss"] == pytest.approx(np.mean(bad / np.minimum(good, same)))
    assert g.loc[["good", "same"], "norm_loss"].min() >= 1.0
    pairs = analysis.pairwise(trials, "min").set_index("method")
    assert bool(pairs.loc["bad", "significant"]) and pairs.loc["bad", "wilcoxon_p"] < 0.01
    assert not bool(pairs.loc[pairs.index.difference(["bad"])[0], "significant"])
    curve = analysis.best_so_far(trials, "min")
    assert (curve.groupby(["method", "rep"])["best"].diff().dropna() <= 0).all()
    # Accuracies (mode max): the two-proportion z-test appears and agrees in direction.
    acc = _table({"a": [0.95] * 5, "b": [0.80] * 5})
    acc.loc[acc["trial"] == 0, "value"] -= 2  # the first trial of each run is the worse one
    z = analysis.pairwise(acc, "max", "val_accuracy", n_eval=360)
    assert z.iloc[0]["leader"] == "a" and z.iloc[0]["ztest_p"] < 1e-6


@pytest.mark.integration
def test_tune_runs_for_schedulers_and_trainable_problems(ray_session, tmp_path):
    # A multi-fidelity function under ASHA runs as real Tune trials, reporting per epoch.
    s = study(
        problem={"function": "branin", "max_budget": 9},
        methods=[
            {
                "name": "asha",
                "searcher": {"name": "random"},
                "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
            }
        ],
        repetitions=1,
        budget=9,
        max_concurrent=2,
    )
    trials = compare(s, tmp_path / "f", log=lambda m: None)
    assert len(trials) == 9 and trials["budget"].max() == 9 and trials["budget"].min() < 9
    # A trainable sweep as the problem: real training on digits.
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "metric: val_accuracy\nmode: max\n"
        "space: {lr: {type: float, low: 0.001, high: 0.03, log: true, grid: [0.003, 0.03]}}\n"
        "trainable: {model: mlp, epochs: 2}\n"
    )
    study_file = tmp_path / "study.yaml"
    study_file.write_text(
        "name: t\nrepetitions: 2\nbudget: 2\nproblem: {sweep: sweep.yaml}\nmethods:\n"
        "  - {name: grid, searcher: {name: grid}}\n  - {name: sobol, searcher: {name: sobol}}\n"
    )
    out = tmp_path / "t"
    assert main(["compare", str(study_file), "--out", str(out)]) == 0
    _, t = load_study(out)
    assert len(t) == 2 * 2 * 2 and t["value"].between(0.5, 1.0).all()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "ztest_p" in page  # accuracies on digits: the TinyVGG study's z-test is there


def test_report_renders_with_plots_and_statistics(tmp_path):
    compare(study(repetitions=4, budget=20), tmp_path, log=lambda m: None)
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # self-contained: plots inline
    assert "Paired tests" in page and "wilcoxon_p_holm" in page and "norm_loss" in page
    md = (tmp_path / "report.md").read_text()
    assert "| method" in md and "![best_vs_evaluations.png]" in md
    pixels = browser.screenshot(tmp_path / "report.html", tmp_path / "shot.png", height=2400)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    rows_with_ink = (pixels[..., :3].std(axis=(1, 2)) > 0.01).mean()
    assert rows_with_ink > 0.3  # tables and plots drawn, not a blank page


@pytest.mark.parametrize("name", ["study-functions", "study-tinyvgg-digits"])
def test_committed_study_results_regenerate_their_report(tmp_path, name):
    results = Path(__file__).parent.parent / "benchmarks" / "results" / name
    copy = tmp_path / name
    shutil.copytree(results, copy)
    assert main(["report", str(copy)]) == 0
    page = (copy / "report.md").read_text()
    study, trials = load_study(copy)
    assert all(m.name in page for m in study.methods) and len(trials) > 0


def test_committed_coco_summary_agrees_with_its_runs_and_reports():
    root = Path(__file__).parent.parent / "benchmarks" / "results" / "coco-bbob-5d"
    summary = json.loads((root / "summary.json").read_text())
    dirs = ("c1", "c4", "tuned-c1", "tuned-c4")
    assert [s["study"] for s in summary["studies"]] == [
        StudySpec.model_validate(yaml.safe_load((root / d / "study.yaml").read_text())).name
        for d in dirs
    ]
    for s, d in zip(summary["studies"], dirs, strict=True):
        runs = pd.DataFrame(s["runs"]["rows"], columns=s["runs"]["columns"])
        assert len(runs) == 24 * len(s["methods"]) * s["repetitions"]
        assert (runs["regret"] >= 0).all() and runs["evaluations"].between(1, s["budget"]).all()
        # The mean ranks, recomputed from the runs' regrets (COCO's floor of 1e-8).
        log = np.log10(np.maximum(runs["regret"], analysis.REGRET_FLOOR))
        rank = runs.assign(log=log).groupby(["problem", "rep"])["log"].rank()
        mean_rank = runs.assign(rank=rank).groupby("method")["rank"].mean()
        assert mean_rank.to_dict() == pytest.approx(s["mean_rank"], abs=0.01)
        # ... and the report's 'all' row of the groups table says the same.
        md = (root / d / "report.md").read_text()
        row = next(line for line in md.splitlines() if line.startswith("| all "))
        cells = [float(c) for c in row.strip("|").split("|")[2:]]
        assert cells == pytest.approx([s["mean_rank"][m] for m in s["methods"]], abs=0.006)
