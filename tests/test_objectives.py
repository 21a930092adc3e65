"""Several objectives and constraints, in-process: the sweep file's checks (one line naming
the field, before Ray starts), Pareto ranks against the test's own non-dominated sort, MO-ASHA
driven with Ray's scheduler API and stand-in trials (as Ray's own scheduler tests do), the
hypervolume box, the metric check, and results/report of a sweep directory made here."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from raytune_hpo.cli.commands import main
from raytune_hpo.objectives import HypervolumeBox, Objectives, rank_points
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.run.metric_check import MetricCheck
from raytune_hpo.schedulers import create_scheduler
from raytune_hpo.schedulers._moasha import (
    MultiObjectiveASHA,
    by_crowding,
    crowding_distance,
    epsilon_net,
)
from raytune_hpo.sweep.spec import SpecError, SweepSpec

TWO = {"metric": ["val_accuracy", "latency_ms"], "mode": ["max", "min"]}
CNN = {"trainable": {"model": "mlp", "epochs": 4}}


def plan(**fields):
    return assemble(SweepSpec.from_dict({**CNN, **fields}))


BAD = [
    ({**TWO, "mode": "max"}, r"^sweep: mode: 1 mode\(s\) for 2"),
    ({**TWO, "mode": ["max"]}, r"mode: 1 mode\(s\) for 2 metric\(s\) \(val_accuracy, latency_ms\)"),
    ({**TWO, "mode": ["max", "min", "min"]}, r"mode: 3 mode\(s\) for 2 metric\(s\)"),
    ({**TWO, "mode": ["max", "fast"]}, r"mode: item 1 is 'fast': Input should be 'min' or 'max'"),
    ({**TWO, "metric": ["val_accuracy", "val_accuracy"]}, r"metric: 'val_accuracy' is listed"),
    ({**TWO, "metric": ["val_accuracy", "f1"]}, r"metric\.1: 'f1' is not reported by the trai"),
    ({**TWO, "constraints": {"flops": {"max": 1}}}, r"constraints\.flops: 'flops' is not report"),
    ({**TWO, "constraints": {"params_m": {"min": 2, "max": 1}}}, r"params_m: min 2 is above max 1"),
    ({**TWO, "constraints": {"params_m": {}}}, r"constraints\.params_m: give min, max or both"),
    ({**TWO, "constraints": {"params_m": {"max": 1, "below": 2}}}, r"params_m\.below: unknown"),
    (
        {**TWO, "searcher": {"name": "bohb"}},
        r"searcher\.name: 'bohb' learns from one metric and cannot take several objectives; "
        r"allowed with several objectives: random, grid, sobol, lhs, rsa, hypertiling, pso, "
        r"approx_gradient, bayesopt, tpe, nsga2, auto, or a plug-in that declares "
        r"supports_multi_objective = True$",
    ),
    (
        {"constraints": {"params_m": {"max": 1}}, "searcher": {"name": "bohb"}},
        r"searcher\.name: 'bohb' .* cannot take constraints; allowed with constraints: random",
    ),
    (
        {**TWO, "scheduler": {"name": "hyperband"}},
        r"scheduler\.name: 'hyperband' ranks trials by one metric and cannot take several "
        r"objectives; allowed with several objectives: fifo, asha$",
    ),
    ({**TWO, "scheduler": {"name": "median"}}, r"scheduler\.name: 'median' ranks trials"),
    ({**TWO, "scheduler": {"name": "asha", "tie_break": "x"}}, r"tie_break: got 'x'; allowed"),
    ({"scheduler": {"name": "asha", "tie_break": "epsnet"}}, r"tie_break: ranks a front of sev"),
]


@pytest.mark.parametrize("fields, message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_objectives_are_one_line_naming_the_field(fields, message):
    with pytest.raises(SpecError, match=message) as err:
        plan(**fields)
    assert "\n" not in str(err.value)


def test_the_cli_refuses_them_with_exit_2_before_ray(tmp_path, one_line_error):
    bad = tmp_path / "mo.yaml"
    bad.write_text("metric: [val_accuracy, latency_ms]\nmode: [max]\n")
    one_line_error(["run", str(bad)], "mode: 1 mode(s) for 2 metric(s)")
    bad.write_text("metric: val_accuracy\nconstraints: {params_m: {min: 3, max: 1}}\n")
    one_line_error(["run", str(bad)], "constraints.params_m: min 3 is above max 1")


def test_one_objective_is_the_single_objective_sweep_as_before():
    listed = plan(metric=["val_loss"], mode=["min"])
    assert listed.spec.metric == "val_loss" and listed.spec.mode == "min"
    assert not listed.objectives.ranked
    assert listed.tune_objective() == {"metric": "val_loss", "mode": "min"}
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from raytune_hpo.schedulers._moasha import MultiObjectiveASHA

    fifo = listed.scheduler()
    assert isinstance(fifo, FIFOScheduler) and not isinstance(fifo, AsyncHyperBandScheduler)
    asha = plan(scheduler={"name": "asha"})
    assert isinstance(asha.scheduler(), AsyncHyperBandScheduler)  # Ray's own
    assert not isinstance(asha.scheduler(), MultiObjectiveASHA)
    assert "constraints" not in asha.spec.to_yaml()


def test_several_objectives_reach_the_searcher_and_scheduler_not_the_tune_config():
    p = plan(**TWO, searcher={"name": "sobol"}, scheduler={"name": "asha", "tie_break": "crowding"},
             space={"lr": {"type": "float", "low": 1e-3, "high": 0.1}})  # fmt: skip
    assert p.tune_objective() == {}  # Ray's TuneConfig takes one metric
    sched = p.scheduler()
    assert isinstance(sched, MultiObjectiveASHA)
    assert sched._objectives.metrics == ("val_accuracy", "latency_ms")
    assert sched._tie_break == "crowding" and sched._max_t == 4
    told = p.searcher_objective()  # Ray's bookkeeping: the first; the searcher: all of them
    assert told == {"metric": "val_accuracy", "mode": "max", "objectives": p.objectives}
    assert not hasattr(p.searcher(), "_objectives")  # sobol learns nothing: not given them
    one = plan(searcher={"name": "tpe"}, space={"lr": {"type": "float", "low": 1e-3, "high": 0.1}})
    assert "objectives" not in one.searcher_objective()  # one objective: as before
    with_bounds = plan(constraints={"params_m": {"max": 1.5}}, scheduler={"name": "asha"})
    assert with_bounds.objectives.ranked and with_bounds.tune_objective() == {}
    assert isinstance(with_bounds.scheduler(), MultiObjectiveASHA)
    again = SweepSpec.from_dict(yaml.safe_load(with_bounds.spec.to_yaml()))  # sweep.yaml
    assert again.objectives == with_bounds.objectives


# ---------------------------------------------------------------------- ranks
def dominates(a, b) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def own_ranks(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting, the test's own: O(n^2) per front."""
    rank = np.zeros(len(points), dtype=int)
    left = set(range(len(points)))
    k = 0
    while left:
        k += 1
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            rank[i] = k
        left -= front
    return rank


