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

import dataclasses
import io
import os
import tempfile
from pathlib import Path

import pandas as pd

import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import RESULTS_CSV

SEARCHER_STATE = "searcher-state-*.pkl"  # Ray's Searcher.CKPT_FILE_TMPL
VARIANT_STATE = "basic-variant-state-*.json"  # Ray's BasicVariantGenerator.CKPT_FILE_TMPL


def _newest(exp: str, pattern: str) -> str | None:
    found = storage.glob(exp, pattern)
    return max(found, key=storage.name) if found else None


def _finished_table(exp: str) -> pd.DataFrame:
    csv = storage.join(exp, RESULTS_CSV)
    if not storage.is_file(csv):
        raise UserError(
            f"no {RESULTS_CSV}: the sweep has not finished; `raytune-hpo resume {exp}` first",
            source=exp,
        )
    return pd.read_csv(io.StringIO(storage.read_text(csv)))


def restore_searcher(searcher, exp: str, more: int) -> None:
    """Load the sweep's saved searcher state into ``searcher`` (ours, a library's, Ray's
    BasicVariantGenerator for random), which then continues from it; a searcher that plans a
    number of points (``extend_budget``) makes room for ``more``."""
    from ray.tune.search import BasicVariantGenerator

    variant = isinstance(searcher, BasicVariantGenerator)
    path = _newest(exp, VARIANT_STATE if variant else SEARCHER_STATE)
    if path is None:
        raise UserError("the searcher's saved state is missing; cannot extend", source=exp)
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / storage.name(path)
        local.write_bytes(storage.read_bytes(path))
        if variant:
            searcher.restore_from_dir(d)
            # Ray's private flags: its sequence was used up (the extension adds samples), and
            # a metric set means "set_search_properties refused" to the Tuner.
            searcher._finished, searcher._metric = False, None
        else:
            searcher.restore(str(local))
    inner = getattr(searcher, "inner", searcher)  # a checked plug-in: the plug-in itself
    if hasattr(inner, "extend_budget"):
        inner.extend_budget(more)


def extend(path: str | os.PathLike[str], *, num_samples: int, address: str | None = None):
    """Run ``num_samples`` more trials of the finished sweep at ``path`` (local or a URI)."""
    from raytune_hpo.assemble import assemble
    from raytune_hpo.run import Guards, _finish, _fit, build_tuner, init_ray, resources
    from raytune_hpo.sweep_dir import read_spec_copy, write_spec_copy

    if num_samples < 1:
        raise UserError(f"must be >= 1, got {num_samples}", field="--num-samples")
    exp = storage.normalize(path)
    spec = read_spec_copy(exp)
    if spec.searcher.name == "grid":
        raise UserError("a grid sweep runs its grid once; start a new sweep", field="searcher")
    total = len(_finished_table(exp)) + num_samples
    plan = assemble(spec.with_fields(num_samples=num_samples))
    if address is None:
        resources.check_local(spec.resources)
    write_spec_copy(spec.with_fields(num_samples=total), exp)  # what the sweep now holds
    init_ray(address, None, (spec.runtime_env or {}).get("env_vars"))
    name = storage.name(exp)
    spec_here = plan.spec.with_fields(storage_path=storage.parent(exp))
    plan = dataclasses.replace(plan, spec=spec_here)
    guards = Guards(plan, exp)

    def prepare(searcher) -> None:
        restore_searcher(searcher, exp, num_samples)

    grid, interrupted = _fit(build_tuner(plan, name, guards=guards, prepare=prepare))
    return _finish(grid, plan, guards, exp, interrupted)


__all__ = ["extend", "restore_searcher"]
