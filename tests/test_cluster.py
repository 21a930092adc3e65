"""A real two-node Ray cluster on loopback started with the launcher configs' own commands
(head 127.0.0.1 from cluster/aws-gpu.yaml, worker 127.0.0.2 from cluster/gcp-gpu.yaml, token
authentication on as they turn it on: tests/launcher.py), reached as cluster/README.md says
(the head's token copied to this machine's ~/.ray/auth_token); sweeps submitted through the Job
Submission API, secrets kept off every record, a worker node killed mid-sweep; and a local
driver killed with SIGKILL, then `resume`."""

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import launcher
import pandas as pd
import pytest
import requests
import yaml
from sweep_procs import (
    _state_entries,
    finished_trials,
    free_port,
    kill_after,
    kill_group,
    load_file,
    start_node,
    start_run,
    trial_histories,
    up_on_free_ports,
)

from raytune_hpo import ray_compat
from raytune_hpo.cli.commands import main
from raytune_hpo.errors import UserError
from raytune_hpo.jobs import client as jobs
from raytune_hpo.plan.assemble import assemble
from raytune_hpo.results.table import RESULTS_CSV, SPEC_COPY
from raytune_hpo.run.sweep import resume
from raytune_hpo.sweep.spec import SweepSpec
from raytune_hpo.testing import drive

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
JOB_COMMANDS = (["submit"], ["status", "job"], ["logs", "job"], ["stop", "job"], ["list"])


def cluster_env() -> dict:
    """The environment of a loopback cluster's nodes: a Ray temp dir and auth token of its own."""
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=ray_tmp,
        RAY_AUTH_MODE="token",  # as the launcher configs start their nodes
        # A token of the cluster's own: the test needs none in ~/.ray (a fresh CI machine
        # has none) and leaves the user's alone.
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        # The job's `python` is the cluster's: here, this venv's.
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return env


def head_args(gcs: int, dash: int) -> list[str]:
    return [
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--num-cpus=1",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={free_port()}",
    ]


def wait_for_dashboard(address: str, proc: subprocess.Popen, log: Path) -> None:
    """Until the dashboard answers at all (401 without a token counts)."""
    deadline = time.monotonic() + 180
    while True:
        try:
            requests.get(f"{address}/api/version", timeout=5)
            return
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(log.read_text()[-3000:]) from None
            time.sleep(1)


@pytest.fixture(scope="module", autouse=True)
def _ray_imported():
    """Ray's loggers keep the stderr of the moment Ray is imported: not a test's capsys, which
    closes after that test (every later log line would be a "Logging error")."""
    import ray  # noqa: F401


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    head = up_on_free_ports(
        lambda: launcher.start_head(tmp),
        lambda h: h.proc,
        lambda h: wait_for_dashboard(h.address, h.proc, tmp / "head.log"),
        tmp / "head.log",
    )
    worker = None
    # Ray's own CLI on the head (`ray list ...`): its token is in the head's home.
    env = {**head.env, "RAY_AUTH_MODE": "token"}
    try:
        worker = launcher.start_worker(head, tmp, ip="127.0.0.2")
        deadline = time.monotonic() + 120
        while _alive_nodes(env, head.gcs) < 2:
            log = (tmp / "worker-127.0.0.2.log").read_text()[-2000:]
            assert time.monotonic() < deadline and worker.poll() is None, log
            time.sleep(1)
        yield {
            "address": head.address,
            "tmp": tmp,
            "worker": worker,
            "env": env,
            "gcs": head.gcs,
            "head": head,
        }
    finally:
        if worker is not None:
            kill_group(worker)
        kill_group(head.proc)


@pytest.fixture
def laptop(cluster, tmp_path, monkeypatch):
    """This machine as cluster/README.md sets it up: the head's ~/.ray/auth_token copied to
    its own ~/.ray/auth_token (`ray rsync-down`), nothing else."""
    home = tmp_path / "laptop-home"
    (home / ".ray").mkdir(parents=True)
    shutil.copy(cluster["head"].token_file, home / ".ray" / "auth_token")
    monkeypatch.setenv("HOME", str(home))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return home


