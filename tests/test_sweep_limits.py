"""What a Ray Tune script says in RunConfig, a sweep file says: ``stop:`` criteria, ``fail_fast``
and ``checkpoints:`` (keep, score, order), checked before Ray starts, carried by ``submit``, and
run for real on the shared Ray with tiny user functions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from raytune_hpo.errors import SpecError
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.plan.stopping import StopCriteria
from raytune_hpo.sweep.spec import SweepSpec

# score = x * step grows; loss = 1 / score falls. `broken` raises until a file says it is fixed.
CODE = """
import os
import time

import raytune_hpo
from ray import tune


def climb(config):
    state = raytune_hpo.restore_state() or {"step": 0}
    for step in range(state["step"] + 1, config.get("steps", 8) + 1):
        time.sleep(config.get("pause", 0))
        score = config["x"] * step
        raytune_hpo.report({"score": score, "loss": 1 / score}, state={"step": step})


def broken(config):
    if not os.path.exists(config["fixed"]):
        raise ValueError("the trainable has a bug")
    for step in range(1, 3):
        tune.report({"score": config["x"] * step})
"""


def spec_of(tmp_path: Path, **fields) -> SweepSpec:
    (tmp_path / "limits.py").write_text(CODE)
    data = {
        "name": "limits",
        "metric": "score",
        "mode": "max",
        "num_samples": 4,
        "seed": 2,
        "space": {"x": {"type": "float", "low": 0.2, "high": 1.0}},
        "trainable": {"function": "limits.py:climb", "metrics": ["score", "loss"]},
        "resources": {"cpu": 0.5},
        "storage_path": str(tmp_path / "runs"),
        **fields,
    }
    return SweepSpec.from_dict(data, base_dir=str(tmp_path))


# ----------------------------------------------------------------------------- checked first
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stop": {"acc": 0.9}}, "stop.acc: 'acc' is not an objective of the sweep, so say which"),
        ({"stop": {"los": {"at_most": 0.1}}}, "stop.los: 'los' is not reported by the trainable; "
                                              "allowed: score, loss; did you mean 'loss'?"),
        ({"stop": {"score": {"above": 1}}}, "stop: score.above: unknown field; allowed: at_least"),
        ({"stop": {"score": "high"}}, "stop: score: 'high' is not a number"),
        ({"checkpoints": {"keep": 0}}, "checkpoints.keep: Input should be greater than or equal"),
        ({"checkpoints": {"keep": 1, "score": "acc"}}, "checkpoints.score: 'acc' is not reported"),
        ({"checkpoints": {"order": "max"}}, "checkpoints: order needs score"),
        ({"checkpoints": {"score": "loss"}}, "checkpoints: score chooses which checkpoints keep"),
        ({"fail_fast": {"share": 1.5}}, "fail_fast.share: Input should be less than 1"),
        ({"fail_fast": {"no_reslt": 2}}, "fail_fast.no_reslt: unknown field; allowed: no_result"),
    ],
)  # fmt: skip
def test_bad_limits_are_one_line_before_ray_starts(tmp_path, fields, message):
    with pytest.raises(SpecError) as e:
        assemble(spec_of(tmp_path, **fields))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_criteria_follow_each_objectives_mode_and_combine_as_rays():
    spec = SweepSpec.from_dict(
        {
            "metric": ["acc", "loss"],
            "mode": ["max", "min"],
            "stop": {
                "acc": 0.9,  # an objective under max: at least
                "loss": 0.2,  # under min: at most (Ray's own dict would say at least)
                "grad_norm": {"at_most": 1e-3},  # not an objective: says which way
                "training_iteration": 10,  # Ray's counter: at least
            },
        }
    )
    criteria = StopCriteria.of(spec)
    assert [str(c) for c in criteria.criteria] == [
        "acc >= 0.9",
        "loss <= 0.2",
        "grad_norm <= 0.001",
        "training_iteration >= 10",
    ]
    assert criteria.metrics == ["acc", "loss", "grad_norm"]
    assert criteria.reason({"acc": 0.5, "loss": 0.5, "training_iteration": 3}) is None
    assert criteria.reason({"acc": 0.5, "loss": 0.19}) == "loss 0.19 <= 0.2"  # any one: OR
    assert criteria.reason({"training_iteration": 10}) == "training_iteration 10 >= 10"
    assert criteria.reason({"acc": math.nan, "grad_norm": 1e-4}) == "grad_norm 0.0001 <= 0.001"


def test_fail_fast_true_is_rays_and_false_is_never():
    assert SweepSpec.from_dict({"fail_fast": True}).fail_fast.model_dump() == {
        "no_result": 1,
        "share": 0.0,
        "min_ended": 1,
    }
    off = SweepSpec.from_dict({"fail_fast": False}).fail_fast
    assert (off.no_result, off.share) == (0, None)
    assert SweepSpec.from_dict({}).fail_fast.no_result == 3  # the default


def test_the_fail_fast_rule_counts_failures(tmp_path):
    """The rule itself, on trial records (no Ray run): blank failures while nothing reported,
    and a share of failures once enough trials ended."""
    from types import SimpleNamespace

    from raytune_hpo.run.fail_fast import FailFast

    def trial(i, reported):
        return SimpleNamespace(
            trial_id=f"t{i}",
            last_result={"training_iteration": 2} if reported else {},
            error_file=None,
            get_error=lambda: "Traceback ...\nValueError: bad",
            storage=SimpleNamespace(
                storage_filesystem=None, trial_fs_path=f"/x/t{i}", experiment_fs_path="/x"
            ),
        )

    spec = SweepSpec.from_dict({"fail_fast": {"no_result": 2, "share": 0.5, "min_ended": 4}})
    ff = FailFast(spec.fail_fast, str(tmp_path))
    ff.on_trial_error(0, [], trial(0, False))
    assert ff.reason is None
    ff.on_trial_error(0, [], trial(1, False))
    assert ff.reason.startswith("the first 2 trial(s) failed before any trial reported")
    assert "t0: ValueError: bad (error file: " in ff.reason and "t0/error.txt)" in ff.reason

    ff = FailFast(spec.fail_fast, str(tmp_path))
    ff.on_trial_result(0, [], trial(0, True), {})  # the code runs: blank failures do not count
    for i, failed in enumerate([True, False, True, False]):
        (ff.on_trial_error if failed else ff.on_trial_complete)(0, [], trial(i, True))
    assert ff.reason is None  # 2 of 4: not more than half
    ff.on_trial_error(0, [], trial(5, True))
    assert ff.reason.startswith("3 of the 5 trials that ended failed (more than fail_fast.share")


def test_the_new_fields_reach_a_submitted_job(tmp_path, monkeypatch):
    """Through submit: the job's environment carries the sweep with its stop, fail_fast and
    checkpoints, and the job's ``raytune-hpo run --sweep-env`` reads them back."""
    import argparse

    from raytune_hpo.cli.common import load_spec
    from raytune_hpo.jobs.client import SWEEP_ENV, runtime_env

    spec = spec_of(
        tmp_path,
        stop={"score": 2.0, "loss": {"at_most": 0.5}, "training_iteration": 6},
        fail_fast={"no_result": 2, "share": 0.25},
        checkpoints={"keep": 1, "score": "loss", "order": "min"},
    )
    env = runtime_env(spec)["env_vars"]
    monkeypatch.setenv("SWEEP_JOB", env[SWEEP_ENV])
    monkeypatch.chdir(tmp_path)  # the job's working_dir: the sweep's folder
    args = argparse.Namespace(sweep=None, sweep_env="SWEEP_JOB", set=None)
    args.num_samples = args.storage_path = args.seed = None
    job = load_spec(args)
    assert (job.stop, job.fail_fast, job.checkpoints) == (
        spec.stop,
        spec.fail_fast,
        spec.checkpoints,
    )
    plan = assemble(job, local_data=False)
    config = plan.checkpoint_config()
    assert (config.num_to_keep, config.checkpoint_score_attribute) == (1, "loss")
    assert config.checkpoint_score_order == "min"
    assert [str(c) for c in plan.stop_criteria.criteria] == [
        "score >= 2",
        "loss <= 0.5",
        "training_iteration >= 6",
    ]


