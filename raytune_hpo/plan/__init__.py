"""Stage 2, a sweep turned into a plan, before Ray starts.

- ``assemble``: ``assemble(spec) -> Plan``, the one place a sweep becomes a run: the checks
  against the trainable's contract, the searcher and scheduler built once, the warnings.
- ``plan``: ``Plan``, which builds the parts of the Ray Tune run when the run needs them.
- ``bohb`` (BOHB's pairing rule), ``warm_start`` (earlier sweeps' results), ``loggers`` (the
  sweep file's logger callbacks).

May import: the shared modules, ``objectives``, ``sweep`` and the algorithm packages
(``searchers``, ``schedulers``, ``train``).
"""

from __future__ import annotations

from raytune_hpo._lazy import lazy_names

_PUBLIC = {"Plan": "raytune_hpo.plan.plan", "assemble": "raytune_hpo.plan.assemble"}

__getattr__ = lazy_names(__name__, _PUBLIC)
