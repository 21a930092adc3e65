"""Population-based training (PBT, PB2) for a user's trainable and the built-in CNN: mutations
from the sweep's space, exploits recorded with trial ids, trials continued from the copied
weights, and one-line errors for what cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from raytune_hpo.cli.commands import main
from raytune_hpo.errors import SpecError
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

# Ray Tune's PBT toy problem, in our own words: accuracy grows fastest when the learning rate
# is near a best value that first rises with the accuracy reached, then falls; a learning rate
# more than 3x off makes it fall. No constant learning rate gets far: it takes a schedule.
TOY = """
import os
import time

import raytune_hpo


def advance(acc, lr):
    best = 0.01 * acc / 20 if acc < 20 else 0.01 - 0.01 * (acc - 20) / 20
    best = min(0.01, max(0.001, best))
    ratio = max(lr, best) / min(lr, best)
    return acc + 1 / ratio if ratio < 3 else max(0.0, acc - (ratio - 3) * 0.5)


def toy(config):
    state = raytune_hpo.restore_state() or {"step": 0, "acc": 0.0}
    acc = state["acc"]
    for step in range(state["step"] + 1, config.get("steps", 40) + 1):
        time.sleep(config.get("pause", 0))
        while step > config.get("hold_after", step) and not os.path.exists(config["hold"]):
            time.sleep(0.05)  # held until the test lets the sweep go on
        acc = advance(acc, config["lr"])
        raytune_hpo.report({"acc": acc, "lr": config["lr"]}, state={"step": step, "acc": acc})
"""


def fixed_rate(lr: float, steps: int = 40) -> float:
    """The toy's accuracy after ``steps`` at a constant ``lr``: the trial a FIFO sweep runs
    (deterministic; Ray adds nothing to it)."""
    scope: dict = {}
    exec(TOY.split("def toy(")[0].replace("import raytune_hpo", ""), scope)
    acc = 0.0
    for _ in range(steps):
        acc = scope["advance"](acc, lr)
    return acc


SILENT = """
from ray import tune


def silent(config):
    for step in range(1, 6):
        tune.report({"acc": step * config["lr"]})
