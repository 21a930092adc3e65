"""Sweeps as Ray jobs: submit, status, logs, stop and list through Ray's Job Submission API.

``submit`` validates the sweep on the laptop first (bad input never reaches the cluster; only
the dataset files are left for the cluster to check, since they live there), then ships the
sweep (as YAML in an environment variable), this package (``py_modules``, so the cluster
runs the same raytune-hpo as the laptop) and, for a user's own training code or searcher, the
sweep file's directory (``working_dir``) in the job's runtime environment. The job's driver
runs ``raytune-hpo run`` on the head node against the cluster (``--address auto``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from raytune_hpo import ray_compat
from raytune_hpo.errors import UserError
from raytune_hpo.sweep.spec import SweepSpec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_S = 90
SWEEP_ENV = "RAYTUNE_HPO_SWEEP"


def address_of(address: str | None) -> str:
    """``--address``, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS`` when they are HTTP
    addresses, else the local dashboard."""
    if address:
        return address
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var, "")
        if value.startswith(("http://", "https://")):
            return value
    return DEFAULT_ADDRESS


def auth_headers() -> dict[str, str]:
    """Ray's token authentication (on by default for clusters since Ray 2.5x): the token from
    ``RAY_AUTH_TOKEN``, the file at ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as
    Ray's own CLI finds it. ``RAY_AUTH_MODE=disabled`` sends none."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address_of(address), headers=auth_headers())
    except (ConnectionError, RuntimeError, PermissionError) as e:
        raise UserError(
            f"--address {address_of(address)}: no Ray dashboard answers there "
            f"(start one with `ray start --head`, or forward port 8265: see cluster/README.md); "
            f"{str(e).splitlines()[0]}"
        ) from None


def runtime_env(spec: SweepSpec) -> dict:
    """The job's runtime environment: the sweep's own (``runtime_env``), this package
    (``py_modules``: the cluster runs the same raytune-hpo as the laptop), the sweep itself
    in an environment variable and, when it names user code by file, the sweep file's
    directory as ``working_dir`` (Ray leaves out what ``.gitignore``/``.rayignore`` and
    ``runtime_env.excludes`` exclude), so every node imports the same code."""
    env = dict(spec.runtime_env or {})
    data = yaml.safe_load(spec.to_yaml())
    data.pop("code_dir", None)  # on the cluster the code is the job's working_dir
    env["py_modules"] = [str(Path(__file__).parent)]  # this package
    env["env_vars"] = {
        **env.get("env_vars", {}),
        "PYTHONUNBUFFERED": "1",
        SWEEP_ENV: yaml.safe_dump(data, sort_keys=False),
    }
    if spec.uses_code:
        env["working_dir"] = spec.base_dir
    return env


def check_upload_size(path: str, excludes: list[str]) -> int:
    """The size of ``path`` as Ray will ship it (zipped with Ray's own packaging, honouring
    ``.gitignore``, ``.rayignore`` and ``excludes``); UserError above Ray's upload limit."""
    size = ray_compat.package_size(path, excludes)
    limit = ray_compat.upload_limit()
    if size >= limit:
        raise UserError(
            f"trainable: the sweep's directory {path} is too large to ship: "
            f"{size / 2**20:.1f} MiB zipped, Ray's limit is {limit / 2**20:.1f} MiB; exclude "
            "data and checkpoints with .gitignore, .rayignore or runtime_env.excludes"
        )
    return size


def submit(spec: SweepSpec, *, address: str | None = None, job_id: str | None = None) -> str:
    """Submit ``spec`` as a Ray job; returns its submission id."""
    env = runtime_env(spec)
    if "working_dir" in env:
        check_upload_size(env["working_dir"], env.get("excludes", []))
    c = client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return c.submit_job(
                entrypoint=f"python -m raytune_hpo.cli run --sweep-env {SWEEP_ENV} --address auto",
                submission_id=job_id,
                runtime_env=env,
                metadata={"raytune_hpo_sweep": spec.name},
            )
        except RuntimeError as e:
            # A cluster that has just started answers this until its job agent is up (Ray
            # says nothing else to tell it by); one whose agent never comes answers it forever.
            if "No available agent" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise UserError(
                    f"--address {address_of(address)}: the cluster's job agent did not come up "
                    f"within {AGENT_WAIT_S:g} s (Ray: 'No available agent to submit job'); a "
                    "head that `ray up` just started may need a few minutes: submit again, or "
                    "read dashboard_agent.log in the head's Ray logs (/tmp/ray/session_latest/logs)"
                ) from None
            time.sleep(2)


def _job_call(fn, job_id: str):
    """A call about one job; an unknown job id is a user error (Ray raises RuntimeError)."""
    try:
        return fn()
    except RuntimeError as e:
        last = (str(e).strip().splitlines() or ["unknown job"])[-1]
        raise UserError(f"job {job_id}: {last}") from None


def status(job_id: str, *, address: str | None = None) -> dict:
    c = client(address)
    info = _job_call(lambda: c.get_job_info(job_id), job_id)
    return {
        "job_id": job_id,
        "ray_job_id": info.job_id,
        "status": str(getattr(info.status, "value", info.status)),
        "message": info.message or "",
        "exit_code": getattr(info, "driver_exit_code", None),
        "sweep": (info.metadata or {}).get("raytune_hpo_sweep", ""),
        "entrypoint": info.entrypoint,
    }


def logs(job_id: str, *, address: str | None = None) -> str:
    c = client(address)
    return _job_call(lambda: c.get_job_logs(job_id), job_id)


def follow(
    job_id: str,
    *,
    address: str | None = None,
    out: Callable[[str], None] = sys.stdout.write,
    poll_s: float = 1.0,
) -> dict:
    """Stream the job's logs until it ends; returns its final ``status``."""
    c = client(address)
    shown = 0
    while True:
        info = status(job_id, address=address)
        text = c.get_job_logs(job_id)
        if len(text) > shown:
            out(text[shown:])
            shown = len(text)
        if info["status"] in TERMINAL:
            return info
        time.sleep(poll_s)


def stop(job_id: str, *, address: str | None = None) -> bool:
    c = client(address)
    return _job_call(lambda: c.stop_job(job_id), job_id)


def list_jobs(*, address: str | None = None) -> list[dict]:
    out = []
    for info in client(address).list_jobs():
        if info.submission_id is None:
            continue  # drivers that were not submitted as jobs (e.g. `run --address`)
        out.append(
            {
                "job_id": info.submission_id,
                "status": str(getattr(info.status, "value", info.status)),
                "sweep": (info.metadata or {}).get("raytune_hpo_sweep", ""),
                "start": time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime((info.start_time or 0) / 1000)
                ),
            }
        )
    return sorted(out, key=lambda j: j["start"])


__all__ = ["address_of", "follow", "list_jobs", "logs", "status", "stop", "submit"]
