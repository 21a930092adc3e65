"""Module paths of raytune-hpo 0.1's flat layout, still importable: user code and pickles
written before the stages became folders (a searcher's saved state names
``raytune_hpo.space.SearchSpace``; Ray's ``tuner.pkl`` names the sweep's stopper and
callbacks) load the module's new home. ``install()`` puts one finder on ``sys.meta_path``;
nothing is imported until an old name is."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

# old module -> where it lives now
MOVED = {
    "raytune_hpo.space": "raytune_hpo.sweep.space",
    "raytune_hpo.params": "raytune_hpo.sweep.params",
    "raytune_hpo.conditions": "raytune_hpo.sweep.conditions",
    "raytune_hpo.spec": "raytune_hpo.sweep.spec",
    "raytune_hpo.load": "raytune_hpo.sweep.load",
    "raytune_hpo.train.settings": "raytune_hpo.sweep.sections",
    "raytune_hpo.assemble": "raytune_hpo.plan.assemble",
    "raytune_hpo.bohb": "raytune_hpo.plan.bohb",
    "raytune_hpo.warm_start": "raytune_hpo.plan.warm_start",
    "raytune_hpo.loggers": "raytune_hpo.plan.loggers",
    "raytune_hpo.plugin_guard": "raytune_hpo.searchers.plugin_guard",
    "raytune_hpo.sweep_dir": "raytune_hpo.results.sweep_dir",
    "raytune_hpo.trial_ends": "raytune_hpo.results.trial_ends",
    "raytune_hpo.live": "raytune_hpo.results.live",
    "raytune_hpo.curves": "raytune_hpo.results.curves",
    "raytune_hpo.plots": "raytune_hpo.results.plots",
    "raytune_hpo.sweep_report": "raytune_hpo.results.report",
    "raytune_hpo.objectives.report": "raytune_hpo.results.front",
    "raytune_hpo.extend": "raytune_hpo.run.extend",
    "raytune_hpo.watch": "raytune_hpo.run.watch",
    "raytune_hpo.metric_check": "raytune_hpo.run.metric_check",
    "raytune_hpo.snapshot": "raytune_hpo.run.snapshot",
    "raytune_hpo.resources": "raytune_hpo.run.resources",
    "raytune_hpo.cli_common": "raytune_hpo.cli.common",
    "raytune_hpo.cli_jobs": "raytune_hpo.cli.jobs",
}
# Old modules whose name is now a package (``plan``, ``results``, ``run``, ``jobs``, ``cli``):
# the package's ``__init__`` names their public functions and classes.


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as the module at its new path (one module object, two names)."""

    def __init__(self) -> None:
        self._specs: dict[str, object] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__  # the import system overwrites it
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__name__)  # type: ignore[assignment]


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
