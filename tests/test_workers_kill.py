"""A driver killed mid-sweep resumes its 2-rank trials from their last checkpoint (Ray
Train's, in the run named after the trial): its own Ray processes, so marked ``cluster``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.sweep_procs import kill_after, kill_group, start_run, trial_histories

HERE = Path(__file__).parent


@pytest.mark.cluster
def test_a_killed_driver_resumes_its_two_rank_trial_from_the_last_checkpoint(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "dp-kill",
                "metric": "score",
                "mode": "max",
                "num_samples": 1,
                "space": {"x": {"type": "categorical", "choices": [1.0]}},
                "trainable": {
                    "function": "dp_loop.py:train_loop",
                    "config": {"steps": 6, "pause": 1.0},
                },
                "workers": {"count": 2, "cpu": 0.5},
                "code_dir": str(HERE),
            }
        )
    )
    storage = tmp_path / "storage"
    proc = start_run(sweep, storage, tmp_path)
    try:
        exp = kill_after(proc, storage, results=2)
    finally:
        kill_group(proc)
    before = [r["score"] for r in next(iter(trial_histories(exp).values()))]
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    resumed = subprocess.run(
        [sys.executable, "-m", "raytune_hpo.cli", "resume", str(exp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    after = [r["score"] for r in next(iter(trial_histories(exp).values()))]
    assert after[-1] == 6.0  # rank 0's last step
    # continued after the last checkpointed step: no step trained twice from step 1 again
    assert after.count(1.0) == 1 and len(before) >= 2
    print(f"scores before the kill {before}, after resume {after}")
