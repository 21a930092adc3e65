"""BOHB and HyperBand on a real local Ray: brackets, and paused trials resumed from their
checkpoints. (BOHB sweeps killed and resumed, ray-project/ray#39900: the kill harness's bohb
family, tests/test_kill.py.)"""

import os
from pathlib import Path

import pytest
import yaml
from sweep_procs import trial_histories

from raytune_hpo.plan.assemble import assemble
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

pytestmark = pytest.mark.integration

SPECS = os.path.join(os.path.dirname(__file__), "..", "specs", "sweeps")
WIDTHS = {
    "c1": {"type": "int", "low": 2, "high": 32, "log": True},
    "c3": {"type": "int", "low": 4, "high": 64, "log": True},
    "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
}


def bohb_spec(tmp_path, **over):
    with open(os.path.join(SPECS, "bohb-digits.yaml")) as f:
        data = yaml.safe_load(f)
    data.update(storage_path=str(tmp_path / "results"), **over)
    return data


def test_bohb_digits_spec_runs_with_hyperband_brackets(ray_session, tmp_path):
    data = bohb_spec(tmp_path, num_samples=9)
    spec = SweepSpec.from_dict(data)
    plan = assemble(spec)
    assert plan.searcher_name == "bohb" and plan.scheduler_name == "bohb"
    result = run_sweep(spec)
    df = result.table
    assert len(df) == 9 and (df["status"] == "OK").all()
    assert df["epochs"].max() == 9  # the top rung is the sweep's epochs
    assert df["epochs"].min() < 9  # HyperBandForBOHB stopped some at a lower budget
    assert result.best["val_accuracy"] > 0.9


def test_paused_trials_continue_from_their_checkpoint_epoch(ray_session, tmp_path):
    spec = SweepSpec.from_dict(
        {
            "name": "hb",
            "storage_path": str(tmp_path),
            "num_samples": 9,  # 2 CPUs run 2 at once; the bracket of 9 fills with pending ones
            "space": WIDTHS,
            "scheduler": {"name": "hyperband", "reduction_factor": 3},
            "trainable": {"model": "lenet5", "epochs": 9},
        }
    )
    result = run_sweep(spec)
    assert (result.table["status"] == "OK").all()
    histories = trial_histories(Path(result.path))
    resumed = 0
    for rows in histories.values():
        # Epoch numbers continue after a pause: epoch k is the trial's k-th iteration.
        assert [r["epoch"] for r in rows] == [r["training_iteration"] for r in rows]
        resumed += any(r["iterations_since_restore"] < r["training_iteration"] for r in rows)
    assert resumed >= 1  # at least one trial was paused and restored from its checkpoint


def test_median_threshold_rule_stops_on_the_windowed_loss(ray_session, tmp_path):
    spec = SweepSpec.from_dict(
        {
            "name": "med",
            "storage_path": str(tmp_path),
            "num_samples": 2,
            "space": {"lr": WIDTHS["lr"]},
            # The TinyVGG study's rule: mean val_loss of the last 2 epochs above 0.01 -> prune.
            "scheduler": {"name": "median", "threshold": 0.01, "window": 2, "grace_period": 99},
            "trainable": {"model": "mlp", "epochs": 6},
        }
    )
    df = run_sweep(spec).table
    assert (df["status"] == "OK").all()
    assert (df["epochs"] == 2).all()  # no MLP reaches val_loss 0.01 on digits in 2 epochs
