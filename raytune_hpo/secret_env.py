"""A sweep's ``runtime_env.env_vars``: every value is treated as a secret (an API key, a
password). Values reach the trials' workers once and are written nowhere; their names may be.

- ``redact``: what every text form of a sweep holds instead of a value (``sweep.yaml`` in the
  sweep directory, the sweep a submitted job carries in its environment): ``REDACTED``.
- ``ship``: a submitted sweep's values, as a package of the job's own (``py_modules``: Ray
  uploads it zipped into the cluster's internal store under a content hash, salted here, and
  neither ``ray job list`` nor the dashboard shows it).
- ``reveal``: the values for ``ray.init(runtime_env={"env_vars": ...})``, which Ray gives
  to every worker of the sweep at its start: a redacted value comes from the job's package
  when there is one (a submitted sweep's driver), else from this process's environment (a
  ``resume`` of a sweep directory); a value found nowhere is a UserError naming it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
from pathlib import Path

from raytune_hpo.errors import UserError

REDACTED = "<not stored>"
PACKAGE = "raytune_hpo_job_env"  # the package a submitted job ships the values in
_FILE = "env.json"


def redact(env_vars: dict | None) -> dict | None:
    """``env_vars`` with every value replaced by ``REDACTED`` (None stays None)."""
    return None if env_vars is None else {str(k): REDACTED for k in env_vars}


def ship(env_vars: dict, root: Path) -> Path:
    """Write ``env_vars`` as the package ``PACKAGE`` under ``root`` (a private temporary
    directory); returns the package's directory, for the job's ``py_modules``."""
    package = root / PACKAGE
    package.mkdir(mode=0o700)
    (package / "__init__.py").write_text('"""A submitted sweep\'s runtime_env.env_vars."""\n')
    # The salt keeps the package's content hash (which `ray job list` shows) from telling
    # anything about a short value.
    values = {str(k): str(v) for k, v in env_vars.items()}
    data = {"salt": secrets.token_hex(16), "env_vars": values}
    fd = os.open(package / _FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return package


def shipped() -> dict[str, str]:
    """The values a submitted job's package holds; none outside such a job."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return {}
    if spec is None or not spec.submodule_search_locations:
        return {}
    for where in spec.submodule_search_locations:
        path = Path(where) / _FILE
        if path.is_file():
            return dict(json.loads(path.read_text())["env_vars"])
    return {}


def reveal(env_vars: dict | None) -> dict[str, str]:
    """``env_vars`` with every redacted value filled in (see the module docstring)."""
    if not env_vars:
        return {}
    hidden = [k for k, v in env_vars.items() if v == REDACTED]
    if not hidden:
        return dict(env_vars)
    sources = {**os.environ, **shipped()}
    missing = [k for k in hidden if k not in sources]
    if missing:
        raise UserError(
            f"its value is not stored with the sweep (values of runtime_env.env_vars never "
            f"are); set {missing[0]} in this environment and run the command again",
            field=("runtime_env", "env_vars", missing[0]),
        )
    return {k: (sources[k] if v == REDACTED else v) for k, v in env_vars.items()}


__all__ = ["PACKAGE", "REDACTED", "redact", "reveal", "ship", "shipped"]
