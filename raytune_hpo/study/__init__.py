"""Studies: compare searchers x seeds on one or more problems (``raytune-hpo compare``), with
statistics (``analysis``) and a report (``report``); test functions in ``functions``."""

from raytune_hpo.study.runner import check, compare, load_study, run_direct, run_tune
from raytune_hpo.study.spec import MethodSpec, ProblemSpec, StudySpec

__all__ = [
    "MethodSpec",
    "ProblemSpec",
    "StudySpec",
    "check",
    "compare",
    "load_study",
    "run_direct",
    "run_tune",
]
