"""`raytune-hpo results` on a sweep while it runs (from Ray's own files) and after it ends,
ranked by the last or the best reported epoch; JSON keeps every float exactly."""

import io
import json
import os
import signal
import time

import pandas as pd
import pytest
from sweep_procs import experiment_dir, kill_group, results_reported, start_run, trial_histories

from raytune_hpo.cli.commands import main
from raytune_hpo.results.table import RESULTS_CSV, load_results, read_sweep, to_json, trial_table
from raytune_hpo.sweep.spec import UserError

SWEEP = (
    "name: live\nnum_samples: 4\nmax_concurrent: 2\nseed: 1\nmetric: val_accuracy\nmode: max\n"
    "space: {lr: {type: float, low: 0.0005, high: 0.05, log: true}, "
    "dropout: {type: float, low: 0.0, high: 0.5}}\n"
    "trainable: {model: mlp, epochs: 3}\n"
)


def wait_for(condition, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended first (rc {proc.returncode})")
        time.sleep(0.2)
    raise AssertionError("the sweep made no progress in time")


@pytest.mark.integration
def test_results_while_the_sweep_runs_and_after(tmp_path, capsys):
    sweep = tmp_path / "live.yaml"
    sweep.write_text(SWEEP)
    storage = tmp_path / "out"
    proc = start_run(sweep, storage, tmp_path)
    try:
        wait_for(lambda: (e := experiment_dir(storage)) and results_reported(e) >= 1, proc)
        # Freeze the driver and its Ray: the sweep is certainly unfinished while we read it.
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            exp = experiment_dir(storage)
            assert not (exp / RESULTS_CSV).exists()
            seen = trial_histories(exp)
            assert main(["results", str(exp), "--format", "json"]) == 0
            out, err = capsys.readouterr()
            live = json.loads(out)
            assert "no results.csv yet" in err and err.count("\n") == 1
            reported = {tid: rows[-1] for tid, rows in seen.items()}
            assert {r["trial_id"] for r in live} >= set(reported)
            for r in live:
                if r["trial_id"] in reported:  # the newest epoch each trial has reported
                    last = reported[r["trial_id"]]
                    assert r["val_accuracy"] == last["val_accuracy"]
                    assert r["epochs"] == last["training_iteration"]
                    assert r["status"] in ("RUNNING", "OK", "PENDING")
            assert len(live) < 4 or any(r["status"] != "OK" for r in live)  # not all done
            assert main(["results", str(exp)]) == 0  # the table format too
            assert "trial_id" in capsys.readouterr().out
            # The report reads a running sweep too.
            assert main(["report", str(exp), "--out", str(tmp_path / "live-report")]) == 0
            page = (tmp_path / "live-report" / "report.html").read_text()
            assert "running or interrupted" in page and "learning_curves.png" in page
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=300) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_group(proc)
    capsys.readouterr()

    # Finished: the table is results.csv (by last); by best reads every epoch.
    assert (exp / RESULTS_CSV).is_file()
    assert main(["results", str(exp), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # finished: no note
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), pd.read_csv(exp / RESULTS_CSV))
    histories = trial_histories(exp)
    assert len(histories) == 4
    assert main(["results", str(exp), "--by", "best", "--format", "json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert len(best) == 4
    for r in best:
        rows = histories[r["trial_id"]]
        top = max(rows, key=lambda x: x["val_accuracy"])  # first of equals, as in the table
        assert r["val_accuracy"] == top["val_accuracy"]
        assert r["best_epoch"] == top["training_iteration"]
        assert r["epochs"] == rows[-1]["training_iteration"]
    ranked = [r["val_accuracy"] for r in best]
    assert ranked == sorted(ranked, reverse=True)
    # Read from Ray's files, by last, the table agrees with results.csv trial for trial.
    from_ray = read_sweep(exp).table("last").set_index("trial_id").sort_index()
    csv = pd.read_csv(exp / RESULTS_CSV).set_index("trial_id").sort_index()
    assert (from_ray["val_accuracy"] == csv["val_accuracy"]).all()
    assert (from_ray["epochs"] == csv["epochs"]).all()
    pd.testing.assert_series_equal(from_ray["config.lr"], csv["config.lr"])


def sweep_dir(tmp_path, rows):
    (tmp_path / "sweep.yaml").write_text(
        "name: p\nmetric: loss\nmode: min\nspace: {lr: {type: float, low: 1.0e-9, high: 1}}\n"
    )
    pd.DataFrame(rows).to_csv(tmp_path / RESULTS_CSV, index=False)
    return tmp_path


def test_json_keeps_full_float_precision(tmp_path, capsys):
    lr, loss = 1.2345678901e-05, 0.1 + 0.2  # pandas' to_json printed 0.0000123457 and 0.3
    d = sweep_dir(
        tmp_path,
        [
            {"trial_id": "a", "status": "OK", "epochs": 1, "loss": loss, "config.lr": lr},
            {"trial_id": "b", "status": "OK", "epochs": 1, "loss": 7e-300, "config.lr": 3e-9},
            {"trial_id": "c", "status": "ERROR", "epochs": 0, "loss": None, "config.lr": 0.5},
        ],
    )
    assert main(["results", str(d), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["trial_id"] for r in rows] == ["b", "a", "c"]  # min loss first, failures last
    assert rows[1]["config.lr"] == lr and rows[1]["loss"] == loss
    assert rows[0]["loss"] == 7e-300 and rows[0]["config.lr"] == 3e-9
    assert rows[2]["loss"] is None  # NaN as null: still valid JSON
    assert json.loads(to_json(pd.DataFrame({"x": [float("inf")]})))[0]["x"] is None


def test_a_trial_interrupted_before_it_got_its_config_is_pending():
    from ray.tune import Result

    from raytune_hpo.results.table import results_table
    from raytune_hpo.sweep.spec import SweepSpec

    spec = SweepSpec.from_dict({"space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1}}})
    metrics = {"trial_id": "a", "training_iteration": 2, "val_accuracy": 0.5}
    metrics["config"] = {"lr": 0.01}
    ran = Result(metrics=metrics, checkpoint=None, error=None, path="/x/a")
    pending = Result(metrics={}, checkpoint=None, error=None, path="/x/train_b")  # no config
    table = results_table([pending, ran], spec).set_index("trial_id")
    assert table.loc["a", "status"] == "OK" and table.loc["a", "config.lr"] == 0.01
    assert table.loc["train_b", "status"] == "PENDING" and table.loc["train_b", "epochs"] == 0


def test_best_and_last_from_histories_nan_is_worst():
    trials = pd.DataFrame(
        [
            {"trial_id": "a", "ray_status": "TERMINATED", "config.lr": 0.1},
            {"trial_id": "b", "ray_status": "RUNNING", "config.lr": 0.2},
            {"trial_id": "c", "ray_status": "ERROR", "config.lr": 0.3, "error": "boom"},
        ]
    )
    history = pd.DataFrame(
        {
            "trial_id": ["a", "a", "a", "b", "b", "c"],
            "training_iteration": [1, 2, 3, 1, 2, 1],
            "loss": [0.5, 0.2, 0.4, float("nan"), 0.3, 0.01],
            "time_total_s": [1.0, 2.0, 3.0, 1.0, 2.0, 1.0],
        }
    )
    last = trial_table(trials, history, "loss", "min", "last").set_index("trial_id")
    best = trial_table(trials, history, "loss", "min", "best").set_index("trial_id")
    assert last.loc["a", "loss"] == 0.4 and best.loc["a", "loss"] == 0.2
    assert best.loc["a", "best_epoch"] == 2 and best.loc["a", "epochs"] == 3
    assert best.loc["b", "loss"] == 0.3 and best.loc["b", "best_epoch"] == 2  # NaN skipped
    assert last.loc["b", "status"] == "RUNNING" and last.loc["c", "status"] == "ERROR"
    assert last.loc["c", "error"] == "boom"
    # Failed trials go last whatever their value; the rest best first.
    assert list(best.index) == ["a", "b", "c"] and list(last.index) == ["b", "a", "c"]
    maxed = trial_table(trials, history, "loss", "max", "best").set_index("trial_id")
    assert maxed.loc["a", "loss"] == 0.5 and maxed.loc["a", "best_epoch"] == 1


def test_missing_or_foreign_directories_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="no such sweep directory"):
        load_results(tmp_path / "gone", by="best")
    with pytest.raises(UserError, match="no results.csv here"):
        load_results(tmp_path)
    with pytest.raises(UserError, match="--by worst"):
        load_results(tmp_path, by="worst")
