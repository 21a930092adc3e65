"""At scale: a many-trial sweep's counts and statuses are exact in every command, running a
sweep imports only the searcher it names (and no torch, tensorboardX or MLflow in the driver),
and the cheap-trials benchmark writes its JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from raytune_hpo.cli.commands import main
from raytune_hpo.run.sweep import run_sweep
from raytune_hpo.sweep.spec import SweepSpec

NOOP = """
from ray import tune


def noop(config):
    tune.report({"score": config["x"]})
"""
N = 260  # past the report's 200 curves, and its other limits as this test sets them
LINES, FANOVA = 240, 230  # the parallel coordinates' lines, fANOVA's sample (500, 1,000)


def test_a_many_trial_sweep_is_counted_exactly_everywhere(
    ray_session, tmp_path, capsys, monkeypatch
):
    """Every command counts each trial once, and the report aggregates beyond its limits
    (lowered here so that a sweep of N trials, not thousands, passes all three)."""
    import raytune_hpo.results.curves as curves
    import raytune_hpo.results.report as report

    assert N > curves.MAX_CURVES and N > LINES and N > FANOVA
    monkeypatch.setattr(curves, "MAX_PARALLEL", LINES)
    monkeypatch.setattr(report, "MAX_IMPORTANCE_TRIALS", FANOVA)
    (tmp_path / "noop.py").write_text(NOOP)
    spec = SweepSpec.from_dict(
        {
            "name": "many",
            "metric": "score",
            "mode": "max",
            "num_samples": N,
            "searcher": {"name": "random"},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "trainable": {"function": "noop.py:noop"},
            "resources": {"cpu": 0.5},
            "storage_path": str(tmp_path / "runs"),
        },
        base_dir=str(tmp_path),
    )
    exp = run_sweep(spec).path
    capsys.readouterr()
    csv = pd.read_csv(Path(exp) / "results.csv")
    assert len(csv) == N and csv["trial_id"].is_unique and (csv["status"] == "OK").all()
    assert main(["results", exp, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == N and all(r["status"] == "OK" and r["epochs"] == 1 for r in rows)
    assert main(["results", exp, "--by", "best", "--format", "json"]) == 0  # Ray's own files
    live = json.loads(capsys.readouterr().out)
    assert len(live) == N and {r["trial_id"] for r in live} == set(csv["trial_id"])
    assert main(["report", exp]) == 0
    page = (Path(exp) / "report.md").read_text()
    summary = re.search(r"\| *trials *\| *finished *\|.*\n.*\n(.*)", page).group(1)
    assert re.search(rf"\| *{N} *\| *{N} *\|", summary), f"not every trial counted: {summary}"
    assert "the best 20 are drawn one by one" in page and f"{LINES} lines are drawn" in page
    assert f"fANOVA on {FANOVA} trials' values of score (a seeded sample of the {N} trials" in page


def test_a_sweep_imports_only_the_searcher_it_names(tmp_path):
    """Assembling and building a sweep's searcher leaves the other searchers unimported, and
    handing Tune the built-in CNN imports no torch in the driver (its workers do)."""
    probe = textwrap.dedent(
        """
        import sys
        from raytune_hpo.plan.assemble import assemble
        from raytune_hpo.sweep.spec import SweepSpec
        spec = SweepSpec.from_dict({"searcher": {"name": "sobol"},
                                    "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1}},
                                    "trainable": {"model": "mlp"}})
        plan = assemble(spec)
        plan.searcher()
        plan.tune_trainable()
        print("torch" in sys.modules)
        print(sorted(m for m in sys.modules if m.startswith("raytune_hpo.searchers._")))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    *_, torch_imported, modules = out.stdout.strip().splitlines()
    assert torch_imported == "False", "the driver imported torch to name the trainable"
    loaded = eval(modules)  # noqa: S307 - our own probe's list
    assert "raytune_hpo.searchers._sobol" in loaded
    others = [m for m in loaded if m.rsplit("._", 1)[1] not in ("sobol", "base", "contract")]
    assert not others, f"imported without being named: {others}"


@pytest.mark.integration  # a Ray of its own in a fresh process
def test_a_sweep_of_a_user_function_imports_no_torch_tensorboardx_or_mlflow_in_the_driver(
    tmp_path,
):
    """Ray's automatic TensorBoard logger imports tensorboardX and with it torch; Ray's usage
    tag of the callbacks imports its MLflow integration and MLflow (docs/performance.md)."""
    pytest.importorskip("mlflow")  # without it the probe cannot see the tag's import
    (tmp_path / "noop.py").write_text(
        "from ray import tune\n\ndef noop(config):\n    tune.report({'score': config['x']})\n"
    )
    probe = textwrap.dedent(
        f"""
        import sys
        from raytune_hpo import SweepSpec, run_sweep
        spec = SweepSpec.from_dict({{
            "name": "imports", "metric": "score", "mode": "max", "num_samples": 2,
            "space": {{"x": {{"type": "float", "low": 0.0, "high": 1.0}}}},
            "trainable": {{"function": "noop.py:noop"}}, "storage_path": {str(tmp_path)!r},
        }}, base_dir={str(tmp_path)!r})
        result = run_sweep(spec, num_cpus=1)
        assert (result.table["status"] == "OK").all()
        print(sorted(m for m in ("torch", "tensorboardX", "mlflow") if m in sys.modules))
        """
    )
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as ray_tmp:  # short socket paths
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}
        env.pop("RAY_ADDRESS", None)
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
        )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.integration  # two processes, each with a Ray of its own
def test_the_cheap_trials_benchmark_writes_its_json(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_cheap.py"
    args = ["--slots", "2", "--rounds", "1", "--seconds", "0.1", "--noop", "", "--pairs", "1"]
    subprocess.run(
        [sys.executable, str(script), *args, "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (result,) = json.loads((tmp_path / "cheap-trials.json").read_text())["results"]
    assert result["trials"] == 2 and result["slots"] == 2 and result["pairs"] == 1
    for variant in ("bare", "ours"):
        (run,) = result["runs"][variant]
        assert run["wall_s"] > 0 and run["cpu_s"] > 0
        assert 1 <= run["trial_processes"] <= 2 <= run["worker_processes"]
    assert set(result["speedup_wall_s"]) == {"median", "q1", "q3"}