"""


def toy_spec(tmp_path: Path, scheduler: dict | None, **fields) -> SweepSpec:
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "silent.py").write_text(SILENT)
    data = {
        "name": "toy",
        "metric": "acc",
        "mode": "max",
        "seed": 1,
        "num_samples": 8,
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "trainable": {"function": "toy.py:toy"},
        "resources": {"cpu": 0.25},
        "storage_path": str(tmp_path / "runs"),
        **fields,
    }
    if scheduler is not None:
        data["scheduler"] = scheduler
    return SweepSpec.from_dict(data, base_dir=str(tmp_path))


@pytest.mark.integration
def test_pbt_finds_a_schedule_that_fixed_rates_cannot(ray_session, tmp_path, capsys):
    from raytune_hpo.results.live import read_sweep

    pbt = run_sweep(toy_spec(tmp_path, {"name": "pbt", "perturbation_interval": 4}))
    assert sorted(pbt.table["status"].unique()) == ["OK"]
    # The same initial population at fixed rates (a FIFO sweep of the same seed): each trial's
    # first lr, the one the searcher gave it, kept for its 40 epochs.
    first = read_sweep(pbt.path).history.query("training_iteration == 1")
    assert len(first) == 8
    fifo = pd.Series([fixed_rate(lr) for lr in first["lr"]])
    assert pbt.table["acc"].mean() > fifo.mean() + 5, (pbt.table["acc"].describe(), fifo)
    assert pbt.table["acc"].max() > fifo.max()
    # What PBT did: exploits with trial ids, values inside the space's bounds.
    assert (pbt.table["exploits"] > 0).any()
    capsys.readouterr()
    assert main(["results", pbt.path, "--schedule", "--format", "json"]) == 0
    schedule = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert len(schedule) == pbt.table["exploits"].sum()
    ids = set(pbt.table["trial_id"])
    assert set(schedule["trial_id"]) <= ids and set(schedule["copied"]) <= ids
    assert schedule["config.lr"].between(1e-3, 1e-2).all(), schedule["config.lr"].describe()
    assert main(["report", pbt.path]) == 0
    page = (Path(pbt.path) / "report.md").read_text()
    assert "## Population-based training" in page and "pbt_schedule.png" in page


@pytest.mark.integration
def test_pb2_runs_on_the_sweeps_ranges(ray_session, tmp_path):
    spec = toy_spec(
        tmp_path,
        {"name": "pb2", "perturbation_interval": 5},
        num_samples=4,
        seed=2,
        trainable={"function": "toy.py:toy", "config": {"steps": 20}},  # 4 perturbations
    )
    result = run_sweep(spec)
    assert (result.table["status"] == "OK").all()
    assert (result.table["exploits"] > 0).any(), "PB2 never exploited"


@pytest.mark.integration
def test_the_cnn_under_pbt_continues_from_the_copied_weights(ray_session, tmp_path):
    spec = SweepSpec.from_dict(
        {
            "name": "cnn-pbt",
            "num_samples": 4,
            "seed": 0,
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 3e-1, "log": True}},
            "scheduler": {"name": "pbt", "perturbation_interval": 2, "quantile_fraction": 0.5},
            "trainable": {"model": "mlp", "epochs": 6},
            "storage_path": str(tmp_path / "runs"),
        }
    )
    result = run_sweep(spec)
    from raytune_hpo.results.live import read_sweep

    rec = read_sweep(result.path)
    assert not rec.schedule.empty, "no exploit recorded"
    h = rec.history
    # A trial that copies a donor's checkpoint of the last epoch (the donor ran ahead) has
    # nothing left to run: its rows end at that exploit.
    ended = {
        e["trial_id"]: e["training_iteration"]
        for e in rec.schedule.to_dict("records")
        if e["copied_at"] == 6
    }
    for tid, g in h.groupby("trial_id"):  # no trial's record lost lines when it restarted
        last = ended.get(tid, 6)
        assert set(range(1, last + 1)) <= set(g["training_iteration"]), (
            tid,
            sorted(g["training_iteration"]),
        )
        assert g["training_iteration"].max() == last, (tid, last)
    first = h[h["training_iteration"] == 1]["train_loss"].median()
    for e in rec.schedule.to_dict("records"):
        donor = h[(h["trial_id"] == e["copied"]) & (h["training_iteration"] == e["copied_at"])]
        after = h[
            (h["trial_id"] == e["trial_id"])
            & (h["training_iteration"] == e["copied_at"] + 1)
            & (h["config.lr"] == e["config.lr"])  # with the new value: after the exploit
        ]
        if donor.empty or after.empty:
            continue
        # the epoch after the exploit starts from the donor's weights: no restart from scratch
        assert after["train_loss"].iloc[0] < 0.7 * first
        assert after["train_loss"].iloc[0] < 1.5 * donor["train_loss"].iloc[0] + 0.05
        assert after["config.lr"].iloc[0] == pytest.approx(e["config.lr"])
        break
    else:
        pytest.fail("no exploit with both the donor's epoch and the next one recorded")


@pytest.mark.integration
def test_a_trainable_that_never_checkpoints_is_named_once(ray_session, tmp_path, capsys):
    spec = toy_spec(
        tmp_path,
        {"name": "pbt", "perturbation_interval": 2},
        num_samples=2,  # both reach a perturbation without one: named once
        trainable={"function": "silent.py:silent"},
    )
    run_sweep(spec)
    err = capsys.readouterr().err
    assert err.count("without a checkpoint, so PBT cannot copy it") == 1, err


def test_the_warning_is_for_a_trial_that_truly_has_no_checkpoint(capsys):
    """At the first perturbation: a function trainable whose checkpoint comes with that very
    result (Ray registers it after the scheduler) has one; a class Trainable is asked to save
    by PBT itself; only a function that reported none is named."""
    from types import SimpleNamespace

    from ray.tune import Trainable
    from ray.tune.trainable import FunctionTrainable

    from raytune_hpo.schedulers import create_scheduler
    from raytune_hpo.sweep.space import SearchSpace

    def check(cls, result, checkpoint=None) -> bool:
        space = SearchSpace.from_dict({"lr": {"type": "float", "low": 0.1, "high": 1.0}})
        pbt = create_scheduler(
            "pbt", metric="acc", mode="max", space=space, perturbation_interval=4
        )
        trial = SimpleNamespace(trial_id="t1", checkpoint=checkpoint, get_trainable_cls=lambda: cls)
        pbt._check_checkpoint(trial, {"training_iteration": 4, **result})
        return "without a checkpoint" in capsys.readouterr().err

    assert check(FunctionTrainable, {})
    assert not check(FunctionTrainable, {"should_checkpoint": True})
    assert not check(FunctionTrainable, {}, checkpoint=object())
    assert not check(Trainable, {})


@pytest.mark.integration
def test_an_interrupted_pbt_sweep_resumes_its_population(ray_session, tmp_path, capsys):
    """Ctrl-C through the command itself, in this process on the shared Ray (a driver process
    of its own started its own Ray, the slowest part of this test): Tune saves the state, the
    command exits 130, and the resumed population exploits again."""
    import os
    import signal
    import threading

    import yaml
    from sweep_procs import results_reported

    from raytune_hpo.results.live import read_schedule
    from raytune_hpo.run.sweep import resume

    go = tmp_path / "go"
    spec = toy_spec(
        tmp_path,
        {"name": "pbt", "perturbation_interval": 4},
        num_samples=4,
        # 16 epochs, each trial held after epoch 6 until the interrupt has landed, so the
        # exploits at 8, 12 and 16 all come after the resume however loaded the machine is
        trainable={
            "function": "toy.py:toy",
            "config": {"steps": 16, "pause": 0.05, "hold_after": 6, "hold": str(go)},
        },
    )
    path = tmp_path / "pbt.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(exclude_unset=True)))
    storage = tmp_path / "out"

    def interrupt():  # the trials are held: the sweep is still running when it lands
        while results_reported(storage) < 24:
            threading.Event().wait(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(["run", str(path), "--storage-path", str(storage)]) == 130
    finally:
        signal.signal(signal.SIGINT, handler)  # the command arms a second Ctrl-C to exit
    assert "interrupted; continue it with: raytune-hpo resume" in capsys.readouterr().err
    (exp,) = storage.iterdir()
    before = read_schedule(str(exp))
    go.touch()
    table = resume(exp).table
    assert len(table) == 4 and (table["status"] == "OK").all() and (table["epochs"] == 16).all()
    after = read_schedule(str(exp))
    assert len(after) > len(before), "no exploit after the resume"
    once_per_interval(after, 4)


def once_per_interval(schedule: pd.DataFrame, interval: int) -> None:
    """No trial exploited twice within one perturbation interval."""
    steps = list(zip(schedule["trial_id"], schedule["training_iteration"] // interval, strict=True))
    assert len(steps) == len(set(steps)), schedule[["trial_id", "training_iteration"]]


# A user function over a conditional space (momentum only under SGD) that checkpoints only at
# the perturbation steps; it fails at once if given a parameter that does not apply.
CONDITIONAL = """
import tempfile, json, os

