"""Processes of the kill harness (``scripts/kill_harness.py``): a Ray head on loopback, the
drivers (started, or forked from a zygote that imported what they import), moto's S3 server,
and the trial workers under a node, to kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
BUCKET = "kill-harness"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# A process that imports what every driver imports, then forks a driver per request: the
# same `raytune-hpo` main in its own process group (killed as a whole), without the seconds
# of imports each (--fork; the tests' short run).
ZYGOTE = r"""
import json, os, signal, sys, traceback
import raytune_hpo.cli.commands as cli
import pandas, pyarrow.fs, ray, ray.tune
import raytune_hpo.run.sweep, raytune_hpo.run.resume_point, raytune_hpo.plan.assemble
try:
    import tensorboardX  # Ray's default logger
except ImportError:
    pass
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps them
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        continue
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(req["cwd"])
    for fd, path in ((1, req["out"]), (2, req["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    try:
        rc = cli.main(req["argv"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    with open(req["rc"], "w") as f:
        f.write(str(rc))
    os._exit(rc)
"""


class Forked:
    """A driver the zygote forked: ``poll``/``wait``/``pid`` as a ``Popen``'s."""

    def __init__(self, pid: int, rc_file: Path) -> None:
        self.pid, self._rc = pid, rc_file

    def poll(self):
        try:
            os.kill(self.pid, 0)
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                return None
        except (ProcessLookupError, FileNotFoundError):
            pass
        return int(self._rc.read_text()) if self._rc.is_file() else -signal.SIGKILL

    def wait(self, timeout: float | None = None):
        deadline = time.monotonic() + (timeout or 1e9)
        while (rc := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("driver", timeout)
            time.sleep(0.1)
        return rc


class Zygote:
    """Drivers forked from one process that imported what they import. Importing ray.tune
    seeds Ray's random ID generator (C++, Ray 2.60), so every forked driver draws the same
    worker and object ids: two drivers starting at once crashed in Ray's object-store warmup
    ("Seal() called on an object without a reference to it"). ``--quick`` no longer forks."""

    def __init__(self, env: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the driver zygote did not start")
        self.lock = threading.Lock()

    def start(self, argv: list[str], log: Path, cwd: Path) -> Forked:
        rc = Path(f"{log}.rc")
        req = {"argv": argv, "out": f"{log}.out", "err": f"{log}.err", "rc": str(rc)}
        with self.lock:
            self.proc.stdin.write(json.dumps({**req, "cwd": str(cwd)}) + "\n")
            self.proc.stdin.flush()
            return Forked(int(self.proc.stdout.readline()), rc)

    def close(self) -> None:
        kill_group(self.proc)


def start_head(env: dict, log: Path, cpus: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [
        "--head",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={cpus}",
        "--include-dashboard=false",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    head = subprocess.Popen(
        [RAY, "start", *args],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - the head owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        probe = subprocess.run(
            [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
        )
        if probe.returncode == 0 and "CPU" in probe.stdout:
            return head, address
        if head.poll() is not None or time.monotonic() > deadline:
            kill_group(head)
            raise SystemExit(f"the Ray head did not start:\n{log.read_text()[-2000:]}")
        time.sleep(1)


def ray_env(extra: dict) -> dict:
    import secrets

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=tempfile.mkdtemp(prefix="rk", dir="/tmp"),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        RAY_health_check_period_ms="1000",
        RAY_health_check_failure_threshold="3",
        RAY_health_check_timeout_ms="1000",
        **extra,
    )
    return env


def moto(port: int):
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
    )
    fs.create_dir(BUCKET)
    return server


# ---------------------------------------------------------------- one case


def trial_workers(head_pid: int, experiment: str | None = None) -> list[int]:
    """The processes under ``head_pid`` that run a trial (Ray names them
    ``ray::ImplicitFunc...``); with ``experiment``, only its trials (Ray runs a trial in a
    working directory under the experiment's name)."""
    ppids = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppids[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [head_pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in ppids.items() if pp == parent]
        found += kids
        todo += kids
    out = []
    for pid in found:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if not cmd.startswith("ray::ImplicitFunc"):
                continue
            if experiment is None or f"/{experiment}-" in os.readlink(f"/proc/{pid}/cwd"):
                out.append(pid)
    return out
