"""Studies: compare searchers x seeds on one or more problems (``raytune-hpo compare``), with
statistics (``analysis``) and a report (``report``, COCO's part in ``coco_report``, the
multi-objective one in ``pareto_report``); test functions in ``functions``, bi-objective ones
scored by hypervolume in ``pareto``, COCO's BBOB suites in ``coco``, Optuna's samplers as
methods in ``samplers``."""

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
