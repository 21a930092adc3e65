"""raytune-hpo: hyperparameter sweeps on Ray Tune from one YAML file."""

from raytune_hpo.run import SweepResult, run_sweep
from raytune_hpo.space import SearchSpace
from raytune_hpo.spec import SpecError, SweepSpec

__version__ = "0.1.0"

__all__ = ["SearchSpace", "SpecError", "SweepResult", "SweepSpec", "run_sweep", "__version__"]
