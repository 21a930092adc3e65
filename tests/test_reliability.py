"""Reliability: the concurrency limit holds for every searcher; Ctrl-C saves a sweep and says
how to resume it. (A searcher state lost or cut short: tests/test_snapshot.py; kills at any
moment: tests/test_kill.py.)"""

import json
import os
import time

import pytest
from ray import tune

from raytune_hpo.run.sweep import resume, run_sweep
from raytune_hpo.sweep.spec import SweepSpec

pytestmark = pytest.mark.integration


def make_watcher(where: str):
    """A trial that stays up to 3 s and reports how many trials it saw running at once."""

    def watcher(config):
        import uuid

        me = os.path.join(where, uuid.uuid4().hex)
        open(me, "w").close()
        most = 1
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and most < 2:
            most = max(most, len(os.listdir(where)))
            time.sleep(0.05)
        os.unlink(me)
        tune.report({"loss": config["x"], "most": most})

    return watcher


@pytest.mark.parametrize("searcher", ["random", "grid", "sobol"])
def test_max_concurrent_one_runs_one_trial_at_a_time(ray_session, tmp_path, searcher):
    where = tmp_path / "running"
    where.mkdir()
    spec = SweepSpec.from_dict(
        {
            "metric": "loss",
            "mode": "min",
            "num_samples": 3,
            "max_concurrent": 1,
            "searcher": {"name": searcher},
            "space": {"x": {"type": "float", "low": 0, "high": 1, "grid": [0.1, 0.5, 0.9]}},
            "storage_path": str(tmp_path / "out"),
        }
    )
    result = run_sweep(spec, trainable=make_watcher(str(where)))
    assert len(result.table) == 3 and (result.table["status"] == "OK").all()
    # Two CPUs were free: without the limit a second trial starts within the 3 s.
    most = [
        json.loads(line)["most"]
        for p in (tmp_path / "out").glob("*/*/result.json")
        for line in p.read_text().splitlines()
    ]
    assert most and max(most) == 1, f"{searcher}: {max(most)} trials ran at once"


SLOW_SWEEP = {
    "name": "ctrlc",
    "metric": "score",
    "mode": "max",
    "num_samples": 6,
    "max_concurrent": 2,
    "searcher": {"name": "sobol"},
    "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
    "trainable": {"function": "slow.py:train"},
}
# Six epochs of half a second, each checkpointed: a sweep a Ctrl-C lands in the middle of.
SLOW = """
import time

import raytune_hpo


def train(config):
    state = raytune_hpo.restore_state() or {"epoch": 0}
    for epoch in range(state["epoch"] + 1, 7):
        time.sleep(0.5)
        raytune_hpo.report({"score": epoch * config["lr"]}, state={"epoch": epoch})
"""


def test_ctrl_c_saves_the_sweep_and_says_how_to_resume(ray_session, tmp_path):
    import signal

    import yaml
    from sweep_procs import results_reported, start_run, wait_for

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SLOW_SWEEP))
    (tmp_path / "slow.py").write_text(SLOW)
    storage = tmp_path / "out"
    proc = start_run(path, storage, tmp_path)
    exp = wait_for(lambda: results_reported(storage) >= 4 and storage, proc)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=300)
    log = (tmp_path / "driver.log").read_text()
    (exp,) = storage.iterdir()
    assert rc == 130, log[-3000:]
    assert f"raytune-hpo: interrupted; continue it with: raytune-hpo resume {exp}" in log
    assert "Traceback" not in log
    result = resume(exp)  # the saved state continues: every trial ends, none twice
    assert len(result.table) == 6 and (result.table["epochs"] == 6).all()


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    import signal

    import yaml
    from sweep_procs import kill_group, results_reported, start_run, wait_for

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SLOW_SWEEP))
    (tmp_path / "slow.py").write_text(SLOW)
    storage = tmp_path / "out"
    proc = start_run(path, storage, tmp_path)
    try:
        wait_for(lambda: results_reported(storage) >= 1, proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # the second Ctrl-C of an impatient user
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        rc = proc.wait(timeout=120)
        took = time.monotonic() - start
    finally:
        kill_group(proc)
    log = (tmp_path / "driver.log").read_text()
    assert rc == 130, log[-3000:]
    assert "raytune-hpo: interrupted" in log and "Traceback" not in log
    assert took < 60, f"{took:.0f} s after the second Ctrl-C"


def test_a_local_run_says_what_matters_and_no_more(tmp_path):
    import subprocess
    import sys
    import tempfile

    import yaml

    sweep = {
        "num_samples": 1,
        "searcher": {"name": "tpe"},
        "scheduler": {"name": "asha"},  # a real warning: TPE compares mixed budgets
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "trainable": {"model": "mlp", "epochs": 1},
        "storage_path": str(tmp_path / "out"),
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rq", dir="/tmp")}
    proc = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Token authentication is enabled" not in proc.stderr
    assert "Wrote the latest version of all result files" not in proc.stderr
    assert "raytune-hpo: warning: searcher tpe under scheduler asha" in proc.stderr
    assert "Best configuration" in proc.stdout