# ----------------------------------------------------------------------------- on Ray
@pytest.mark.integration
@pytest.mark.parametrize("scheduler", ["fifo", "asha"])
def test_trials_stop_at_a_threshold_or_an_iteration(ray_session, tmp_path, scheduler, capsys):
    """score = x * step; each trial stops at the first step where the objective reaches 2.4
    or at step 5, whichever comes first (asha may stop a trial earlier, never later)."""
    from raytune_hpo.cli.commands import main
    from raytune_hpo.results.live import read_sweep
    from raytune_hpo.results.report import endings
    from raytune_hpo.run.sweep import run_sweep

    sched = {"name": scheduler} if scheduler == "fifo" else {"name": "asha", "max_t": 8}
    stop = {"score": 2.4, "training_iteration": 5}
    if scheduler == "asha":  # the other way round: a min objective's threshold is at most
        stop = {"loss": {"at_most": 1 / 2.4}, "training_iteration": 5}
    result = run_sweep(spec_of(tmp_path, scheduler=sched, stop=stop))
    t = result.table
    assert (t["status"] == "OK").all() and len(t) == 4
    threshold = "score" if scheduler == "fifo" else "loss"
    for row in t.to_dict("records"):
        x = row["config.x"]
        due = min(5, math.ceil(2.4 / x - 1e-9))  # the first step meeting a criterion
        assert row["epochs"] == due if scheduler == "fifo" else row["epochs"] <= due, row
        if row["epochs"] == due:
            at_5 = due == 5 and 5 * x < 2.4
            assert row["stopped"].startswith("training_iteration 5" if at_5 else threshold), row
    capsys.readouterr()
    assert main(["results", result.path]) == 0
    assert "stopped" in capsys.readouterr().out
    ends = endings(read_sweep(result.path))
    assert (ends == "met stop").sum() == t["stopped"].notna().sum()


