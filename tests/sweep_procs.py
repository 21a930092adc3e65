"""Run a sweep as a real `raytune-hpo` process and kill it mid-way (fault-tolerance tests);
start Ray nodes of a test's own on free ports (cluster tests)."""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


@functools.cache
def load_file(path: Path):
    """The module in the file ``path`` (a script of the project's, not a package), loaded
    once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spot_drain():
    """cluster/spot_drain.py, the script the launcher configs run on their workers."""
    return load_file(CLUSTER / "spot_drain.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(
    args: list[str], env: dict, log: Path, *, agent_port: int | None = None
) -> subprocess.Popen:
    """`ray start --block ARGS` in its own process group. Each node its own agent ports:
    other Ray instances on this host hold the defaults (``agent_port``: the dashboard
    agent's HTTP port, a free one unless given)."""
    ports = [
        f"--dashboard-agent-listen-port={agent_port or free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    return subprocess.Popen(
        [RAY, "start", "--block", "--disable-usage-stats", *ports, *args],
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )


def ray_env(**extra: str) -> dict:
    """The environment of a test's own Ray nodes and of the drivers that join them: a short
    Ray temp dir (socket paths) and an auth token of their own, dead nodes noticed in seconds."""
    import secrets

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=tempfile.mkdtemp(prefix="rh", dir="/tmp"),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        RAY_health_check_period_ms="1000",
        RAY_health_check_failure_threshold="3",
        RAY_health_check_timeout_ms="1000",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def script_result(path: Path, script: str, *args: str, env: dict, timeout: float = 600):
    """Write ``script`` to ``path`` and run it in a fresh process with ``args`` and ``env``: the
    JSON of the last line it prints after ``RESULT `` (it must exit 0 and print one)."""
    path.write_text(script)
    out = subprocess.run(
        [sys.executable, str(path), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def start_head(env: dict, log: Path, *, cpus: int = 2, timeout: float = 120) -> tuple:
    """A Ray head on loopback (no dashboard), ready for drivers: ``(process, address)``."""

    def start():
        port = free_port()
        args = ["--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}"]
        args += ["--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
        return start_node(args, env, log), f"127.0.0.1:{port}"

    def wait(node):
        head, address = node
        deadline = time.monotonic() + timeout
        while True:
            probe = subprocess.run(
                [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
            )
            if probe.returncode == 0 and "CPU" in probe.stdout:
                return
            if head.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text()[-2000:])
            time.sleep(1)

    return up_on_free_ports(start, lambda node: node[0], wait, log)


PORT_CLASH = ("already occupied", "Address already in use")


def up_on_free_ports(start, proc_of, wait, log: Path, tries: int = 3):
    """``start()`` a node on ports ``free_port`` chose and ``wait`` for it; another Ray on this
    machine (the other test worker's) may take a chosen port before the node binds it, and Ray
    exits ("Failed to bind to 127.0.0.1:N because it's already occupied"): then again, on new
    ports. ``proc_of(node)``: its process, killed before a new try."""
    for attempt in range(tries):
        node = start()
        try:
            wait(node)
            return node
        except AssertionError:
            kill_group(proc_of(node))
            clash = any(c in log.read_text() for c in PORT_CLASH)
            if not clash or attempt == tries - 1:
                raise


def start_run(sweep: Path, storage: Path, tmp: Path, *extra: str) -> subprocess.Popen:
    """`raytune-hpo run` in its own process group, with its own Ray temp dir."""
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must be short
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    log = open(tmp / "driver.log", "w")  # noqa: SIM115 - the child owns it
    cmd = [sys.executable, "-m", "raytune_hpo.cli", "run", str(sweep), "--storage-path"]
    proc = subprocess.Popen(
        [*cmd, str(storage), *extra],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.ray_tmp = ray_tmp  # its Ray's local disk
    return proc


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240):
    """Poll ``condition()`` until it is truthy (its value is returned); fail if ``proc`` ends
    first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended first (rc {proc.returncode})")
        time.sleep(0.2)
    raise AssertionError("the sweep made no progress in time")


def results_reported(where: Path) -> int:
    """Epoch results written so far, over all trials of the experiment (or of every
    experiment under a storage path)."""
    n = 0
    files = glob.glob(str(where / "*" / "result.json"))
    files += glob.glob(str(where / "*" / "*" / "result.json"))
    for f in files:
        with open(f) as fh:
            n += sum(1 for line in fh if line.strip())
    return n


def experiment_dir(storage: Path) -> Path | None:
    dirs = [p for p in storage.iterdir() if p.is_dir()] if storage.exists() else []
    return dirs[0] if len(dirs) == 1 else None


def kill_after(
    proc: subprocess.Popen, storage: Path, results: int, timeout: float = 240, started: int = 0
) -> Path:
    """SIGKILL the driver once ``results`` epoch results are on disk and Ray's experiment state
    knows of ``started`` trials that reported; returns the sweep dir."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = experiment_dir(storage)
        if (
            exp is not None
            and results_reported(exp) >= results
            and (started <= 0 or len(_started_or_none(exp)) >= started)
        ):
            break
        if proc.poll() is not None:
            raise AssertionError(
                f"the sweep ended before it could be killed (rc {proc.returncode})"
            )
        time.sleep(0.2)
    else:
        raise AssertionError("the sweep made no progress in time")
    proc.send_signal(signal.SIGKILL)  # the driver dies without any chance to clean up
    proc.wait()
    time.sleep(2)
    with contextlib.suppress(ProcessLookupError):  # its embedded Ray goes with it
        os.killpg(proc.pid, signal.SIGKILL)
    return exp


def trial_histories(exp: Path) -> dict[str, list[dict]]:
    """Per trial id, every result it reported (result.json lines), in order."""
    out: dict[str, list[dict]] = {}
    for f in glob.glob(str(exp / "*" / "result.json")):
        with open(f) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session`` and everything in its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _state_entries(exp: Path) -> list[tuple[dict, dict]]:
    """(trial, run metadata) of every trial in the newest experiment state."""
    states = sorted(exp.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return []
    data = json.loads(states[-1].read_text())
    return [(json.loads(t), json.loads(meta)) for t, meta in data["trial_data"]]


def finished_trials(exp: Path) -> set[str]:
    """Trials Ray recorded as TERMINATED in the newest experiment state (what `resume` keeps
    as finished). Ray 2.60 writes no `done: true` row to result.json, so that is no source."""
    return {t["trial_id"] for t, _ in _state_entries(exp) if t["status"] == "TERMINATED"}


def _started_or_none(exp: Path) -> set[str]:
    try:
        return started_trials(exp)
    except (json.JSONDecodeError, OSError):  # Ray is rewriting the state right now
        return set()


def started_trials(exp: Path) -> set[str]:
    """Trials the newest experiment state knows to have reported (what `resume` continues). A
    trial that started after Ray's last snapshot is unknown to it and runs again from its start."""
    return {
        t["trial_id"]
        for t, meta in _state_entries(exp)
        if (meta.get("last_result") or {}).get("training_iteration", 0) > 0
    }


def _ppids() -> dict[int, int]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (Linux /proc): those a test's Ray node started."""
    ppids, found, todo = _ppids(), [], [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in ppids.items() if pp == parent]
        found += children
        todo += children
    return found


def cmdline(pid: int) -> list[str]:
    """The command line of a process (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def carries(pid: int | str, marker: str) -> bool:
    """Whether the process's environment holds ``marker`` (``NAME=value``)."""
    try:
        return marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def kill_pids(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
