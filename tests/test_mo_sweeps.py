"""Sweeps with several objectives and constraints on a real local Ray: the Pareto front in
`results` is exactly the non-dominated set (computed here, independently of the library),
MO-ASHA stops trials early, infeasible trials rank after every feasible one, the report draws
the front with its hypervolume, and a resumed or extended sweep keeps its front."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import browser
import numpy as np
import pytest
from sweep_procs import trial_histories

from raytune_hpo.cli.commands import main
from raytune_hpo.results.table import load_results, read_sweep
from raytune_hpo.run.extend import extend
from raytune_hpo.run.sweep import Interrupted, resume, run_sweep
from raytune_hpo.sweep.spec import SweepSpec

pytestmark = pytest.mark.integration

STEPS = 4
# acc rises with x and with the steps; cost rises with x and y: a trade-off between them.
TRAIN = """
import os
import signal

from ray import tune


def train(config):
    x, y = config["x"], config["y"]
    stop = config.get("interrupt")
    if stop and len(os.listdir(stop["dir"])) >= stop["after"]:
        try:  # once: the first trial to find enough trials ended interrupts the driver
            os.close(os.open(os.path.join(stop["dir"], "..", "sent"), os.O_CREAT | os.O_EXCL))
            os.kill(stop["pid"], signal.SIGINT)
        except FileExistsError:
            pass
    for step in range(1, config.get("steps", 4) + 1):
        tune.report({"acc": x * step / 4, "cost": x**2 + y, "size": 1.0 + y})
    if stop:
        open(os.path.join(stop["dir"], tune.get_context().get_trial_id()), "w").close()
"""


def spec_of(tmp_path, name, *, searcher="random", scheduler=None, n=12, **over) -> SweepSpec:
    (tmp_path / "two.py").write_text(TRAIN)
    data = {
        "name": name,
        "metric": ["acc", "cost"],
        "mode": ["max", "min"],
        "seed": 5,
        "num_samples": n,
        "searcher": {"name": searcher},
        "space": {
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "y": {"type": "float", "low": 0.0, "high": 1.0},
        },
        "trainable": {"function": "two.py:train", "metrics": ["acc", "cost", "size"]},
        "storage_path": str(tmp_path / "out"),
        **over,
    }
    if scheduler:
        data["scheduler"] = scheduler
    return SweepSpec.from_dict(data, base_dir=str(tmp_path))


def dominates(a, b) -> bool:
    """``a`` dominates ``b`` (both to minimise)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated(points: dict) -> set:
    """The keys of the points no other point dominates: O(n^2), the test's own."""
    return {k for k, p in points.items() if not any(dominates(q, p) for q in points.values())}


def losses(rows, keys=("acc", "cost")) -> dict:
    return {r["trial_id"]: (-r[keys[0]], r[keys[1]]) for r in rows}


def front_of(table) -> set:
    return set(table[(table["pareto_rank"] == 1) & table["feasible"]]["trial_id"])


