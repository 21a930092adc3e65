"""Real sweeps on a real local Ray (2 CPUs, shared), training on digits."""

import json
import sys
from contextlib import contextmanager

import pandas as pd
import pytest

from raytune_hpo.cli.commands import main
from raytune_hpo.results.table import RESULTS_CSV, load_results
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

pytestmark = pytest.mark.integration


def spec(tmp_path, **fields):
    base = {"name": "t", "storage_path": str(tmp_path), "seed": 0}
    return SweepSpec.from_dict({**base, **fields})


def test_asha_sweep_on_digits(ray_session, tmp_path):
    s = spec(
        tmp_path,
        num_samples=6,
        max_concurrent=2,
        space={
            "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64]},
        },
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
        trainable={"epochs": 4, "model": "tinyvgg"},
    )
    result = run_sweep(s)
    df = result.table
    assert len(df) == 6 and (df["status"] == "OK").all()
    assert df["config.lr"].between(1e-4, 3e-2).all()
    assert set(df["config.batch_size"]) <= {32, 64}
    assert df["epochs"].max() == 4 and df["epochs"].min() < 4  # ASHA stopped some early
    assert result.best["val_accuracy"] > 0.9
    assert df["val_accuracy"].is_monotonic_decreasing  # best first
    on_disk = pd.read_csv(f"{result.path}/{RESULTS_CSV}")
    assert list(on_disk["trial_id"]) == list(df["trial_id"])
    assert load_results(result.path).best_config == result.best_config
    # Ray's automatic TensorBoard logger is off unless `loggers` names it (and with it the
    # torch that importing tensorboardX costs the driver): each trial keeps its JSON and CSV.
    from pathlib import Path

    trials = [d for d in Path(result.path).iterdir() if d.is_dir() and "_" in d.name]
    assert len(trials) == 6 and all((d / "result.json").is_file() for d in trials)
    assert all((d / "progress.csv").is_file() for d in trials)
    assert not list(Path(result.path).rglob("events.out.tfevents.*"))


def test_kfold_sweep_reports_fold_mean_and_std(ray_session, tmp_path):
    s = spec(
        tmp_path,
        num_samples=2,
        metric="val_accuracy",
        space={"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        trainable={"epochs": 2, "k_folds": 3, "model": "mlp"},
    )
    df = run_sweep(s).table
    assert (df["status"] == "OK").all() and (df["epochs"] == 2).all()
    assert (df["val_accuracy_std"] > 0).all()


def test_grid_runs_every_point_and_a_diverging_trial_fails_alone(ray_session, tmp_path):
    s = spec(
        tmp_path,
        searcher={"name": "grid"},
        space={
            "lr": {"type": "float", "low": 1e-3, "high": 1e6, "log": True, "grid": [1e-3, 1e6]},
            "batch_size": {"type": "categorical", "choices": [32, 64]},
        },
        trainable={"epochs": 2, "model": "mlp", "optimizer": "sgd"},
    )
    result = run_sweep(s)
    df = result.table
    assert len(df) == 4
    assert set(zip(df["config.lr"], df["config.batch_size"], strict=True)) == {
        (a, b) for a in (1e-3, 1e6) for b in (32, 64)
    }
    failed = df[df["status"] == "ERROR"]
    assert set(failed["config.lr"]) == {1e6} and len(failed) == 2
    assert failed["error"].str.contains("diverged").all()
    assert result.num_errors == 2 and result.best["config.lr"] == 1e-3


def test_cli_run_then_results(ray_session, tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: cli\nnum_samples: 2\n"
        "space: {lr: {type: float, low: 0.001, high: 0.01, log: true}}\n"
        "trainable: {epochs: 1, model: mlp}\n"
    )
    rc = main(["run", str(sweep), "--storage-path", str(tmp_path), "--set", "seed=3"])
    out = capsys.readouterr().out
    assert rc == 0 and "Best configuration:" in out
    path = out.strip().splitlines()[-1].split("Results: ")[1]
    assert main(["results", path, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and all(0.001 <= r["config.lr"] <= 0.01 for r in rows)
    assert main(["results", path, "--format", "csv", "--top", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


@contextmanager
def calls_of(*functions):
    """How often each function is entered in this thread (by its code object: however the
    caller imported it)."""
    codes = {f.__code__: f.__qualname__ for f in functions}
    counts = dict.fromkeys(codes.values(), 0)

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            counts[codes[frame.f_code]] += 1

    sys.setprofile(profile)
    try:
        yield counts
    finally:
        sys.setprofile(None)


def test_run_and_resume_each_assemble_once_and_read_the_trainable_once(
    ray_session, tmp_path, capsys
):
    """One assembly per command: what the command announces is what runs; the trainable
    section is validated where the sweep file is read, not again by the run."""
    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.sweep.sections import parse_section
    from raytune_hpo.train import contract_of

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: once\nnum_samples: 2\nmax_concurrent: 2\n"
        "space: {lr: {type: float, low: 0.001, high: 0.01, log: true}}\n"
        "trainable: {epochs: 1, model: mlp}\n"
    )
    with calls_of(assemble, parse_section, contract_of) as run:
        assert main(["run", str(sweep), "--storage-path", str(tmp_path), "--seed", "1"]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1].split("Results: ")[1]
    assert run == {"assemble": 1, "parse_section": 1, "contract_of": 1}, run
    with calls_of(assemble, parse_section, contract_of) as resumed:
        assert main(["resume", path]) == 0
    assert resumed == {"assemble": 1, "parse_section": 1, "contract_of": 1}, resumed
    assert "resuming 'once': 2 trial(s)" in capsys.readouterr().out