def test_ranks_are_the_fronts_and_infeasible_points_come_after_every_feasible_one():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 6, size=(40, 2)).astype(float)  # ties and duplicates on purpose
    violation = np.where(rng.random(40) < 0.3, rng.choice([0.5, 2.0, np.inf], 40), 0.0)
    rank, feasible = rank_points(pts, violation)
    assert (feasible == (violation == 0)).all()
    assert (rank[feasible] == own_ranks(pts[feasible])).all()
    assert rank[feasible].max() < rank[~feasible].min()
    worse = rank[~feasible]
    for v, r in zip(violation[~feasible], worse, strict=True):  # the least violated first
        assert (worse[violation[~feasible] < v] < r).all()


def test_a_table_is_ranked_by_its_objectives_and_constraints():
    t = pd.DataFrame(
        {
            "trial_id": list("abcdef"),
            "status": ["OK", "OK", "OK", "OK", "ERROR", "OK"],
            "acc": [0.9, 0.8, 0.95, 0.7, math.nan, 0.99],
            "cost": [2.0, 1.0, 3.0, 2.0, 1.0, 1.0],
            "size": [1.0, 1.0, 1.0, 1.0, 1.0, 9.0],
        }
    )
    obj = Objectives.from_fields(["acc", "cost"], ["max", "min"], {"size": {"max": 2}})
    ranked = obj.with_ranks(t).set_index("trial_id")
    assert list(ranked.loc[list("abcdef"), "feasible"]) == [True, True, True, True, False, False]
    assert {t for t in "abcd" if ranked.loc[t, "pareto_rank"] == 1} == {"a", "b", "c"}
    assert ranked.loc["d", "pareto_rank"] == 2  # a dominates d
    assert ranked.loc["f", "pareto_rank"] == 3 and ranked.loc["e", "pareto_rank"] == 4  # failed


