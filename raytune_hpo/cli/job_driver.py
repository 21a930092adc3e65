"""The driver of a sweep submitted with ``raytune-hpo submit`` (the job's entrypoint, run by
Ray on the head node): ``raytune-hpo run ARGS --address auto``, after the values of the
sweep's ``runtime_env.env_vars``, shipped in the job's own package
(``raytune_hpo.secret_env``), entered this process's environment. So the driver has them
where a job's runtime environment would have put them (storage credentials, say), and its
``run`` hands them to the sweep's workers; no other copy is made."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from raytune_hpo import secret_env
    from raytune_hpo.cli.commands import main as run

    for name, value in secret_env.shipped().items():
        os.environ[name] = value  # the sweep's value, as a job's runtime_env would set it
    args = list(sys.argv[1:] if argv is None else argv)
    return run(["run", *args, "--address", "auto"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