@pytest.mark.integration
def test_a_broken_trainable_fails_fast_and_resumes_after_the_fix(ray_session, tmp_path, capsys):
    from raytune_hpo.cli.commands import main
    from raytune_hpo.run.sweep import resume

    fixed = tmp_path / "fixed"
    spec = spec_of(
        tmp_path,
        num_samples=8,
        max_concurrent=2,
        trainable={"function": "limits.py:broken", "config": {"fixed": str(fixed)}},
    )
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(exclude_unset=True)))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("raytune-hpo: error: ") and "fail_fast: the first 3 trial(s)" in line
    assert "ValueError: the trainable has a bug (error file: " in line, line
    assert "raytune-hpo resume" in line
    error_file = line.split("(error file: ")[1].split(")")[0]
    assert Path(error_file).is_file()
    (exp,) = (tmp_path / "runs").iterdir()
    fixed.touch()  # the fix
    table = resume(exp).table
    assert len(table) == 8  # the whole budget
    assert 3 <= (table["status"] == "ERROR").sum() <= 4  # what failed before the stop
    assert (table["status"] == "OK").sum() >= 4


@pytest.mark.integration
def test_one_checkpoint_kept_survives_a_kill_and_resume(ray_session, tmp_path):
    from sweep_procs import kill_after, start_run

    from raytune_hpo.run.sweep import resume

    spec = spec_of(
        tmp_path,
        num_samples=2,
        checkpoints={"keep": 1},
        trainable={"function": "limits.py:climb", "config": {"steps": 12, "pause": 0.3}},
    )
    path = tmp_path / "keep1.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(exclude_unset=True)))
    storage = tmp_path / "killed"
    exp = kill_after(start_run(path, storage, tmp_path), storage, results=8, started=2)
    table = resume(exp).table
    assert (table["status"] == "OK").all() and (table["epochs"] == 12).all(), table
    for trial_dir in (p for p in exp.iterdir() if p.is_dir() and p.name.startswith("climb")):
        assert len(list(trial_dir.glob("checkpoint_*"))) == 1, sorted(trial_dir.iterdir())