# ---------------------------------------------------------------------- MO-ASHA
def own_epsnet_position(points: np.ndarray, who: int) -> int:
    """The test's own epsilon-net order of a front (scaled already): its position of ``who``."""
    order = [int(np.argmin(points[:, 0]))]
    while len(order) < len(points):
        rest = [i for i in range(len(points)) if i not in order]
        dist = [min(np.linalg.norm(points[i] - points[j]) for j in order) for i in rest]
        order.append(rest[int(np.argmax(dist))])
    return order.index(who)


def fake_trial(i: int) -> Trial:
    return Trial("fake", stub=True, trial_id=f"t{i:03d}")


def test_mo_asha_keeps_at_a_rung_only_the_trials_non_dominated_sorting_keeps():
    obj = Objectives.from_fields(["acc", "cost"], ["max", "min"])
    sched = create_scheduler(
        "asha", max_t=8, objectives=obj, seed=0, grace_period=1, reduction_factor=2
    )
    rng = np.random.default_rng(3)
    recorded: dict[float, list[np.ndarray]] = {}
    seen = {"stop": 0, "continue": 0, "tie": 0}
    for i in range(60):
        trial = fake_trial(i)
        sched.on_trial_add(None, trial)
        acc, cost = rng.random(), rng.random()
        for t in (1, 2, 4):
            point = np.array([-acc * (1 + 0.1 * t), cost])  # to minimise
            action = sched.on_trial_result(
                None, trial, {"training_iteration": t, "acc": -point[0], "cost": cost}
            )
            earlier = recorded.setdefault(t, [])
            pts = np.array([*earlier, point])
            earlier.append(point)
            k = math.ceil(len(pts) / 2)
            rank = own_ranks(pts)
            better = int((rank < rank[-1]).sum())
            same = int((rank == rank[-1]).sum())
            if better >= k:
                expected = TrialScheduler.STOP
            elif better + same <= k:
                expected = TrialScheduler.CONTINUE
            else:  # the tie-break (epsilon-net) decides within the front
                front = np.flatnonzero(rank == rank[-1])
                low, high = pts.min(axis=0), pts.max(axis=0)
                scaled = (pts - low) / np.where(high > low, high - low, 1)
                pos = better + own_epsnet_position(scaled[front], len(front) - 1)
                expected = TrialScheduler.CONTINUE if pos < k else TrialScheduler.STOP
                seen["tie"] += 1
            assert action == expected, (i, t)
            seen["stop" if action == TrialScheduler.STOP else "continue"] += 1
            if action == TrialScheduler.STOP:
                break
    assert min(seen.values()) >= 3, seen
    stop = sched.on_trial_result(None, fake_trial(0), {"training_iteration": 8, "acc": 1})
    assert stop == TrialScheduler.STOP or "t000" not in sched._bracket_of


def test_mo_asha_stops_infeasible_trials_while_feasible_ones_fill_the_rung():
    obj = Objectives.from_fields("acc", "max", {"size": {"max": 1.0}})
    sched = create_scheduler("asha", max_t=4, objectives=obj, seed=0, reduction_factor=2)
    actions = []
    for i, (acc, size) in enumerate([(0.5, 0.5), (0.6, 0.9), (0.99, 3.0), (0.1, 0.2)]):
        trial = fake_trial(i)
        sched.on_trial_add(None, trial)
        result = {"training_iteration": 1, "acc": acc, "size": size}
        actions.append(sched.on_trial_result(None, trial, result))
    # 0.5 first: kept; 0.6 better: kept; 0.99 breaks its bound: after both feasible ones,
    # 3rd of 3, stopped; 0.1: 3rd of 4 feasible-first (2 needed), stopped.
    assert actions == ["CONTINUE", "CONTINUE", "STOP", "STOP"]


