"""``raytune-hpo extend DIR --num-samples N``: grow a finished sweep by N trials without losing
what its searcher learnt (ray-project/ray#42221, #15177: Ray Tune cannot raise ``num_samples``
of an experiment it restores).

The extension is a new Tune run in the same sweep directory (a new experiment state beside the
old one): its searcher is the old one restored from its saved state (a model keeps its
observations, a sequence continues where it stopped; ours with a planned budget of points make
room for N more), its scheduler is new. ``results``, ``report`` and ``resume`` read every
experiment state of a directory, so they cover all trials; ``results.csv`` holds them all.
Changing the space is a new sweep with ``warm_start`` from this one.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pandas as pd

import raytune_hpo.storage as storage
from raytune_hpo import ray_compat
from raytune_hpo.errors import UserError
from raytune_hpo.names import RESULTS_CSV

SEARCHER_STATE = "searcher-state-*.pkl"  # Ray's Searcher.CKPT_FILE_TMPL
VARIANT_STATE = "basic-variant-state-*.json"  # Ray's BasicVariantGenerator.CKPT_FILE_TMPL


def _newest(exp: str, pattern: str) -> str | None:
    found = storage.glob(exp, pattern)
    return max(found, key=storage.name) if found else None


def _finished_csv(exp: str) -> str:
    """The finished sweep's results table (a sweep without one has not finished)."""
    csv = storage.join(exp, RESULTS_CSV)
    if not storage.is_file(csv):
        raise UserError(
            f"no {RESULTS_CSV}: the sweep has not finished; `raytune-hpo resume {exp}` first",
            source=storage.display(exp),
        )
    return csv


def restore_searcher(searcher, exp: str, more: int) -> None:
    """Load the sweep's saved searcher state into ``searcher`` (ours, a library's, Ray's
    BasicVariantGenerator for random), which then continues from it; a searcher that plans a
    number of points (``extend_budget``) makes room for ``more``."""
    from ray.tune.search import BasicVariantGenerator

    variant = isinstance(searcher, BasicVariantGenerator)
    path = _newest(exp, VARIANT_STATE if variant else SEARCHER_STATE)
    if path is None:
        raise UserError(
            "the searcher's saved state is missing; cannot extend", source=storage.display(exp)
        )
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / storage.name(path)
        local.write_bytes(storage.read_bytes(path))
        if variant:
            searcher.restore_from_dir(d)
            # Ray's private flags: its sequence was used up (the extension adds samples), and
            # a metric set means "set_search_properties refused" to the Tuner.
            ray_compat.reopen_variant_generator(searcher)
        else:
            searcher.restore(str(local))
    inner = getattr(searcher, "inner", searcher)  # a checked plug-in: the plug-in itself
    if hasattr(inner, "extend_budget"):
        inner.extend_budget(more)


def extension_plan(path: str | os.PathLike[str], *, num_samples: int):
    """The plan of ``num_samples`` more trials of the finished sweep at ``path`` (local or a
    URI), in its own directory; its searcher is restored when the run builds it."""
    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.results.sweep_dir import read_spec_copy

    if num_samples < 1:
        raise UserError(f"must be >= 1, got {num_samples}", field="--num-samples")
    exp = storage.normalize(path)
    spec = read_spec_copy(exp)
    if spec.searcher.name == "grid":
        raise UserError("a grid sweep runs its grid once; start a new sweep", field="searcher")
    _finished_csv(exp)
    return assemble(spec.with_fields(num_samples=num_samples, storage_path=storage.parent(exp)))


def extend(
    path: str | os.PathLike[str], *, num_samples: int, address: str | None = None, plan=None
):
    """Run ``num_samples`` more trials of the finished sweep at ``path`` (local or a URI);
    ``plan``: its ``extension_plan``, already assembled (the command announced it)."""
    from raytune_hpo.results.sweep_dir import write_spec_copy
    from raytune_hpo.run.sweep import Guards, _finish, _fit, build_tuner, init_ray, resources

    exp = storage.normalize(path)
    plan = plan or extension_plan(exp, num_samples=num_samples)
    spec = plan.spec
    if address is None:
        resources.check_local(resources.demand(spec))
    total = len(pd.read_csv(io.StringIO(storage.read_text(_finished_csv(exp))))) + num_samples
    write_spec_copy(spec.with_fields(num_samples=total), exp)  # what the sweep now holds
    init_ray(address, None, (spec.runtime_env or {}).get("env_vars"))
    guards = Guards(plan, exp)

    def prepare(searcher) -> None:
        restore_searcher(searcher, exp, num_samples)

    tuner = build_tuner(plan, storage.name(exp), guards=guards, prepare=prepare)
    grid, interrupted = _fit(tuner)
    return _finish(grid, plan, guards, exp, interrupted)


__all__ = ["extend", "extension_plan", "restore_searcher"]