def _alive_nodes(env: dict, gcs: int) -> int:
    out = subprocess.run(
        [RAY, "list", "nodes", "--format=json", f"--address=127.0.0.1:{gcs}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        return sum(n.get("state") == "ALIVE" for n in json.loads(out.stdout))
    except json.JSONDecodeError:
        return 0


def job_trial_actors(cluster: dict, submission_id: str) -> list[dict]:
    """The job's trial actors as Ray's state API lists them (node_id, pid, ...)."""
    job = jobs.status(submission_id, address=cluster["address"])["ray_job_id"]
    out = subprocess.run(
        [
            RAY,
            "list",
            "actors",
            "--format=json",
            "--detail",
            "--limit=10000",
            f"--address=127.0.0.1:{cluster['gcs']}",
        ],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [
        a
        for a in json.loads(out.stdout)
        if a.get("job_id") == job
        and "ImplicitFunc" in a.get("class_name", "")
        and a.get("node_id")  # an actor Tune made and dropped before placing it has none
    ]


def job_trial_nodes(cluster: dict, submission_id: str) -> set[str]:
    """Ray node ids where the job's trial actors ran (both nodes share this host's IP, so a
    result's node_ip cannot tell them apart)."""
    return {a["node_id"] for a in job_trial_actors(cluster, submission_id)}


def epochs_on_node(node: subprocess.Popen, exp: Path | None) -> int:
    """The most results any trial has reported from a trial process of the node started as
    ``node`` (its process tree read from /proc at once: ``ray list actors`` takes seconds under
    load, and a short trial could end before the kill)."""
    if exp is None:
        return 0
    pids = set(load_file(ROOT / "scripts" / "kill_procs.py").trial_workers(node.pid))
    rows = [r for rs in trial_histories(exp).values() for r in rs if r.get("pid") in pids]
    return max((r["training_iteration"] for r in rows), default=0)


def node_id(cluster: dict, ip: str) -> str:
    out = subprocess.run(
        [RAY, "list", "nodes", "--format=json", f"--address=127.0.0.1:{cluster['gcs']}"],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (node,) = [n for n in json.loads(out.stdout) if n["node_ip"] == ip and n["state"] == "ALIVE"]
    return node["node_id"]


def worker_node_id(cluster: dict) -> str:
    return node_id(cluster, "127.0.0.2")


def head_node_id(cluster: dict) -> str:
    out = subprocess.run(
        [RAY, "list", "nodes", "--format=json", f"--address=127.0.0.1:{cluster['gcs']}"],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (node,) = [n for n in json.loads(out.stdout) if n["is_head_node"]]
    return node["node_id"]


def test_submit_wait_runs_the_quickstart_on_both_nodes(cluster, laptop, tmp_path, capsys):
    storage = tmp_path / "shared"  # one local path both nodes see (as NFS would be)
    start = time.perf_counter()
    rc = main(["submit", "--address", cluster["address"], "--wait", "--storage-path", str(storage)])
    took = time.perf_counter() - start
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, out[-3000:] + captured.err[-2000:]
    assert "SUCCEEDED (exit code 0)" in out
    job_id = out.split("as job ")[1].split()[0]
    assert len(job_trial_nodes(cluster, job_id)) == 2  # trials ran on both nodes
    (exp,) = storage.iterdir()
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 12 and (df["status"] == "OK").all()
    with capsys.disabled():  # the figure quoted in the closing note
        print(f"\nsubmit --wait of the quickstart on the two-node cluster: {took:.1f} s")
    assert main(["status", job_id, "--address", cluster["address"]]) == 0
    assert '"SUCCEEDED"' in capsys.readouterr().out
    assert main(["list", "--address", cluster["address"]]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["logs", job_id, "--address", cluster["address"]]) == 0
    assert "Best configuration" in capsys.readouterr().out


def one_line(capsys, argv: list[str], expected: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert err.startswith("raytune-hpo: error: ") and expected in err, (argv, err)
    return err.strip()


def test_the_cluster_refuses_whoever_lacks_its_token(cluster, tmp_path, monkeypatch, capsys):
    url = cluster["address"]
    token = cluster["head"].token_file.read_text().strip()
    # Ray's Jobs API itself: no token, 401; another token, 403; the head's token, 200.
    assert requests.get(f"{url}/api/jobs/", timeout=30).status_code == 401
    wrong = {"Authorization": f"Bearer {secrets.token_hex(16)}"}
    assert requests.get(f"{url}/api/jobs/", headers=wrong, timeout=30).status_code == 403
    right = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{url}/api/jobs/", headers=right, timeout=30).status_code == 200
    # The job commands: a machine with no token anywhere, then with another cluster's.
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    lines = {}
    for argv in JOB_COMMANDS:
        lines["none"] = one_line(capsys, [*argv, "--address", url], "none was found here")
        assert "RAY_AUTH_TOKEN" in lines["none"] and "RAY_AUTH_TOKEN_PATH" in lines["none"]
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    for argv in JOB_COMMANDS:
        lines["wrong"] = one_line(capsys, [*argv, "--address", url], "refused the auth token")
        assert "from RAY_AUTH_TOKEN " in lines["wrong"] and "RAY_AUTH_TOKEN_PATH" in lines["wrong"]
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    lines["path"] = one_line(capsys, ["list", "--address", url], "cannot be read or is empty")
    # The right token, named by RAY_AUTH_TOKEN_PATH: it is never sent over plain http to
    # another host (0.0.0.0 reaches this machine's dashboard, but is not loopback by name)
    # unless the user says so.
    shutil.copy(cluster["head"].token_file, tmp_path / "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    elsewhere = f"http://0.0.0.0:{cluster['head'].dash}"
    for argv in JOB_COMMANDS:
        lines["http"] = one_line(capsys, [*argv, "--address", elsewhere], "unencrypted over plain")
        assert "--allow-plain-http" in lines["http"]
    assert main(["list", "--address", elsewhere, "--allow-plain-http"]) == 0, capsys.readouterr()
    assert main(["list", "--address", url]) == 0
    capsys.readouterr()
    with capsys.disabled():  # quoted in the closing note
        print("\n" + "\n".join(f"{k}: {v}" for k, v in lines.items()))


def test_a_worker_without_the_token_does_not_join(cluster, tmp_path):
    """The worker config's own commands on a node that did not get the head's token, and a
    plain `ray start` (no auth mode, no token) pointed at the head's GCS: neither joins."""
    before = _alive_nodes(cluster["env"], cluster["gcs"])
    untokened = launcher.start_worker(cluster["head"], tmp_path, ip="127.0.0.3", sync=False)
    home = tmp_path / "plain-home"
    home.mkdir()
    plain_env = {**launcher.node_env(home), "RAY_NUM_REDIS_GET_RETRIES": "3"}  # give up soon
    plain = subprocess.Popen(
        [
            RAY,
            "start",
            "--block",
            f"--address=127.0.0.1:{cluster['gcs']}",
            "--node-ip-address=127.0.0.4",
            f"--temp-dir={tempfile.mkdtemp(prefix='rp', dir='/tmp')}",
            *launcher.agent_ports(),
        ],
        env=plain_env,
        stdout=open(tmp_path / "plain.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert untokened.wait(timeout=180) != 0
        assert plain.wait(timeout=180) != 0
    finally:
        kill_group(untokened)
        kill_group(plain)
    log = (tmp_path / "worker-127.0.0.3.log").read_text()
    assert "no authentication token was found" in log, log[-2000:]
    log = (tmp_path / "plain.log").read_text()
    assert "InvalidAuthToken" in log, log[-2000:]  # the GCS refused it
    assert _alive_nodes(cluster["env"], cluster["gcs"]) == before == 2


def test_unreachable_cluster_is_a_one_line_error(capsys):
    rc = main(["list", "--address", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no Ray dashboard answers" in err


def test_submit_to_a_head_whose_job_agent_cannot_bind_names_the_port(tmp_path, monkeypatch, capsys):
    """Another Ray on this machine holds the port of the head's job agent (here: a socket
    of the test's): Ray answers every submit with 'No available agent to submit job'.
    `submit` reads the head's agent log (under the head's temp dir) and says so in one line,
    with the port and the `ray start` flag that moves it, without waiting AGENT_WAIT_S."""
    env = cluster_env()
    log = tmp_path / "head.log"
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]

        def start():
            dash = free_port()
            return start_node(head_args(free_port(), dash), env, log, agent_port=port), dash

        head, dash = up_on_free_ports(
            start,
            lambda node: node[0],
            lambda node: wait_for_dashboard(f"http://127.0.0.1:{node[1]}", node[0], log),
            log,
        )
        try:
            monkeypatch.setenv("RAY_AUTH_TOKEN", env["RAY_AUTH_TOKEN"])
            address = f"http://127.0.0.1:{dash}"
            monkeypatch.setattr(jobs, "AGENT_WAIT_S", 120)
            start = time.monotonic()
            rc = main(["submit", "--address", address])
            took = time.monotonic() - start
            err = capsys.readouterr().err
            assert rc == 2 and "Traceback" not in err, err
            # Ray's lines on the package it uploads come first; ours is the last, alone.
            last = err.strip().splitlines()[-1]
            assert last.startswith(f"raytune-hpo: error: --address {address}: "), err
            assert f"cannot listen on port {port}" in last, err
            assert f"{ray_compat.AGENT_PORT_FLAG}=" in last, err
            log = last.rsplit("(its log: ", 1)[1].rstrip(")")
            assert log.startswith(env["RAY_TMPDIR"]) and Path(log).is_file(), last
            assert took < jobs.AGENT_WAIT_S  # it read the cause instead of waiting it out
            with capsys.disabled():
                print(f"\nport clash, after {took:.1f} s: {last}")
        finally:
            kill_group(head)


def test_killed_driver_then_resume_holds_exactly_the_uninterrupted_trials(ray_session, tmp_path):
    sweep = {
        "name": "killed",
        "num_samples": 6,
        "max_concurrent": 2,
        "searcher": {"name": "sobol"},
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
        "trainable": {"model": "mlp", "epochs": 5},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))  # key order = dimension order
    proc = start_run(path, tmp_path / "killed", tmp_path)
    exp = kill_after(proc, tmp_path / "killed", results=16)  # of 30: some done, some not
    done_before = finished_trials(exp)
    assert done_before, "no trial had finished before the kill: the check below would be empty"
    try:
        resumed = resume(exp).table
    except UserError as e:
        # A kill while Ray copied the searcher's state from its staging directory to storage
        # leaves it truncated (seen once under a load of 6): resume refuses it in one line
        # instead of restarting the experiment. Recovering it from the staging copy is not built.
        assert "saved state cannot be read" in str(e) and "\n" not in str(e), e
        pytest.skip(f"the kill truncated the searcher state's copy on storage: {e}")
    # The uninterrupted sweep's trials: Sobol's design does not depend on results, so the
    # sweep's own searcher, driven in process, proposes them (no second run on Ray).
    plan = assemble(SweepSpec.from_dict(sweep))
    reference = drive(plan.searcher(), 6, f=lambda cfg: 0.5, metric=plan.spec.metric)
    assert len(reference) == 6

    def configs(df):
        return sorted(zip(df["config.lr"].round(12), df["config.dropout"].round(12), strict=True))

    assert len(resumed) == 6 and resumed["trial_id"].is_unique
    assert (resumed["status"] == "OK").all() and (resumed["epochs"] == 5).all()
    expected = pd.DataFrame({f"config.{k}": [c[k] for c in reference] for k in ("lr", "dropout")})
    assert configs(resumed) == configs(expected)  # same trials, none lost or doubled
    assert_kept(done_before, resumed)
    # The check has teeth: a finished trial missing after resume fails it.
    with pytest.raises(AssertionError):
        assert_kept(done_before, resumed[resumed["trial_id"] != min(done_before)])


def assert_kept(done_before: set[str], resumed: pd.DataFrame) -> None:
    """Every trial finished before the kill is in the resumed results, finished."""
    ok = resumed[resumed["status"] == "OK"]
    missing = done_before - set(ok["trial_id"])
    assert not missing, f"finished before the kill, lost after resume: {sorted(missing)}"


TRAIN = """
import hashlib
import os
import time

import helpers
from ray import tune


def train(config):
    key = hashlib.sha256(os.environ.get("API_KEY", "").encode()).hexdigest()[:16]
    for step in range(1, 4):
        time.sleep(1)  # long enough that two trials run at once, one on each 1-CPU node
        score = helpers.score(config["x"]) + step
        cost = config["x"] + config["y"]
        tune.report({"score": score, "cost": cost, "node": helpers.node(), "key": key})
"""
HELPERS = """
def score(x):
    return -((x - 0.3) ** 2)


def node():
    import ray

    return ray.get_runtime_context().get_node_id()
"""


def user_project(tmp_path: Path, storage: Path, secret: str = "") -> Path:
    """A sweep of the user's own code (train.py importing helpers.py) with two objectives, a
    constraint, a searcher that learns both and MO-ASHA, and a secret in runtime_env."""
    root = tmp_path / "project"  # not where either node was started
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    (root / "helpers.py").write_text(HELPERS)
    sweep = {
        "name": "mine",
        "metric": ["score", "cost"],
        "mode": ["max", "min"],
        "constraints": {"cost": {"max": 1.2}},
        "num_samples": 6,
        "max_concurrent": 2,
        "searcher": {"name": "tpe", "n_initial_points": 4},
        "scheduler": {"name": "asha", "max_t": 3},
        "space": {
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "y": {"type": "float", "low": 0.0, "high": 1.0},
        },
        "trainable": {"function": "train.py:train", "metrics": ["score", "cost", "node", "key"]},
        "runtime_env": {"env_vars": {"API_KEY": secret or "unused", "OMP_NUM_THREADS": "1"}},
        "storage_path": str(storage),
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return root / "sweep.yaml"


def test_submit_ships_the_users_code_and_keeps_its_secret(cluster, laptop, tmp_path, capsys):
    """The user's modules run on both nodes (the worker never had the files); the head ranks
    the two objectives as the sweep file says; the trainable sees runtime_env.env_vars'
    API_KEY, whose value is in no stored file, no command's output, not in the job's
    metadata and not in `ray job list` (its name may be)."""
    secret = f"sk-{secrets.token_hex(12)}"
    storage = tmp_path / "shared"
    sweep = user_project(tmp_path, storage, secret)
    rc = main(["submit", str(sweep), "--address", cluster["address"], "--wait"])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    job_id = out.split("as job ")[1].split()[0]
    (exp,) = storage.iterdir()
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 6 and (df["status"] == "OK").all()
    rows = [r for rs in trial_histories(exp).values() for r in rs]
    assert {r["node"] for r in rows} == {worker_node_id(cluster), head_node_id(cluster)}
    assert {r["key"] for r in rows} == {hashlib.sha256(secret.encode()).hexdigest()[:16]}
    assert_ranked(df)
    # Everything the sweep, the commands, the job and Ray's job list say holds no value.
    said = {"submit": out}
    for argv in (
        ["results", str(exp)],
        ["report", str(exp), "--out", str(tmp_path / "report")],
        ["status", job_id, "--address", cluster["address"]],
        ["logs", job_id, "--address", cluster["address"]],
        ["list", "--address", cluster["address"]],
    ):
        assert main(argv) == 0, argv
        said[argv[0]] = "".join(capsys.readouterr())
    info = jobs.client(cluster["address"]).get_job_info(job_id)
    said["job info"] = json.dumps(info.dict(), default=str)
    ray_job_list = subprocess.run(
        [RAY, "job", "list", "--address", cluster["address"]],
        env={**os.environ, "RAY_AUTH_MODE": "token"},  # Ray's CLI: the laptop's token
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ray_job_list.returncode == 0, ray_job_list.stderr[-2000:]
    said["ray job list"] = ray_job_list.stdout
    assert job_id in said["ray job list"] and "API_KEY" in said["ray job list"]  # a name only
    assert not {k for k, v in said.items() if secret in v}, said
    files = [f for d in (exp, tmp_path / "report") for f in d.rglob("*") if f.is_file()]
    assert len(files) > 20
    assert not [f for f in files if secret.encode() in f.read_bytes()]
    copy = yaml.safe_load((exp / SPEC_COPY).read_text())
    assert copy["runtime_env"]["env_vars"] == {
        "API_KEY": "<not stored>",
        "OMP_NUM_THREADS": "<not stored>",
    }


def assert_ranked(df: pd.DataFrame) -> None:
    assert (df["feasible"] == (df["cost"] <= 1.2)).all()
    ok = df[df["feasible"]]
    front = {
        t
        for t, s, c in zip(ok["trial_id"], ok["score"], ok["cost"], strict=True)
        if not any(
            (s2 >= s and c2 <= c) and (s2 > s or c2 < c)
            for s2, c2 in zip(ok["score"], ok["cost"], strict=True)
        )
    }
    assert set(df.loc[df["pareto_rank"] == 1, "trial_id"]) & set(ok["trial_id"]) == front
    if len(ok) < len(df):  # an infeasible trial ranks after every feasible one
        assert df[~df["feasible"]]["pareto_rank"].min() > ok["pareto_rank"].max()


def test_submit_refuses_a_directory_over_rays_limit(cluster, laptop, tmp_path, capsys, monkeypatch):
    # Checked on the laptop before the cluster is asked, with Ray's own packaging.
    from ray._private.runtime_env import packaging

    storage = tmp_path / "shared"
    sweep = user_project(tmp_path, storage)
    (sweep.parent / "weights.bin").write_bytes(os.urandom(256 * 1024))
    monkeypatch.setattr(packaging, "GCS_STORAGE_MAX_SIZE", 128 * 1024)  # Ray's limit, lowered
    rc = main(["submit", str(sweep), "--address", cluster["address"]])
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("raytune-hpo: error:")]
    assert rc == 2 and err.strip().endswith(line), err  # the plan's warnings come first
    assert "too large to ship" in line and ".gitignore" in line
    assert not storage.exists()  # nothing started
    # Excluded (Ray reads .gitignore in the working_dir), the same directory is within it.
    (sweep.parent / ".gitignore").write_text("weights.bin\n")
    assert jobs.check_upload_size(str(sweep.parent), []) < 128 * 1024


SWEEPS = Path(__file__).resolve().parents[1] / "specs" / "sweeps"


def _submit_and_read(cluster, storage: Path, capsys, argv: list[str]) -> tuple[Path, str]:
    """``submit --wait`` ``argv``; the sweep directory and what ``results`` says of it."""
    rc = main(["submit", *argv, "--address", cluster["address"], "--wait"])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    assert "SUCCEEDED (exit code 0)" in out, out[-3000:]
    (exp,) = storage.iterdir()
    assert main(["results", str(exp)]) == 0
    return exp, capsys.readouterr().out


def test_submit_runs_two_rank_cnn_trials_under_asha(cluster, laptop, tmp_path, capsys):
    """specs/sweeps/data-parallel-digits.yaml through the Job Submission API, its 2 ranks
    spread over the two nodes (gloo between them)."""
    storage = tmp_path / "shared"
    exp, said = _submit_and_read(
        cluster,
        storage,
        capsys,
        [
            str(SWEEPS / "data-parallel-digits.yaml"),
            "--storage-path",
            str(storage),
            "--num-samples",
            "3",
            "--set",
            "trainable.epochs=2",
            "--set",
            "scheduler.max_t=2",
            "--set",
            "workers.placement=SPREAD",
        ],
    )
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 3 and (df["status"] == "OK").all() and df["epochs"].between(1, 2).all()
    rows = [r for rs in trial_histories(exp).values() for r in rs]
    assert rows and {r["ranks"] for r in rows} == {2}  # every result is a 2-rank run's
    assert "val_accuracy" in said
    with capsys.disabled():
        print(f"\n2-rank CNN trials under ASHA on the cluster:\n{said}")


def test_submit_runs_a_users_two_rank_loop_under_pbt(cluster, laptop, tmp_path, capsys):
    """specs/sweeps/data-parallel-pbt.yaml (the user's loop shipped with the sweep) through
    the Job Submission API: 2 trials of 2 ranks at once on the two 1-CPU nodes."""
    storage = tmp_path / "shared"
    exp, said = _submit_and_read(
        cluster,
        storage,
        capsys,
        [
            str(SWEEPS / "data-parallel-pbt.yaml"),
            "--storage-path",
            str(storage),
            "--num-samples",
            "2",
            "--set",
            "max_concurrent=2",
            "--set",
            "scheduler.quantile_fraction=0.5",
            "--set",
            "trainable.config.epochs=4",
        ],
    )
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 2 and (df["status"] == "OK").all() and (df["epochs"] == 4).all()
    assert main(["results", str(exp), "--schedule"]) == 0
    schedule = capsys.readouterr().out
    with capsys.disabled():
        print(f"\na user's 2-rank loop under PBT on the cluster:\n{said}\n{schedule}")


# Last: it kills the module's worker node.
def test_sweep_survives_losing_the_worker_node(cluster, laptop, tmp_path):
    sweep = {
        "name": "nodeloss",
        "num_samples": 2,  # one on each 1-CPU node; the worker's is retried on the head
        "max_concurrent": 2,
        "max_failures": 3,
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "trainable": {"model": "tinyvgg", "epochs": 30},
        "storage_path": str(tmp_path / "shared"),
    }
    spec = SweepSpec.from_dict(sweep)
    job = jobs.submit(spec, address=cluster["address"])
    storage = tmp_path / "shared"
    deadline = time.monotonic() + 240

    def exp_dir():
        dirs = list(storage.iterdir()) if storage.exists() else []
        return dirs[0] if len(dirs) == 1 else None

    # Wait (on a condition, not a clock) until a trial on the worker has checkpointed twice.
    while (seen := epochs_on_node(cluster["worker"], exp_dir())) < 2:
        assert time.monotonic() < deadline, jobs.logs(job, address=cluster["address"])[-3000:]
        time.sleep(0.2)
    kill_group(cluster["worker"])  # the node dies with its trials
    assert seen < 30, "the worker's trial ended before the kill: nothing to retry"
    info = jobs.follow(job, address=cluster["address"], out=lambda s: None)
    log = jobs.logs(job, address=cluster["address"])
    assert info["status"] == "SUCCEEDED", log[-3000:]
    (exp,) = storage.iterdir()
    df = pd.read_csv(exp / RESULTS_CSV)
    assert len(df) == 2 and (df["status"] == "OK").all() and (df["epochs"] == 30).all()
    histories = trial_histories(exp)
    # The trial that died with the node was retried from its checkpoint: its iterations
    # since the restore are fewer than its epochs, and its epochs still count up to 30.
    restored = [
        rows
        for rows in histories.values()
        if any(r["iterations_since_restore"] < r["training_iteration"] for r in rows)
    ]
    assert restored, "no trial was retried from a checkpoint"
    for rows in restored:
        assert rows[-1]["epoch"] == rows[-1]["training_iteration"] == 30
    # A node lost without warning is a failure to Ray (it cannot tell it from a crash): each
    # retry used one of max_failures. (Drained as preempted first, it uses none: see
    # tests/test_autoscale.py.)
    failures = {t["trial_id"]: m["num_failures"] for t, m in _state_entries(exp)}
    assert all(failures[rows[0]["trial_id"]] >= 1 for rows in restored), failures