def test_tie_breaks_prefer_the_ends_of_a_front():
    front = np.array([[0.0, 1.0], [0.45, 0.55], [0.5, 0.5], [1.0, 0.0]])
    assert list(epsilon_net(front)) == [0, 3, 2, 1]  # best first objective, then farthest
    d = crowding_distance(front)
    assert np.isinf(d[[0, 3]]).all() and d[2] == pytest.approx(1.1) and d[1] == pytest.approx(1.0)
    assert list(by_crowding(front)) == [0, 3, 2, 1]  # the ends, then the most isolated


# ---------------------------------------------------------------------- hypervolume
def test_the_hypervolume_box_is_the_feasible_trials_plus_a_margin():
    pts = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 0.0]])
    box = HypervolumeBox.around([pts])
    assert np.allclose(box.ideal, [0, 0]) and np.allclose(box.reference, [3.3, 4.4])
    # By hand, in the unit box: (1 - 0)(1 - 4/4.4) + (1 - 1/3.3)(4/4.4 - 2/4.4) + ...
    xs, ys = pts[:, 0] / 3.3, pts[:, 1] / 4.4
    by_hand = (1 - xs[0]) * (1 - ys[0]) + (1 - xs[1]) * (ys[0] - ys[1])
    by_hand += (1 - xs[2]) * (ys[1] - ys[2])
    assert box.hypervolume(pts) == pytest.approx(by_hand)
    curve = box.curve(pts, np.array([True, False, True]))
    assert curve[0] == curve[1] < curve[2]  # an infeasible point adds nothing
    assert box.hypervolume(pts[:0]) == 0.0


def test_the_metric_check_names_the_missing_objective_or_constraint():
    fields = {"cost": ("metric", 1), "size": ("constraints", "size")}
    check = MetricCheck(["acc", "cost", "size"], fields)
    assert not check("t1", {"acc": 1, "cost": 2, "size": 3})
    assert check("t2", {"acc": 1, "size": 3, "training_iteration": 1})

    class Plan:
        trainable = type("T", (), {"label": "train.py:train"})

    err = check.error(Plan)
    assert str(err) == (
        "metric.1: 'cost' is not reported by train.py:train; its first result had: acc, size"
    )


# ---------------------------------------------------------------------- a sweep directory
def sweep_dir(tmp_path, objectives: str, rows: list[dict]):
    (tmp_path / "sweep.yaml").write_text(
        f"name: made\n{objectives}\nspace: {{x: {{type: float, low: 0, high: 1}}}}\n"
    )
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path


def test_results_rank_a_finished_table_and_refuse_best_by_one_metric(tmp_path, capsys):
    rows = [
        {"trial_id": t, "status": "OK", "epochs": 2, "a": a, "b": b, "c": c, "config.x": x}
        for t, a, b, c, x in [
            ("p", 1, 5, 1, 0.1),
            ("q", 2, 4, 1, 0.2),
            ("r", 3, 6, 2, 0.3),
            ("s", 0, 9, 0, 0.4),
            ("u", 5, 5, 5, 0.5),
        ]  # fmt: skip
    ]
    d = sweep_dir(tmp_path, "metric: [a, b, c]\nmode: [min, min, min]", rows)
    assert main(["results", str(d), "--pareto", "--format", "json"]) == 0
    front = {r["trial_id"] for r in json.loads(capsys.readouterr().out)}
    pts = {r["trial_id"]: np.array([r["a"], r["b"], r["c"]], float) for r in rows}
    assert front == {t for t, p in pts.items() if not any(dominates(q, p) for q in pts.values())}
    assert main(["results", str(d), "--by", "best"]) == 2
    assert "with several objectives use --by last" in capsys.readouterr().err
    # Three objectives: the report draws them as parallel coordinates coloured by rank.
    assert main(["report", str(d), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "alt='pareto_front.png'" in page and "<h2>Hypervolume</h2>" in page
    assert (tmp_path / "rep" / "pareto_front.png").stat().st_size > 5000
