"""A loopback cluster started with the launcher configs' own commands (cluster/aws-gpu.yaml's
``head_start_ray_commands``, gcp-gpu.yaml's ``worker_start_ray_commands``; the two differ only
in their spot drain's cloud, tests/test_cluster_configs.py holds them so), run as written by
``bash`` with what the launcher itself would give them and what one machine needs instead:

- ``ray stop`` is left out (it would end every Ray on this machine), and so is the spot drain
  (it watches a cloud's metadata server; tests/test_cluster_configs.py runs it against a
  local stand-in);
- each node has a home of its own (another machine's disk): the head's token lands in its
  ``~/.ray/auth_token``, and the worker gets it as the launcher gives it, a copy of each path
  in ``cluster_synced_files`` from the head's home to the worker's;
- ``$RAY_HEAD_IP`` is 127.0.0.1 and the node's declared resources come in
  ``RAY_OVERRIDE_RESOURCES``, as the launcher passes them (here 1 CPU per node: the configs'
  head has none, but on loopback trials must run on both nodes);
- port 6379 becomes a free port, ``~/ray_bootstrap_config.yaml`` (the head's home) an
  autoscaling config with Ray's fake provider and no worker types (the launcher writes the
  cloud's one there), and ``ray start`` gets ``--block``, the node's IP, a temp dir and free
  ports for the dashboard and its agents (other Rays live on this machine).

Each ``ray start`` runs in a process group of its own; ending it ends only that node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from sweep_procs import free_port

HERE = Path(__file__).resolve().parent
CLUSTER = HERE.parent / "cluster"
HEAD_CONFIG = "aws-gpu.yaml"
WORKER_CONFIG = "gcp-gpu.yaml"
GCS_PORT = "6379"


def config(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def commands(name: str, key: str) -> list[str]:
    """The config's ``key`` commands this machine runs (see the module docstring)."""
    kept = [c for c in config(name)[key] if c.strip() != "ray stop" and "spot_drain.py" not in c]
    assert any("ray start" in c for c in kept), f"{name}: {key} starts no Ray"
    return kept


def node_env(home: Path, *, head_ip: str = "127.0.0.1", cpus: int = 1) -> dict:
    """The environment the launcher's shell on a node would give: no token or auth mode of
    the machine running the tests, the node's own home, this venv's ``ray`` first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_", "RAY_OVERRIDE_"))
    }
    env.update(
        HOME=str(home),
        RAY_HEAD_IP=head_ip,
        RAY_OVERRIDE_RESOURCES=json.dumps({"CPU": cpus}),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        # The job's driver imports the test's fake provider through the head (autoscaler).
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        # Notice a dead node within seconds instead of the default ~30 s.
        RAY_health_check_period_ms="1000",
        RAY_health_check_failure_threshold="3",
        RAY_health_check_timeout_ms="1000",
    )
    return env


def local(command: str, gcs: int, extra: list[str]) -> str:
    """A config command for this machine: its GCS port, and ``extra`` after a ``ray start``."""
    command = command.replace(f"--port={GCS_PORT}", f"--port={gcs}")
    command = command.replace(f"$RAY_HEAD_IP:{GCS_PORT}", f"$RAY_HEAD_IP:{gcs}")
    assert GCS_PORT not in command, command
    if re.search(r"\bray start\b", command):
        assert not re.search(r"[;&|]", command), f"not one simple command: {command}"
        command = f"{command} {' '.join(extra)}"
    return command


def agent_ports() -> list[str]:
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


def run_commands(
    cmds: list[str], env: dict, log: Path, gcs: int, extra: list[str]
) -> subprocess.Popen | None:
    """Run each command as the launcher does, in order; the ``ray start`` (``--block``) is
    left running in a process group of its own and returned. A command that fails before it
    is an AssertionError."""
    node = None
    for command in cmds:
        line = local(command, gcs, extra)
        if re.search(r"\bray start\b", line):
            node = subprocess.Popen(
                ["bash", "-c", line],
                env=env,
                stdout=open(log, "a"),  # noqa: SIM115 - the node owns it
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            continue
        done = subprocess.run(
            ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"`{line}`: {done.stdout}{done.stderr}"
        assert not done.stdout.strip(), f"`{line}` printed: {done.stdout!r}"
    return node


@dataclass
class Head:
    proc: subprocess.Popen
    gcs: int
    dash: int
    home: Path
    temp_dir: Path
    env: dict

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    @property
    def token_file(self) -> Path:
        return self.home / ".ray" / "auth_token"


def bootstrap_config(gcs: int) -> dict:
    """What the launcher writes to the head's ``~/ray_bootstrap_config.yaml``, for this
    machine: Ray's fake provider with the head's type only (no worker is ever launched)."""
    from autoscale_provider import HEAD_TYPE, autoscaling_config

    cfg = autoscaling_config(gcs)
    cfg["max_workers"] = 0
    cfg["available_node_types"] = {HEAD_TYPE: cfg["available_node_types"][HEAD_TYPE]}
    return cfg


def start_head(tmp: Path, name: str = HEAD_CONFIG) -> Head:
    home = tmp / "head-home"
    home.mkdir(exist_ok=True)  # a second try after a port clash (tests/test_cluster.py)
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths
    gcs, dash = free_port(), free_port()
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(bootstrap_config(gcs)))
    extra = [
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=true",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={free_port()}",
        *agent_ports(),
    ]
    env = {**node_env(home), "RAY_FAKE_CLUSTER": "1"}  # the substituted config's provider
    proc = run_commands(
        commands(name, "head_start_ray_commands"), env, tmp / "head.log", gcs, extra
    )
    return Head(proc, gcs, dash, home, temp_dir, env)


def start_worker(
    head: Head, tmp: Path, *, ip: str, sync: bool = True, name: str = WORKER_CONFIG
) -> subprocess.Popen:
    """A worker node from the config's commands; ``sync``: the launcher has copied the head's
    ``cluster_synced_files`` to its home first."""
    home = Path(tempfile.mkdtemp(prefix="worker-home-", dir=tmp))
    if sync:
        for path in config(name).get("cluster_synced_files", []):
            rel = Path(path).relative_to("~") if path.startswith("~") else Path(path)
            src, dst = head.home / rel, home / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    temp_dir = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # another machine's disk
    extra = ["--block", f"--node-ip-address={ip}", f"--temp-dir={temp_dir}", *agent_ports()]
    log = tmp / f"worker-{ip}.log"
    return run_commands(
        commands(name, "worker_start_ray_commands"), node_env(home), log, head.gcs, extra
    )
