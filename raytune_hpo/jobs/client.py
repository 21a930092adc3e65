"""Sweeps as Ray jobs: submit, status, logs, stop and list through Ray's Job Submission API.

``submit`` validates the sweep on the laptop first (bad input never reaches the cluster; only
the dataset files are left for the cluster to check, since they live there), then ships in the
job's runtime environment: the sweep as YAML in an environment variable, with the values of
its ``runtime_env.env_vars`` left out (``ray job list`` and the dashboard show a job's
runtime environment); those values in a package of the job's own (``raytune_hpo.secret_env``),
which the driver reads and hands to the sweep's workers, once; this package (``py_modules``,
so the cluster runs the same raytune-hpo as the laptop); and, for a user's own training code
or searcher, the sweep file's directory (``working_dir``). The job's driver
(``raytune_hpo.cli.job_driver``) runs ``raytune-hpo run`` on the head node against the cluster.

Authentication: a cluster with Ray's token authentication refuses requests without its
token. The token is found where Ray looks, in Ray's order (``RAY_AUTH_TOKEN``, else the file
at ``RAY_AUTH_TOKEN_PATH``, which must then hold one, else ``~/.ray/auth_token``), read afresh
for every client, and handed to Ray's own ``JobSubmissionClient`` as the ``Authorization``
header it would send itself in token mode (given one, Ray's client adds none from its cache).
A token never goes over plain ``http`` to a host other than this machine unless
``allow_plain_http`` says so; a refusal is one line naming ``RAY_AUTH_TOKEN`` /
``RAY_AUTH_TOKEN_PATH``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from raytune_hpo import ray_compat, secret_env
from raytune_hpo.errors import UserError
from raytune_hpo.sweep.spec import SweepSpec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_S = 90
SWEEP_ENV = "RAYTUNE_HPO_SWEEP"
ENTRYPOINT = f"python -m raytune_hpo.cli.job_driver --sweep-env {SWEEP_ENV}"
PLAIN_HTTP_FLAG = "--allow-plain-http"
TOKEN_HELP = (
    "set RAY_AUTH_TOKEN to the cluster's token, or RAY_AUTH_TOKEN_PATH to a file holding it "
    "(default ~/.ray/auth_token; cluster/README.md says where the token is)"
)


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


def is_loopback(host: str | None) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def token_source() -> str:
    """Where Ray's loader takes the token from, in its order (for messages; never the token)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    return "~/.ray/auth_token"


def token() -> str | None:
    """The token this machine sends, found as Ray finds it (see the module); None without one
    or with ``RAY_AUTH_MODE=disabled``. A ``RAY_AUTH_TOKEN_PATH`` that holds no token is a
    UserError (Ray treats it as a misconfiguration too). Read here, not through Ray's loader,
    whose cache is shared with a Ray this process may run."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    value = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return value
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named or "~/.ray/auth_token").expanduser()
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    if named and not value:
        raise UserError(
            f"the file cannot be read or is empty; {TOKEN_HELP}",
            field=f"RAY_AUTH_TOKEN_PATH={named}",
        )
    return value or None


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header for Ray's client (none without a token)."""
    found = token()
    return {"Authorization": f"Bearer {found}"} if found else {}


def check_transport(url: str, allow_plain_http: bool = False) -> None:
    """UserError when the token would go unencrypted (plain ``http``) to another machine."""
    split = urlsplit(url)
    if split.scheme != "http" or is_loopback(split.hostname) or allow_plain_http:
        return
    if token() is None:
        return  # nothing secret is sent
    raise UserError(
        f"--address {url}: would send the cluster's auth token (from {token_source()}) "
        f"unencrypted over plain http to {split.hostname}; reach the dashboard through a "
        "tunnel (`ray dashboard CONFIG` or `kubectl port-forward`, then --address "
        f"http://127.0.0.1:8265), use https, or pass {PLAIN_HTTP_FLAG} to send it anyway"
    )


