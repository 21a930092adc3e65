"""Stage 4, running a plan on Ray Tune and guarding it.

- ``sweep``: ``run_sweep`` and ``resume``, the Tuner built from a plan, Ray started or joined.
- ``extend``: more trials of a finished sweep with its searcher restored.
- Guards: ``resources`` (what a trial asks for against what the machine or cluster has, before
  Ray starts), ``watch`` (time limits, pending resources), ``metric_check`` (the sweep's
  metrics on the first result).
- Kills at any moment: ``resume_point`` (Ray's experiment state and the searcher's saved
  together, whole, at each snapshot) and ``snapshot`` (that state mended to agree with storage
  before a resume).

May import: every earlier stage (``sweep``, ``plan``, ``results``), the algorithm packages
and the shared modules.
"""

from __future__ import annotations

from raytune_hpo._lazy import lazy_names

_PUBLIC = {
    "Interrupted": "raytune_hpo.run.sweep",
    "resume": "raytune_hpo.run.sweep",
    "run_sweep": "raytune_hpo.run.sweep",
}

__getattr__ = lazy_names(__name__, _PUBLIC)
