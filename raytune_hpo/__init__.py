"""raytune-hpo: hyperparameter sweeps on Ray Tune from one YAML file.

The public names are imported when first used, so that ``raytune-hpo --help``, a one-line
error and a Ray worker importing ``raytune_hpo.train`` pay for nothing else."""

from __future__ import annotations

import importlib
from typing import Any

from raytune_hpo import _moved

__version__ = "0.1.0"
_moved.install()  # 0.1's flat module paths (raytune_hpo.space, ...) still import

_PUBLIC = {
    "SearchSpace": "raytune_hpo.sweep.space",
    "SpecError": "raytune_hpo.errors",
    "SweepResult": "raytune_hpo.results.table",
    "SweepSpec": "raytune_hpo.sweep.spec",
    "UserError": "raytune_hpo.errors",
    "report": "raytune_hpo.session",
    "restore_state": "raytune_hpo.session",
    "resume": "raytune_hpo.run.sweep",
    "run_sweep": "raytune_hpo.run.sweep",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SearchSpace",
    "SpecError",
    "SweepResult",
    "SweepSpec",
    "UserError",
    "__version__",
    "report",
    "restore_state",
    "resume",
    "run_sweep",
]
