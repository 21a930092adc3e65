"""A sweep never hangs and never lies: resources refused before Ray starts, trials that hang
stopped and counted as failed with their reason, trials cut by the time budget shown as cut, and
a plug-in searcher written as Ray's documentation writes one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from raytune_hpo.results.table import load_results
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

# x < 0.2: reports once, then blocks (a dead data loader); 0.4 <= x < 0.6: keeps reporting for
# minutes; otherwise three quick results.
HANGING = """
import time

from ray import tune


def train(config):
    x = config["x"]
    tune.report({"score": x, "step": 1})
    if x < 0.2:
        time.sleep(3600)
    steps = 10_000 if 0.4 <= x < 0.6 else 2
    for step in range(2, 2 + steps):
        time.sleep(0.2)
        tune.report({"score": x + step, "step": step})
"""

# A plug-in written as Ray's custom-searcher example writes one: metric, mode and its own
# options in the constructor, no space, no set_search_properties; it proposes its own values
# and records what it is told in a file.
TOLD = """
import json

from ray.tune.search import Searcher


class Listed(Searcher):
    def __init__(self, metric=None, mode=None, values=(), record="told.jsonl"):
        super().__init__(metric=metric, mode=mode)
        self.values, self.record, self.given = list(values), record, {}

    def suggest(self, trial_id):
        if not self.values:
            return Searcher.FINISHED
        self.given[trial_id] = self.values.pop(0)
        return {"x": self.given[trial_id]}

    def on_trial_complete(self, trial_id, result=None, error=False):
        with open(self.record, "a") as f:
            f.write(json.dumps({"x": self.given.get(trial_id), "error": error}) + "\\n")
"""


def _sweep(tmp_path: Path, **fields) -> SweepSpec:
    (tmp_path / "train.py").write_text(HANGING)
    (tmp_path / "told.py").write_text(TOLD)
    data = {
        "metric": "score",
        "mode": "max",
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trainable": {"function": "train.py:train"},
        "storage_path": str(tmp_path / "runs"),
        **fields,
    }
    return SweepSpec.from_dict(data, base_dir=str(tmp_path))


@pytest.mark.parametrize(
    "resources, field",
    [({"cpu": 1, "gpu": 1}, "resources.gpu"), ({"cpu": 64}, "resources.cpu")],
)
def test_resources_the_machine_lacks_are_refused_before_anything_starts(
    ray_session, tmp_path, one_line_error, resources, field
):
    spec = _sweep(tmp_path, resources=resources)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(exclude_unset=True)))
    one_line_error(["run", str(path)], f"{field}: a trial asks for")
    assert not (tmp_path / "runs").exists(), "a sweep directory was made"


def test_hung_and_overlong_trials_end_as_failed_with_their_reason(ray_session, tmp_path):
    record = tmp_path / "told.jsonl"
    searcher = {"name": "told.py:Listed", "values": [0.1, 0.5, 0.9, 0.95], "record": str(record)}
    spec = _sweep(
        tmp_path,
        searcher=searcher,
        num_samples=4,
        max_concurrent=2,
        stall_timeout_s=3,
        trial_timeout_s=6,
    )
    result = run_sweep(spec)
    table = result.table.set_index("config.x")
    assert table.loc[0.1, "status"] == "ERROR" and table.loc[0.1, "error"].startswith("stalled")
    assert table.loc[0.5, "status"] == "ERROR" and table.loc[0.5, "error"].startswith("timeout")
    assert table.loc[0.5, "epochs"] > 10, "the overlong trial was not running until its timeout"
    assert (table.loc[[0.9, 0.95], "status"] == "OK").all(), "a slot never went to the next"
    told = {r["x"]: r["error"] for r in map(json.loads, record.read_text().splitlines())}
    assert told == {0.1: True, 0.5: True, 0.9: False, 0.95: False}
    again = load_results(result.path).table.set_index("config.x")  # results.csv, read back
    assert again.loc[0.1, "error"].startswith("stalled") and again.loc[0.9, "status"] == "OK"
    live = load_results(result.path, by="best").table.set_index("config.x")  # Ray's files
    assert live.loc[0.5, "error"].startswith("timeout") and live.loc[0.1, "status"] == "ERROR"


def test_trials_cut_by_the_time_budget_are_not_ok(ray_session, tmp_path):
    spec = _sweep(
        tmp_path,
        searcher={"name": "sobol"},
        num_samples=2,
        time_budget_s=8,
        space={"x": {"type": "float", "low": 0.4, "high": 0.59}},  # both run for minutes
    )
    table = run_sweep(spec).table
    assert len(table) == 2 and (table["status"] == "CUT").all(), table
    assert (table["epochs"] > 1).all(), "a trial had not run before the budget ran out"
    assert table["error"].str.startswith("time_budget: cut off").all()


def test_a_plugin_that_proposes_its_own_values_runs_and_its_strays_fail(ray_session, tmp_path):
    record = tmp_path / "told.jsonl"
    searcher = {"name": "told.py:Listed", "values": [0.9, 7.0, 0.95], "record": str(record)}
    table = run_sweep(_sweep(tmp_path, searcher=searcher, num_samples=3)).table
    assert sorted(table["status"]) == ["ERROR", "OK", "OK"]
    stray = table[table["status"] == "ERROR"].iloc[0]
    assert "outside the space: x: 7.0 lies outside [0, 1]" in stray["error"]
    told = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted((r["x"], r["error"]) for r in told) == [(0.9, False), (0.95, False), (7.0, True)]