@contextlib.contextmanager
def auth_errors(url: str) -> Iterator[None]:
    """Ray's ``AuthenticationError`` (the cluster wants a token we lack, or refuses ours) as
    one line naming where the token comes from."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as e:
        if token() is None or "Authentication required" in str(e):
            raise UserError(
                f"--address {url}: the cluster requires an auth token and none was found "
                f"here; {TOKEN_HELP}"
            ) from None
        raise UserError(
            f"--address {url}: the cluster refused the auth token from {token_source()} "
            f"(not this cluster's token); {TOKEN_HELP}"
        ) from None


def client(address: str | None, *, allow_plain_http: bool = False):
    """Ray's ``JobSubmissionClient`` for the cluster at ``address`` (see the module)."""
    from ray.job_submission import JobSubmissionClient

    url = address_of(address)
    check_transport(url, allow_plain_http)
    # Ray's warning (in token mode) that it found no token: the refusal says it, in one line.
    quiet = logging.getLogger(ray_compat.HTTP_AUTH_LOGGER)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with auth_errors(url):
            return JobSubmissionClient(url, headers=auth_headers())
    except (ConnectionError, RuntimeError, PermissionError) as e:
        raise UserError(
            f"--address {url}: no Ray dashboard answers there "
            f"(start one with `ray start --head`, or forward port 8265: see cluster/README.md); "
            f"{str(e).splitlines()[0]}"
        ) from None
    finally:
        quiet.setLevel(level)


def runtime_env(spec: SweepSpec) -> dict:
    """The job's runtime environment, as ``ray job list`` will show it: the sweep's own
    (``runtime_env``) without its ``env_vars``, this package (``py_modules``: the cluster
    runs the same raytune-hpo as the laptop), the sweep itself in an environment variable
    (the values of its ``env_vars`` redacted) and, when it names user code by file, the sweep
    file's directory as ``working_dir`` (Ray leaves out what ``.gitignore``/``.rayignore``
    and ``runtime_env.excludes`` exclude), so every node imports the same code."""
    own = dict(spec.runtime_env or {})
    user_vars = own.pop("env_vars", None) or {}
    data = yaml.safe_load(spec.to_yaml())
    data.pop("code_dir", None)  # on the cluster the code is the job's working_dir
    env = own
    env["py_modules"] = [str(Path(__file__).resolve().parents[1])]  # the raytune_hpo package
    env["env_vars"] = {SWEEP_ENV: yaml.safe_dump(data, sort_keys=False)}
    if "PYTHONUNBUFFERED" not in user_vars:  # the driver adds the user's: no key twice
        env["env_vars"]["PYTHONUNBUFFERED"] = "1"
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


def submit(
    spec: SweepSpec,
    *,
    address: str | None = None,
    job_id: str | None = None,
    allow_plain_http: bool = False,
) -> str:
    """Submit ``spec`` as a Ray job; returns its submission id."""
    import requests  # Ray's own HTTP client, under JobSubmissionClient

    env = runtime_env(spec)
    if "working_dir" in env:
        check_upload_size(env["working_dir"], env.get("excludes", []))
    url = address_of(address)
    c = client(address, allow_plain_http=allow_plain_http)
    values = (spec.runtime_env or {}).get("env_vars") or {}
    with tempfile.TemporaryDirectory(prefix="raytune-hpo-job-") as d:
        if values:  # uploaded with the job, never shown: see raytune_hpo.secret_env
            env["py_modules"].append(str(secret_env.ship(values, Path(d))))
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                with auth_errors(url):
                    return c.submit_job(
                        entrypoint=ENTRYPOINT,
                        submission_id=job_id,
                        runtime_env=env,
                        metadata={"raytune_hpo_sweep": spec.name},
                    )
            except RuntimeError as e:
                # A cluster that has just started answers this until its job agent is up (Ray
                # says nothing else to tell it by); one whose agent never comes, forever.
                if "No available agent" not in str(e):
                    raise
                agent_down(url, gave_up=time.monotonic() > deadline)
                time.sleep(2)
            except requests.exceptions.ConnectionError:
                # The dashboard dropped the upload without an answer (seen while the head's job
                # agent was not up): the same wait, the same causes looked for.
                agent_down(url, gave_up=time.monotonic() > deadline, ray_said=DROPPED)
                time.sleep(2)