from ray import tune


def cond(config):
    if ("momentum" in config) != (config["optimizer"] == "sgd"):
        raise ValueError(f"inactive or missing momentum: {config}")
    step, acc = 0, 0.0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "s.json")) as f:
            step, acc = json.load(f)
    for step in range(step + 1, 9):
        gain = 1.0 if config["optimizer"] == "sgd" else 0.5
        acc += gain * min(config["lr"], 0.01) * 100 + config.get("momentum", 0)
        if step % 2:
            tune.report({"acc": acc})
            continue
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump([step, acc], f)
            tune.report({"acc": acc}, checkpoint=tune.Checkpoint.from_directory(d))
"""


@pytest.mark.integration
def test_pbt_over_when_keeps_one_checkpoint_and_no_inactive_value(ray_session, tmp_path, capsys):
    """``when:``: no trial is given a parameter that does not apply (the trainable fails if
    it is) and the schedule records none; one exploit per trial per interval; with
    ``checkpoints.keep: 1`` exploits still find what they copy; and a checkpoint reported at
    the perturbation step is no reason for the no-checkpoint warning."""
    (tmp_path / "cond.py").write_text(CONDITIONAL)
    spec = toy_spec(
        tmp_path,
        {"name": "pbt", "perturbation_interval": 2, "quantile_fraction": 0.5},
        num_samples=3,
        seed=3,
        space={
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "momentum": {"type": "float", "low": 0.1, "high": 0.9, "when": {"optimizer": "sgd"}},
        },
        trainable={"function": "cond.py:cond"},
        checkpoints={"keep": 1},
    )
    result = run_sweep(spec)
    assert (result.table["status"] == "OK").all(), result.table.get("error")
    assert "without a checkpoint" not in capsys.readouterr().err
    from raytune_hpo.results.live import read_schedule

    schedule = read_schedule(result.path)
    assert len(schedule) > 0, "no exploit"
    sgd = schedule["config.optimizer"] == "sgd"
    momentum = schedule.get("config.momentum", pd.Series(float("nan"), index=schedule.index))
    assert momentum[sgd].notna().all() and momentum[~sgd].isna().all(), schedule
    once_per_interval(schedule, 2)
    for trial_dir in Path(result.path).glob("cond_*"):  # Ray kept one; copies were removed
        assert len(list(trial_dir.glob("checkpoint_*"))) <= 1, sorted(trial_dir.iterdir())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"searcher": {"name": "tpe"}}, "searcher.name: 'tpe' under scheduler pbt"),
        ({"searcher": {"name": "pso"}}, "allowed searchers for the initial population: random"),
        ({"scheduler": {"name": "pbt", "mutate": ["epochs"]}}, "mutate: 'epochs' cannot change"),
        ({"scheduler": {"name": "pbt", "mutate": ["nope"]}}, "'nope' is not a parameter of"),
        ({"scheduler": {"name": "pbt", "quantile_fraction": 0.8}}, "scheduler.quantile_fraction"),
        ({"scheduler": {"name": "pbt", "perturbation_interval": 0}}, "perturbation_interval: must"),
        ({"scheduler": {"name": "pb2", "mutate": ["momentum"]}}, "pb2 mutates int and float"),
        ({"scheduler": {"name": "pbt", "mutate": "lr"}}, "scheduler.mutate: a list"),
        ({"space": {"epochs": {"type": "int", "low": 2, "high": 4}}}, "finds no parameter"),
    ],
)  # fmt: skip
def test_population_based_training_refuses_what_cannot_work(fields, message):
    data = {
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "momentum": {"type": "categorical", "choices": [0.8, 0.9]},
            "epochs": {"type": "int", "low": 2, "high": 4},
        },
        "scheduler": {"name": "pbt"},
        "trainable": {"model": "mlp"},
        **fields,
    }
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        assemble(SweepSpec.from_dict(data))
