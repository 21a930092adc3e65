"""Stage 7, the ``raytune-hpo`` commands: ``commands`` (the parser and the sweep, result and
study commands), ``jobs`` (``submit``, ``status``, ``logs``, ``stop``, ``list``) and ``common``
(what they share). A user's mistake is one line on stderr and exit code 2.

May import anything; nothing imports it.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``raytune-hpo`` entry point (``raytune_hpo.cli:main``)."""
    from raytune_hpo.cli.commands import main as run  # not a module named `main`: it would
    # replace this function as the package's attribute once imported

    return run(argv)
