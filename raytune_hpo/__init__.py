"""raytune-hpo: hyperparameter sweeps on Ray Tune from one YAML file.

The public names are imported when first used, so that ``raytune-hpo --help``, a one-line
error and a Ray worker importing ``raytune_hpo.train`` pay for nothing else."""

from __future__ import annotations

from raytune_hpo import _moved
from raytune_hpo._lazy import lazy_names

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

__getattr__ = lazy_names(__name__, _PUBLIC)


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
