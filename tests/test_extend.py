"""Growing a finished sweep: `raytune-hpo extend` runs more trials with the same searcher,
which continues its sequence, and every command then covers all trials."""

from __future__ import annotations

import json

import pytest

from raytune_hpo.cli.commands import main
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

TRAIN = """
from ray import tune


def train(config):
    for step in range(1, 3):
        tune.report({"score": -((config["x"] - 0.3) ** 2) + step})
"""


def _spec(tmp_path, searcher: str, n: int, where: str) -> SweepSpec:
    (tmp_path / "train.py").write_text(TRAIN)
    data = {
        "name": f"grow-{searcher}",
        "metric": "score",
        "mode": "max",
        "seed": 3,
        "num_samples": n,
        "max_concurrent": 1,  # a sequence in order: the extension must continue it exactly
        "searcher": {"name": searcher},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trainable": {"function": "train.py:train"},
        "storage_path": str(tmp_path / where),
    }
    return SweepSpec.from_dict(data, base_dir=str(tmp_path))


@pytest.mark.parametrize("searcher", ["sobol", "random"])
def test_an_extended_sweep_continues_its_searchers_sequence(
    ray_session, tmp_path, capsys, searcher
):
    first = run_sweep(_spec(tmp_path, searcher, 3, "grown"))
    assert main(["extend", first.path, "--num-samples", "3"]) == 0
    assert f"Results: {first.path}" in capsys.readouterr().out
    once = run_sweep(_spec(tmp_path, searcher, 6, "once"))
    capsys.readouterr()  # the sweeps' own output

    assert main(["results", first.path, "--format", "json"]) == 0
    grown = json.loads(capsys.readouterr().out)
    assert len(grown) == 6 and len({r["trial_id"] for r in grown}) == 6
    assert all(r["status"] == "OK" and r["epochs"] == 2 for r in grown)
    assert sorted(r["config.x"] for r in grown) == sorted(once.table["config.x"])
    assert main(["results", first.path, "--by", "best", "--format", "json"]) == 0  # Ray's files
    assert len(json.loads(capsys.readouterr().out)) == 6
    copy = SweepSpec.from_yaml(f"{first.path}/sweep.yaml")
    assert copy.num_samples == 6


def test_extend_refuses_what_it_cannot_grow(ray_session, tmp_path, one_line_error):
    one_line_error(["extend", str(tmp_path), "--num-samples", "2"], "no sweep.yaml here")
    spec = _spec(tmp_path, "sobol", 2, "g").with_fields(
        searcher={"name": "grid"},
        space={"x": {"type": "float", "low": 0, "high": 1, "grid": [0.5]}},
    )
    done = run_sweep(spec)
    one_line_error(
        ["extend", done.path, "--num-samples", "2"], "searcher: a grid sweep runs its grid once"
    )
    one_line_error(["extend", done.path, "--num-samples", "0"], "--num-samples: must be >= 1")
