"""The names raytune-hpo shares with Ray Tune and with itself, each defined once.

Ray's own result keys and file names are Ray's (``ray.tune.result``); they are repeated here
as plain strings only so that checking a sweep file needs no Ray import, and a test holds them
equal to Ray's. Nothing here imports anything.
"""

from __future__ import annotations

# ---------------------------------------------------------------- Ray Tune's (ray.tune.result)
BUDGET_ATTR = "training_iteration"  # TRAINING_ITERATION: one reported result, one unit of budget
TRIAL_ID = "trial_id"  # TRIAL_ID
TIME_TOTAL_S = "time_total_s"  # TIME_TOTAL_S
TIMESTAMP = "timestamp"  # TIMESTAMP
RESULT_FILE = "result.json"  # EXPR_RESULT_FILE: one JSON line per reported result
PARAMS_FILE = "params.json"  # EXPR_PARAM_FILE: the trial's config
ERROR_FILE = "error.txt"  # EXPR_ERROR_FILE
ERROR_PICKLE = "error.pkl"  # EXPR_ERROR_PICKLE_FILE
STATE_GLOB = "experiment_state-*.json"  # the experiment state, one file per session
# What Ray's search algorithms save beside it, named by the same session (CKPT_FILE_TMPL of
# SearchGenerator, Searcher, BasicVariantGenerator).
SEARCH_STATE_GLOBS = (
    "search_gen_state-*.json",
    "searcher-state-*.pkl",
    "basic-variant-state-*.json",
)
CHECKPOINT_DIR_NAME = "checkpoint_dir_name"  # ray.train.constants: a result's checkpoint

# ---------------------------------------------------------------- ours, in a sweep directory
SPEC_COPY = "sweep.yaml"  # the sweep as run (``raytune-hpo resume`` reads it)
RESULTS_CSV = "results.csv"  # one row per trial, best first, written when the sweep ends
TRIAL_ENDS = "trial_ends.json"  # trials ended by a time limit (raytune_hpo.run.watch)
PBT_SCHEDULE = "pbt_schedule.jsonl"  # each exploit of population-based training
# Our resume points: Ray's experiment state and the searcher's saved together (one file each,
# raytune_hpo.run.resume_point). Not a .json/.pkl at the top, which Ray copies back and forth.
RESUME_DIR = ".raytune-hpo"
# Why failed trials stopped the sweep, one file per run or resume, named by its start
# (raytune_hpo.run.fail_fast)
FAIL_FAST_GLOB = "fail_fast-*.json"
PARETO_RANK = "pareto_rank"  # 1: the Pareto front of the feasible trials (raytune_hpo.objectives)
FEASIBLE = "feasible"  # a trial within every constraint, with finite objectives
CONFIG_PREFIX = "config."  # a searched value's column in results: ``config.<dotted name>``


def config_column(name: str) -> str:
    """The results column of the searched parameter ``name``."""
    return f"{CONFIG_PREFIX}{name}"


def config_name(column: str) -> str | None:
    """The parameter a results column holds, or None when it holds none."""
    return column[len(CONFIG_PREFIX) :] if column.startswith(CONFIG_PREFIX) else None


__all__ = [
    "BUDGET_ATTR",
    "CHECKPOINT_DIR_NAME",
    "CONFIG_PREFIX",
    "ERROR_FILE",
    "ERROR_PICKLE",
    "FAIL_FAST_GLOB",
    "FEASIBLE",
    "PARAMS_FILE",
    "PARETO_RANK",
    "PBT_SCHEDULE",
    "RESULTS_CSV",
    "RESULT_FILE",
    "RESUME_DIR",
    "SEARCH_STATE_GLOBS",
    "SPEC_COPY",
    "STATE_GLOB",
    "TIMESTAMP",
    "TIME_TOTAL_S",
    "TRIAL_ENDS",
    "TRIAL_ID",
    "config_column",
    "config_name",
]
