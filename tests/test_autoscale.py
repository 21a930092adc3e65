"""Scaling out, simulated on one machine: Ray's own autoscaler with its fake multi-node
provider (``ray.autoscaler._private.fake_multi_node``, what ``ray.cluster_utils.
AutoscalingCluster`` uses; its workers are local processes). The head has no GPU; the worker
node types are ``cluster/aws-gpu.yaml``'s GPU types with the CPUs and GPUs that file declares
(min 0 workers, at most 2), so the simulation cannot drift from the cloud config.

Sweeps go in with ``raytune-hpo submit``: GPU trials make the autoscaler add nodes, two
``gpu: 0.5`` trials share each node's GPU, idle nodes go away after the sweep; a node lost the
way a spot instance is lost (drained with Ray's preemption reason, then every process of it
killed) costs no trial and no retry; a trial that no node type can hold is refused with one
line before anything starts.

The head is started the way ``AutoscalingCluster.start`` starts it, but on ports, a temp dir
and an auth token of its own (``AutoscalingCluster`` runs ``ray stop --force``, which ends
every Ray on the machine). Only the processes this head started are ended: they carry its
temp dir in their environment. Waits are on conditions (nodes in Ray's state API, trial
results on disk), never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from autoscale_provider import IDLE_TIMEOUT_MIN, autoscaling_config
from sweep_procs import (
    RAY,
    _state_entries,
    carries,
    cmdline,
    descendants,
    experiment_dir,
    free_port,
    kill_pids,
    spot_drain,
    start_node,
    trial_histories,
)

from raytune_hpo.cli.commands import main
from raytune_hpo.jobs import client as jobs
from raytune_hpo.names import BUDGET_ATTR, RESULTS_CSV
from raytune_hpo.sweep.spec import SweepSpec

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 240


@dataclass
class Simulated:
    address: str  # the dashboard, for jobs and Ray's state API
    gcs: int
    env: dict
    head: subprocess.Popen

    def nodes(self) -> list[dict]:
        """Every node Ray's state API knows of, alive or dead (the token sent as the jobs
        client sends it: Ray's own client follows the auth mode it read at import)."""
        from ray.util.state import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        headers = {"Content-Type": "application/json", **jobs.auth_headers()}
        client = StateApiClient(address=self.address, headers=headers)
        options = ListApiOptions(detail=True, limit=1000)
        return [vars(n) for n in client.list(StateResource.NODES, options, True)]

    def trial_nodes(self, job: str) -> set[str]:
        """The nodes the job's trial actors ran on (Ray's state API)."""
        from ray.util.state import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        ray_job = jobs.status(job, address=self.address)["ray_job_id"]
        headers = {"Content-Type": "application/json", **jobs.auth_headers()}
        client = StateApiClient(address=self.address, headers=headers)
        options = ListApiOptions(detail=True, limit=10000, filters=[("job_id", "=", ray_job)])
        actors = [vars(a) for a in client.list(StateResource.ACTORS, options, True)]
        return {a["node_id"] for a in actors if "ImplicitFunc" in a["class_name"] and a["node_id"]}

    def workers(self, state: str = "ALIVE") -> list[dict]:
        return [n for n in self.nodes() if not n["is_head_node"] and n["state"] == state]

    def wait(self, condition, what: str, timeout: float = TIMEOUT_S, job: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if job and jobs.status(job, address=self.address)["status"] in jobs.TERMINAL:
                raise AssertionError(f"the job ended first: {self.logs(job)[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}: {self.logs(job)[-3000:]}")

    def logs(self, job: str | None) -> str:
        return jobs.logs(job, address=self.address) if job else ""

    def node_processes(self, node_id: str) -> list[int]:
        """The node's raylet and everything under it (its agents and workers)."""
        (raylet,) = [p for p in descendants(self.head.pid) if f"--node_id={node_id}" in cmdline(p)]
        return [raylet, *descendants(raylet)]

    def ray_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RAY, *args, f"--address=127.0.0.1:{self.gcs}"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("autoscale")
    ray_tmp = tempfile.mkdtemp(prefix="ra", dir="/tmp")  # short: Ray's socket paths
    gcs, dash = free_port(), free_port()
    config = tmp / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config(gcs)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=ray_tmp,
        RAY_FAKE_CLUSTER="1",
        AUTOSCALER_UPDATE_INTERVAL_S="1",
        # A dead node leaves the autoscaler's books after 10 s instead of 30.
        AUTOSCALER_HEARTBEAT_TIMEOUT_S="10",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        # The autoscaler imports its node provider from here (autoscale_provider).
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        # Notice a dead node within seconds instead of the default ~30 s.
        RAY_health_check_period_ms="1000",
        RAY_health_check_failure_threshold="5",
        RAY_health_check_timeout_ms="2000",
    )
    head = start_node(
        [
            "--head",
            f"--port={gcs}",
            "--num-cpus=1",
            "--num-gpus=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={free_port()}",
            f"--autoscaling-config={config}",
        ],
        env,
        tmp / "head.log",
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_TOKEN", env["RAY_AUTH_TOKEN"])  # what the jobs client sends
    mp.setenv("RAY_AUTH_MODE", "token")
    marker = f"RAY_TMPDIR={ray_tmp}"
    cluster = Simulated(f"http://127.0.0.1:{dash}", gcs, env, head)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                jobs.list_jobs(address=cluster.address)
                break
            except Exception:
                tail = (tmp / "head.log").read_text()[-2000:]
                assert time.monotonic() < deadline and head.poll() is None, tail
                time.sleep(1)
        yield cluster
    finally:
        ours = descendants(head.pid)
        ours += [int(p.name) for p in Path("/proc").glob("[0-9]*") if carries(p.name, marker)]
        kill_pids(set(ours) - {os.getpid()})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        mp.undo()


@pytest.fixture
def submit(sim):
    """``submit(spec)``: the sweep as a job on the simulated cluster; a job the test leaves
    running (it failed half-way) is stopped, so the next test starts from an idle cluster."""
    started = []

    def go(spec: SweepSpec) -> str:
        started.append(jobs.submit(spec, address=sim.address))
        return started[-1]

    yield go

    def ended(job):
        return jobs.status(job, address=sim.address)["status"] in jobs.TERMINAL

    for job in started:
        if not ended(job):
            jobs.stop(job, address=sim.address)
            sim.wait(lambda job=job: ended(job), "the job stopped", timeout=60)


def user_sweep(tmp_path: Path, name: str, **fields) -> Path:
    """A sweep of the user trainable ``train.py:train`` (a copy of autoscale_trainable.py in
    the sweep's folder, which submit ships to every node, those added later included) over x
    in 1..4 on a grid (the trials start in that order)."""
    (tmp_path / "train.py").write_text((HERE / "autoscale_trainable.py").read_text())
    config = {"steps": 3, "step_s": 0.2, "hold_at": 0, "hold_from": 99, "gate": ""}
    config.update(fields.pop("config", {}))
    sweep = {
        "name": name,
        "metric": "score",
        "mode": "max",
        "searcher": {"name": "grid"},
        "space": {"x": {"type": "int", "low": 1, "high": 4, "grid": [1, 2, 3, 4]}},
        "trainable": {
            "function": "train.py:train",
            "config": config,
            "metrics": ["score", "node", "gpus"],
        },
        "resources": {"cpu": 1, "gpu": 0.5},
        "storage_path": str(tmp_path / "shared"),  # one path every simulated node sees
        **fields,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def reported(exp: Path | None, step: int) -> dict[str, list[dict]]:
    """Per trial that has reported ``step``, its results so far."""
    if exp is None:
        return {}
    return {t: rows for t, rows in trial_histories(exp).items() if rows[-1][BUDGET_ATTR] >= step}


def say(capsys, text: str) -> None:
    with capsys.disabled():  # the figures quoted in the closing report
        print(f"\n{text}")


# First: it needs a cluster whose autoscaler has added nothing yet.
def test_a_trial_no_node_type_can_hold_is_refused_in_one_line(sim, tmp_path, capsys):
    sweep = user_sweep(tmp_path, "toobig", resources={"cpu": 1, "gpu": 8})
    rc = main(["submit", str(sweep), "--address", sim.address, "--wait"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAILED (exit code 2)" in out, out[-3000:]
    log = sim.logs(out.split("as job ")[1].split()[0])
    (line,) = [ln for ln in log.splitlines() if "raytune-hpo: error:" in ln]
    assert "resources.gpu: no node of this cluster offers" in line and "GPU 8" in line
    assert "gpu_1x CPU 4, GPU 1" in line and "gpu_4x CPU 48, GPU 4" in line, line
    assert "Traceback" not in log
    assert not sim.workers("ALIVE") and not sim.workers("DEAD")  # nothing was started
    (exp,) = (tmp_path / "shared").iterdir()
    assert not trial_histories(exp)  # no trial ran
    say(capsys, f"refused on the head before any trial: {line.strip()}")


def test_gpu_trials_grow_the_cluster_two_per_gpu_then_shrink_it(sim, submit, tmp_path, capsys):
    sim.wait(lambda: not sim.workers(), "no worker node")
    gate = tmp_path / "gate"
    config = {"hold_at": 1, "hold_from": 0, "gate": str(gate)}  # every trial holds at step 1
    sweep = user_sweep(tmp_path, "grow", num_samples=4, max_concurrent=4, config=config)
    start = time.time()
    job = submit(SweepSpec.from_yaml(sweep))
    storage = tmp_path / "shared"
    # All four trials run at once: four half-GPU trials need two one-GPU nodes.
    running = sim.wait(
        lambda: len(r := reported(experiment_dir(storage), 1)) == 4 and r, "4 trials", job=job
    )
    up = sim.workers()
    gate.touch()
    info = jobs.follow(job, address=sim.address, out=lambda s: None)
    log = sim.logs(job)
    assert info["status"] == "SUCCEEDED", log[-3000:]
    # Not refused: the sweep was told it waits for the autoscaler, and it did.
    assert "trials wait for the autoscaler to add one" in log, log[-3000:]
    exp = experiment_dir(storage)
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 4 and (df["status"] == "OK").all() and (df["epochs"] == 3).all()
    per_node = Counter(rows[0]["node"] for rows in running.values())
    workers = {n["node_id"]: n for n in up}
    assert len(up) == 2 and set(per_node) == set(workers), (per_node, workers)
    assert all(n["resources_total"]["GPU"] == 1 for n in up)  # gpu_1x, as aws-gpu.yaml says
    assert all(n["resources_total"]["CPU"] == 4 for n in up)
    assert sorted(per_node.values()) == [2, 2]
    assert {rows[0]["gpus"] for rows in running.values()} == {"0"}  # both on the node's GPU
    # Idle, the added nodes are removed (idle_timeout_minutes, shortened here).
    sim.wait(lambda: not sim.workers(), "the added nodes removed")
    last = {}  # per node, when its last trial reported its last step
    for rows in trial_histories(exp).values():
        last[rows[0]["node"]] = max(last.get(rows[0]["node"], 0), rows[-1]["timestamp"])
    gone = {n["node_id"]: n for n in sim.nodes() if n["node_id"] in workers}
    idle = {k[-5:]: round(n["end_time_ms"] / 1000 - last[k], 1) for k, n in gone.items()}
    assert all(s >= IDLE_TIMEOUT_MIN * 60 - 1 for s in idle.values()), idle  # idle, not early
    ups = {n["node_id"][-5:]: round(n["start_time_ms"] / 1000 - start, 1) for n in up}
    say(
        capsys,
        f"scale-up: nodes up (s after submit) {ups}; trials per node "
        f"{ {k[-5:]: v for k, v in per_node.items()} } on GPU ids {{'0'}}; nodes down after "
        f"(s idle) {idle}",
    )


def test_a_preempted_node_loses_no_trial_and_costs_no_retry(sim, submit, tmp_path, capsys):
    """Trials x=1, 2 finish on the first node; x=3, 4 hold their step-2 checkpoints there when
    the node is lost as a spot instance is (drained with Ray's preemption reason, as
    cluster/spot_drain.py does on the cloud's notice, then every process of it killed). With
    ``max_failures: 0`` they still continue from step 2 on a node the autoscaler adds: Ray
    tells the preemption from a crash and Tune does not count it."""
    sim.wait(lambda: not sim.workers(), "no worker node")
    gate = tmp_path / "gate"
    config = {"steps": 4, "hold_at": 2, "hold_from": 3, "gate": str(gate)}
    sweep = user_sweep(tmp_path, "spot", max_concurrent=2, max_failures=0, config=config)
    job = submit(SweepSpec.from_yaml(sweep))
    storage = tmp_path / "shared"

    def held():
        exp = experiment_dir(storage)
        holding = {t: r for t, r in reported(exp, 2).items() if r[0]["config"]["x"] >= 3}
        return len(holding) == 2 and len(reported(exp, 4)) == 2 and holding

    holding = sim.wait(held, "2 trials finished and 2 holding step 2", job=job)
    exp = experiment_dir(storage)
    before = trial_histories(exp)
    (lost,) = {rows[-1]["node"] for rows in holding.values()}
    # What cluster/spot_drain.py runs on the notice (here: the end in MARGIN_S + 1 s).
    notice = spot_drain().drain_command(spot_drain().MARGIN_S + 1, f"--node-id={lost}")
    assert notice[:2] == ["ray", "drain-node"]
    drain = sim.ray_cli(*notice[1:])
    assert drain.returncode == 0, drain.stdout + drain.stderr
    killed_at = time.time()
    kill_pids(sim.node_processes(lost))  # the instance is gone, with everything on it
    gate.touch()  # from here, a trial that goes on does so on another node
    info = jobs.follow(job, address=sim.address, out=lambda s: None)
    log = sim.logs(job)
    assert info["status"] == "SUCCEEDED", log[-3000:]
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 4 and df["trial_id"].is_unique
    assert (df["status"] == "OK").all() and (df["epochs"] == 4).all()
    after = trial_histories(exp)
    for trial, rows in after.items():
        steps = [r[BUDGET_ATTR] for r in rows]
        assert steps == [1, 2, 3, 4], (trial, steps)  # none run twice, none lost
        if trial not in holding:
            assert rows == before[trial]  # finished before the loss: untouched
    (dead,) = [n for n in sim.nodes() if n["node_id"] == lost]
    assert dead["state"] == "DEAD" and "preempt" in (dead.get("state_message") or "").lower()
    retried = {}
    for trial in holding:
        rows = after[trial]
        assert {r["node"] for r in rows[:2]} == {lost}
        (new,) = {r["node"] for r in rows[2:]}
        assert new != lost and rows[2]["iterations_since_restore"] == 1  # from step 2's state
        retried[trial] = (rows[1][BUDGET_ATTR], rows[-1][BUDGET_ATTR], new)
    # Tune counted no failure: with max_failures 0 a counted one would have ended the trial.
    failures = {t["trial_id"]: m.get("num_failures", 0) for t, m in _state_entries(exp)}
    assert all(failures[t] == 0 for t in holding), failures
    newcomers = {n[2] for n in retried.values()}
    started = {n["node_id"]: n["start_time_ms"] / 1000 for n in sim.nodes()}
    assert all(started[n] > killed_at for n in newcomers)  # added after the loss
    added = min(started[n] for n in newcomers) - killed_at
    say(
        capsys,
        f"preemption: lost node {lost[-5:]}; trials {sorted(t[-5:] for t in holding)} at epoch "
        f"{sorted({v[0] for v in retried.values()})} before, finished at "
        f"{sorted({v[1] for v in retried.values()})} on node {sorted(n[-5:] for n in newcomers)}"
        f" (up {added:.1f} s after the loss); num_failures {[failures[t] for t in holding]}",
    )


# Last: see its docstring.
def test_fused_trials_of_the_builtin_trainable_share_an_added_gpu(sim, submit, tmp_path, capsys):
    """Two ``fused: 2`` trials of the built-in MLP on a node Ray gave a GPU but that has no
    CUDA: they train as one model on the CPU (``device: auto``) and the sweep succeeds. Last:
    it takes the GPU node the preemption test's sweep left (or one the autoscaler adds if
    that one went idle first), so no test waits for it to go."""
    sweep = {
        "name": "fused",
        "num_samples": 2,
        "max_concurrent": 2,
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "trainable": {"model": "mlp", "epochs": 2, "fused": 2},
        "resources": {"cpu": 1, "gpu": 0.5},
        "storage_path": str(tmp_path / "shared"),
    }
    job = submit(SweepSpec.from_dict(sweep))
    info = jobs.follow(job, address=sim.address, out=lambda s: None)
    log = sim.logs(job)
    assert info["status"] == "SUCCEEDED", log[-3000:]
    exp = experiment_dir(tmp_path / "shared")
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 2 and (df["status"] == "OK").all() and (df["epochs"] == 2).all()
    histories = trial_histories(exp)
    assert all(r["fused_members"] == 2 for rows in histories.values() for r in rows)
    # Both trials held half a GPU of one node the autoscaler added (of either GPU type).
    (node_id,) = sim.trial_nodes(job)
    (node,) = [n for n in sim.nodes() if n["node_id"] == node_id]
    assert not node["is_head_node"] and node["resources_total"].get("GPU", 0) >= 1
    gpus = node["resources_total"]["GPU"]
    say(capsys, f"fused: 2 trials as one model on node {node_id[-5:]} (GPU {gpus:g}), 0.5 each")
