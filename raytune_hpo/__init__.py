"""raytune-hpo: hyperparameter sweeps on Ray Tune from one YAML file."""

from raytune_hpo.errors import SpecError, UserError
from raytune_hpo.results import SweepResult
from raytune_hpo.run import resume, run_sweep
from raytune_hpo.session import report, restore_state
from raytune_hpo.space import SearchSpace
from raytune_hpo.spec import SweepSpec

__version__ = "0.1.0"

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