@pytest.fixture(scope="module")
def asha_sweep(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moasha")
    scheduler = {"name": "asha", "max_t": STEPS, "grace_period": 1, "reduction_factor": 2}
    return run_sweep(spec_of(tmp, "moasha", scheduler=scheduler, n=16, max_concurrent=2))


@pytest.fixture(scope="module")
def constrained_sweep(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("constrained")
    spec = spec_of(
        tmp,
        "constrained",
        searcher="sobol",
        constraints={"cost": {"max": 0.8}},
        loggers=["tensorboard", "mlflow"],
    )
    return run_sweep(spec)


def test_random_under_mo_asha_the_front_is_the_non_dominated_set(asha_sweep, capsys):
    table = asha_sweep.table
    assert len(table) == 16 and (table["status"] == "OK").all()
    assert table["feasible"].all()  # no constraints: every trial that reported is feasible
    assert (table["epochs"] < STEPS).any(), "MO-ASHA stopped no trial"
    assert (table["epochs"] == STEPS).any()
    # The front is the non-dominated set of each trial's last reported values, read here from
    # Ray's own result files.
    last = {tid: rows[-1] for tid, rows in trial_histories(Path(asha_sweep.path)).items()}
    for tid, r in last.items():
        r["trial_id"] = tid
    assert front_of(table) == non_dominated(losses(last.values()))
    # Ranks: rank k is the front once ranks below k are set aside.
    rest = losses(last.values())
    for k in range(1, int(table["pareto_rank"].max()) + 1):
        layer = non_dominated(rest)
        assert set(table[table["pareto_rank"] == k]["trial_id"]) == layer
        rest = {t: p for t, p in rest.items() if t not in layer}
    assert list(table["pareto_rank"]) == sorted(table["pareto_rank"])  # sorted by rank
    # `results --pareto`: the front only, in JSON too; the CSV holds every trial's rank.
    assert main(["results", asha_sweep.path, "--pareto", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {r["trial_id"] for r in shown} == front_of(table)
    assert all(r["pareto_rank"] == 1 and r["feasible"] is True for r in shown)
    assert main(["results", asha_sweep.path, "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[:4] == ["trial_id", "status", "pareto_rank", "feasible"]
    # Read live from Ray's files, the ranks agree with results.csv.
    live = read_sweep(asha_sweep.path).table().set_index("trial_id")
    again = load_results(asha_sweep.path).table.set_index("trial_id")
    assert (live["pareto_rank"] == again.loc[live.index, "pareto_rank"]).all()


def test_infeasible_trials_rank_after_every_feasible_one(constrained_sweep):
    table = constrained_sweep.table
    assert len(table) == 12
    within = table["cost"] <= 0.8
    assert (table["feasible"] == within).all()
    assert within.any() and (~within).any()
    assert table[within]["pareto_rank"].max() < table[~within]["pareto_rank"].min()
    rows = table[within].to_dict("records")
    assert front_of(table) == non_dominated(losses(rows))
    # Infeasible trials: the least over the bound first.
    over = table[~within].sort_values("pareto_rank")
    assert list(over["cost"]) == sorted(over["cost"])


def test_loggers_carry_every_objective(constrained_sweep):
    pytest.importorskip("mlflow")
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raytune_hpo.plan import loggers

    exp = Path(constrained_sweep.path)
    table = constrained_sweep.table.set_index("trial_id")
    for trial_id, row in table.iterrows():
        (events,) = [d for d in exp.iterdir() if trial_id in d.name][0].glob("events.out.*")
        acc = EventAccumulator(str(events))
        acc.Reload()
        for metric in ("acc", "cost"):
            last = acc.Scalars(f"ray/tune/{metric}")[-1]
            assert last.step == STEPS and last.value == pytest.approx(row[metric], rel=1e-6)
    mlflow.set_tracking_uri(loggers.mlflow_uri({}, str(exp)))
    runs = mlflow.search_runs(experiment_names=["constrained"])
    assert len(runs) == 12
    for metric in ("acc", "cost"):
        assert sorted(runs[f"metrics.{metric}"]) == pytest.approx(sorted(table[metric]))


def hypervolume_2d(points, ideal, ref) -> float:
    """The test's own 2-D hypervolume of ``points`` (to minimise) in the box scaled to 1."""
    scaled = sorted(
        tuple((p[j] - ideal[j]) / (ref[j] - ideal[j]) for j in range(2)) for p in points
    )
    area, best_y = 0.0, 1.0
    for x, y in scaled:
        if x < 1 and y < best_y:
            area += (1 - x) * (best_y - y)
            best_y = y
    return area


def test_the_report_draws_the_front_and_its_hypervolume(asha_sweep, constrained_sweep, tmp_path):
    out = tmp_path / "one"
    assert main(["report", constrained_sweep.path, "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<h2>Pareto front</h2>" in page and "alt='pareto_front.png'" in page
    assert "<h2>Hypervolume</h2>" in page and "reference point" in page
    table = constrained_sweep.table
    ok = table[table["feasible"]]
    pts = [(-a, c) for a, c in zip(ok["acc"], ok["cost"], strict=True)]
    ideal = (min(p[0] for p in pts), min(p[1] for p in pts))
    nadir = (max(p[0] for p in pts), max(p[1] for p in pts))
    ref = tuple(n + 0.1 * (n - i) for n, i in zip(nadir, ideal, strict=True))
    md = (out / "report.md").read_text()
    row = [line for line in md.split("## Hypervolume")[1].splitlines() if "constrained" in line]
    assert f"{hypervolume_2d(pts, ideal, ref):.4g}" in row[0]
    pixels = browser.screenshot(out / "report.html", tmp_path / "shot.png", height=2600)
    rgb = (pixels[..., :3] * 255).round().astype(int).reshape(-1, 3)
    front_red = (np.abs(rgb - (214, 39, 40)).sum(axis=1) < 30).sum()  # the front's colour
    assert front_red > 150, front_red

    both = tmp_path / "both"
    assert main(["report", asha_sweep.path, constrained_sweep.path, "--out", str(both)]) == 0
    page = (both / "report.html").read_text()
    assert "alt='pareto_front.png'" in page and "alt='hypervolume.png'" in page
    md = (both / "report.md").read_text().split("## Hypervolume")[1].split("##")[0]
    rows = [line for line in md.splitlines() if "moasha" in line or "constrained" in line]
    assert len(rows) == 2  # one hypervolume per sweep, in one box


def test_a_resumed_and_extended_sweep_keeps_its_front(ray_session, tmp_path):
    ended = tmp_path / "ended"
    ended.mkdir()
    config = {"interrupt": {"dir": str(ended), "after": 3, "pid": os.getpid()}}
    spec = spec_of(tmp_path, "resumed", n=10, max_concurrent=2, constraints={"size": {"max": 1.7}})
    spec = spec.with_fields(trainable={**spec.trainable, "config": config})
    with pytest.raises(Interrupted) as stopped:
        run_sweep(spec)
    exp = stopped.value.path
    assert len(list(ended.iterdir())) < 10  # interrupted before every trial ended
    result = resume(exp)
    table = result.table
    assert len(table) == 10 and table["trial_id"].is_unique
    assert (table["status"] == "OK").all()
    within = table["size"] <= 1.7
    assert (table["feasible"] == within).all()
    assert front_of(table) == non_dominated(losses(table[within].to_dict("records")))

    grown = extend(exp, num_samples=3)
    table = grown.table
    assert len(table) == 13 and table["trial_id"].is_unique
    within = table["size"] <= 1.7
    assert front_of(table) == non_dominated(losses(table[within].to_dict("records")))
    assert table[within]["pareto_rank"].max() < table[~within]["pareto_rank"].min()
    assert not math.isnan(table["acc"].max())
