"""Stage 3, a sweep directory read back and drawn, while the sweep runs or after.

- ``sweep_dir``: what a sweep directory holds besides Ray's files (``sweep.yaml``,
  ``results.csv``) and the order of its tables; ``trial_ends``: how time limits ended trials.
- ``live``: the sweep as Ray Tune's own files tell it now; ``table``: one row per trial, best
  first (``load_results``, ``SweepResult``).
- ``report`` (``raytune-hpo report``), with ``curves``, ``front`` (several objectives) and
  ``plots`` (figures and the self-contained page, shared with the study reports).

The run writes here (``raytune_hpo.run``); nothing here runs anything. May import: the shared
modules, ``objectives``, ``sweep`` and the algorithm packages.
"""

from __future__ import annotations

from raytune_hpo._lazy import lazy_names

_PUBLIC = {
    "SweepResult": "raytune_hpo.results.table",
    "load_results": "raytune_hpo.results.table",
    "to_json": "raytune_hpo.results.table",
}

__getattr__ = lazy_names(__name__, _PUBLIC)