DROPPED = "the dashboard closed the connection without an answer"
NO_AGENT = "Ray: 'No available agent to submit job'"


def agent_down(url: str, *, gave_up: bool, ray_said: str = NO_AGENT) -> None:
    """Ray refused a job for want of a job agent: a UserError when the head's agent log (a
    head on this machine) says its port is taken, or when ``gave_up``; else keep waiting."""
    split = urlsplit(url)
    log_dir = ray_compat.head_log_dir(split.port or 80) if is_loopback(split.hostname) else None
    port = ray_compat.agent_port_taken(log_dir) if log_dir else None
    if log_dir is not None and port is not None:
        raise UserError(
            f"--address {url}: the head's job agent cannot listen on port {port}: another "
            f"process holds it (another Ray on this machine?); start the head with "
            f"`ray start --head {ray_compat.AGENT_PORT_FLAG}=FREE_PORT` "
            f"(its log: {log_dir / ray_compat.AGENT_LOG})"
        )
    if not gave_up:
        return
    where = (
        str(log_dir / ray_compat.AGENT_LOG)
        if log_dir
        else f"{ray_compat.AGENT_LOG} in the head's Ray logs (TEMP_DIR/session_latest/logs; "
        "TEMP_DIR is /tmp/ray unless the head was started with --temp-dir or RAY_TMPDIR)"
    )
    raise UserError(
        f"--address {url}: the cluster's job agent did not come up within {AGENT_WAIT_S:g} s "
        f"({ray_said}); a head that `ray up` just started may "
        f"need a few minutes: submit again, or read {where}"
    )


def _job_call(fn, job_id: str, url: str):
    """A call about one job; an unknown job id is a user error (Ray raises RuntimeError)."""
    try:
        with auth_errors(url):
            return fn()
    except RuntimeError as e:
        last = (str(e).strip().splitlines() or ["unknown job"])[-1]
        raise UserError(f"job {job_id}: {last}") from None


def status(job_id: str, *, address: str | None = None, allow_plain_http: bool = False) -> dict:
    c = client(address, allow_plain_http=allow_plain_http)
    info = _job_call(lambda: c.get_job_info(job_id), job_id, address_of(address))
    return {
        "job_id": job_id,
        "ray_job_id": info.job_id,
        "status": str(getattr(info.status, "value", info.status)),
        "message": info.message or "",
        "exit_code": getattr(info, "driver_exit_code", None),
        "sweep": (info.metadata or {}).get("raytune_hpo_sweep", ""),
        "entrypoint": info.entrypoint,
    }


def logs(job_id: str, *, address: str | None = None, allow_plain_http: bool = False) -> str:
    c = client(address, allow_plain_http=allow_plain_http)
    return _job_call(lambda: c.get_job_logs(job_id), job_id, address_of(address))


def follow(
    job_id: str,
    *,
    address: str | None = None,
    out: Callable[[str], object] = sys.stdout.write,
    poll_s: float = 1.0,
    allow_plain_http: bool = False,
) -> dict:
    """Stream the job's logs until it ends; returns its final ``status``."""
    c = client(address, allow_plain_http=allow_plain_http)
    url = address_of(address)
    shown = 0
    while True:
        info = status(job_id, address=address, allow_plain_http=allow_plain_http)
        text = _job_call(lambda: c.get_job_logs(job_id), job_id, url)
        if len(text) > shown:
            out(text[shown:])
            shown = len(text)
        if info["status"] in TERMINAL:
            return info
        time.sleep(poll_s)


def stop(job_id: str, *, address: str | None = None, allow_plain_http: bool = False) -> bool:
    c = client(address, allow_plain_http=allow_plain_http)
    return _job_call(lambda: c.stop_job(job_id), job_id, address_of(address))


def list_jobs(*, address: str | None = None, allow_plain_http: bool = False) -> list[dict]:
    c = client(address, allow_plain_http=allow_plain_http)
    with auth_errors(address_of(address)):
        infos = c.list_jobs()
    out = []
    for info in infos:
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


__all__ = [
    "address_of",
    "auth_headers",
    "follow",
    "list_jobs",
    "logs",
    "runtime_env",
    "status",
    "stop",
    "submit",
]
