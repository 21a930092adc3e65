"""Kill it anywhere: the kill harness's short run (``scripts/kill_harness.py --quick``) on one
Ray head of this module's: each searcher family's sweep SIGKILLed 3 times at seeded random
moments on local storage, twice on S3 (moto's server on loopback), and a searcher state cut
short on purpose in storage and in Ray's staging copy (which must resume from the resume
point); then every trial finished once, rows without repeats or gaps, the searchers'
observations the finished trials, Sobol on its sequence, and every resume free of tracebacks
(bohb and user-function sweeps among them: issue 39). With ``-m cluster``: a worker node of a
two-node loopback cluster killed mid-epoch. (A trial's worker killed: tests/test_snapshot.py,
and the long run of the harness.)"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sweep_procs import kill_group, load_file, ray_env, start_head, start_node

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "kill_harness.py"

pytestmark = pytest.mark.integration


def harness():
    return load_file(SCRIPT)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    env = ray_env(PYTHONPATH=str(ROOT))
    proc, address = start_head(env, tmp_path_factory.mktemp("head") / "head.log", cpus=8)
    yield env, address, proc
    kill_group(proc)


def test_the_short_kill_harness_loses_and_repeats_nothing(head, tmp_path):
    env, address, proc = head
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--address", address]
        + ["--head-pid", str(proc.pid), "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads((tmp_path / "kill-harness-quick.json").read_text())
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    cases = {c["case"]: c for c in report["cases"]}
    for case in cases.values():
        assert case["failures"] == [], case
        assert case["lost"] == 0 and case["repeated"] == 0, case
    quick = harness().QUICK
    assert all(cases[f"{fam}-local"]["kills"] == 3 for fam in quick), report
    assert cases["sobol-s3"]["kills"] == 2
    cut = cases["sobol-local"]  # its last kill cut the searcher state short as well
    assert cut["staged_copies_cut"] >= 1  # Ray's staging copy, cut too
    line = cut["after_the_cut"]
    assert "the resume point of" in line and "cut short" in line, line
    for case in cases.values():  # after each kill a resume, or a new run (nothing saved yet)
        assert case["resumes"] + case["restarts"] == case["kills"], case


def test_a_resume_refused_before_the_first_checkpoint_is_recognised(tmp_path):
    """A driver killed after Ray's first experiment state but before the searcher's: the
    resume refuses in one line (exit 2, start the sweep again), which the harness must tell
    from a sweep that ended, else the kills after it are lost (CI: the S3 case had 1 of 2)."""
    import types

    kh = harness()
    ctx = types.SimpleNamespace(
        args=kh.parse_args(["--quick"]), work=tmp_path, env=ray_env(), address="127.0.0.1:1"
    )
    case = kh.Case("sobol-local", "sobol", "local", "driver", 1, ctx)
    exp = Path(case.root) / "sobol-local_2026-12-07"
    exp.mkdir(parents=True)
    (exp / "sweep.yaml").write_text(case.sweep.read_text())
    (exp / "train.py").write_text(kh.TRAIN)
    (exp / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    (exp / "experiment_state-2026-12-07_16-00-00.json").write_text("{}")
    assert case._find_exp() == str(exp)
    assert case._refused(case.driver("resume", str(exp)))  # before any Ray is reached
    assert case.exp is None and case.refused == 1
    (exp / "trial_0").mkdir()  # a trial had reported: starting again would lose its row
    (exp / "trial_0" / "result.json").write_text('{"score": 1.0}\n')
    assert not case._refused(case.driver("resume", str(exp)))
    assert case.refused == 1


def _status(env: dict, address: str) -> str:
    from sweep_procs import RAY

    run = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True)
    return run.stdout.decode(errors="replace")


@pytest.mark.cluster
def test_a_worker_node_killed_mid_epoch_costs_its_trials_an_epoch(tmp_path):
    """Trials running on a node that dies come back from their checkpoints on the node left
    (``max_failures``), and the tally holds."""
    kh = harness()
    env = ray_env(PYTHONPATH=str(ROOT))
    head, address = start_head(env, tmp_path / "head.log", cpus=1)
    worker_tmp = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # another machine's disk; short
    node = {}

    def start_worker():
        node["proc"] = start_node(
            [
                f"--address={address}",
                "--node-ip-address=127.0.0.2",
                "--num-cpus=1",
                f"--temp-dir={worker_tmp}",
            ],
            env,
            tmp_path / "worker.log",
        )

    try:
        start_worker()
        deadline = time.monotonic() + 120
        while "/2.0 CPU" not in _status(env, address):  # the worker node joined
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(1)
        ctx = kh.Context()
        ctx.args = kh.parse_args(["--samples", "4", "--steps", "6", "--timeout", "300"])
        ctx.work, ctx.env, ctx.address = tmp_path, env, address
        ctx.head, ctx.head_pid = head, head.pid
        ctx.node_pid = lambda: node["proc"].pid
        ctx.kill_node = lambda: kill_group(node["proc"])
        out = kh.Case("sobol-node", "sobol", "local", "node", 1, ctx).run()
    finally:
        kill_group(node["proc"])
        kill_group(head)
    assert out["kills"] == 1 and out["failures"] == [], out
    assert out["lost"] == 0 and out["repeated"] == 0
    # The one epoch the node's trial was in: cut while it ran, or finished and written to the
    # ledger but its report not yet with the driver when the node died (the ledger's "end"
    # comes before the report), so run again from the checkpoint before it.
    assert out["epochs_redone"] + out["epochs_cut"] <= 1, out
