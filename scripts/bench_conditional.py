"""Conditional versus flat: each searcher's regret on a conditional problem with its conditions
declared (``when:``) and on the same space flattened (every parameter always present).

The problem is ``raytune_hpo.study.functions.Branches``: ``branch`` selects Branin over two
parameters of its own or a Styblinski-Tang over 1-3 more (``depth``, whose last two parameters
form a chain), 7 parameters in all, at most 4 of which matter to any one configuration. Both
variants evaluate the same function (it reads only the parameters that apply); only what the
searcher is told differs. Regret: the best value after ``--evals`` sequential evaluations minus
the global minimum (0), over ``--seeds`` seeds, the same seeds for both variants; the table
gives the mean and SD of each, the mean of the per-seed ratios' logarithms as a ratio
(conditional / flat, < 1: the conditions help), the seeds where the conditional run did better
and worse, and a paired Wilcoxon signed-rank p.

In-process through the Searcher API (no Ray). ``random`` is uniform draws of every coordinate
with the seed, so both variants evaluate the very same configurations (it cannot use the
structure). ``grid`` takes ``SearchSpace.grid()`` in its order, with three values per float
(at 1/6, 1/2 and 5/6 of its range): the conditional grid holds 48 combinations, the flat one
1,458. Writes JSON (``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.searchers import SEARCHERS, create_searcher
from raytune_hpo.study.functions import Branches
from raytune_hpo.sweep.space import SearchSpace

PROBLEM = Branches()
METHODS = list(SEARCHERS)
BUDGETED = ("lhs", "rsa", "hypertiling")


def space_of(flat: bool, gridded: bool = False) -> dict:
    d = PROBLEM.space(flat=flat)
    if gridded:
        for entry in d.values():
            if entry["type"] == "float":
                lo, hi = entry["low"], entry["high"]
                entry["grid"] = [lo + (hi - lo) * q for q in (1 / 6, 1 / 2, 5 / 6)]
    return d


def run_one(job: tuple[str, bool, int, int]) -> dict:
    """One run: (method, flat, seed, evals) -> regret, evaluations used, seconds."""
    method, flat, seed, evals = job
    import torch

    torch.set_num_threads(1)  # Optuna's GP: one core per job (the machine is shared)
    start = time.perf_counter()
    space = SearchSpace.from_dict(space_of(flat, gridded=method == "grid"))
    if method == "random":
        rng = np.random.default_rng(seed)
        configs = [space.from_unit(u) for u in rng.random((evals, space.dims))]
        values = [PROBLEM(c) for c in configs]
    elif method == "grid":
        values = [PROBLEM(c) for c in space.grid()[:evals]]
    else:
        kw = {"budget": evals} if method in BUDGETED else {}
        s = create_searcher(method, space=space, metric="loss", mode="min", seed=seed, **kw)
        values = []
        for i in range(evals):
            cfg = s.suggest(str(i))
            if cfg is None or cfg == Searcher.FINISHED:
                break
            values.append(PROBLEM(cfg))
            s.on_trial_complete(str(i), {"loss": values[-1], "training_iteration": 1})
    regret = min(values) - PROBLEM.minimum if values else math.inf
    return {"regret": float(regret), "used": len(values), "s": time.perf_counter() - start}


def summary(cond: list[dict], flat: list[dict]) -> dict:
    from scipy.stats import wilcoxon

    a = np.array([r["regret"] for r in cond])
    b = np.array([r["regret"] for r in flat])
    tiny = 1e-12  # a regret of 0 (the optimum hit) enters the log ratio as 1e-12
    ratio = float(np.exp(np.mean(np.log(np.maximum(a, tiny) / np.maximum(b, tiny)))))
    diff = a - b
    p = float(wilcoxon(a, b).pvalue) if np.any(diff != 0) else 1.0
    return {
        "conditional": {"regrets": a.tolist(), "mean": a.mean(), "sd": a.std(ddof=1)},
        "flat": {"regrets": b.tolist(), "mean": b.mean(), "sd": b.std(ddof=1)},
        "geomean_ratio": ratio,
        "better": int((diff < 0).sum()),
        "worse": int((diff > 0).sum()),
        "wilcoxon_p": p,
        "used": {"conditional": [r["used"] for r in cond], "flat": [r["used"] for r in flat]},
        "seconds": sum(r["s"] for r in cond + flat),
    }


def table(methods: list[str], seeds: int, evals: int, jobs: int) -> dict[str, dict]:
    work = [
        (m, flat, seed, evals) for m in methods for flat in (False, True) for seed in range(seeds)
    ]
    with ProcessPoolExecutor(jobs) as pool:
        results = list(pool.map(run_one, work, chunksize=1))
    runs: dict[tuple[str, bool], list[dict]] = {}
    for (m, flat, _, _), r in zip(work, results, strict=True):
        runs.setdefault((m, flat), []).append(r)
    return {m: summary(runs[(m, False)], runs[(m, True)]) for m in methods}


def print_table(rows: dict[str, dict], seeds: int, evals: int) -> None:
    print(
        f"\nBranches (7 parameters, at most 4 apply): best regret after {evals} sequential "
        f"evaluations, {seeds} seeds"
    )
    head = f"{'searcher':16s}{'conditional':>20s}{'flat':>20s}{'ratio':>8s}{'better':>8s}"
    print(head + f"{'worse':>7s}{'p':>8s}")
    for m, r in rows.items():
        c, f = r["conditional"], r["flat"]
        cells = f"{c['mean']:>11.4g} ± {c['sd']:<6.3g}{f['mean']:>11.4g} ± {f['sd']:<6.3g}"
        tail = f"{r['geomean_ratio']:>8.3g}{r['better']:>8d}{r['worse']:>7d}{r['wilcoxon_p']:>8.3f}"
        print(f"{m:16s}{cells}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evals", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--out", default="benchmarks/results/conditional.json")
    args = ap.parse_args()
    rows = table(args.methods, args.seeds, args.evals, args.jobs)
    print_table(rows, args.seeds, args.evals)
    out = {
        "benchmark": "bench_conditional",
        "problem": {"name": PROBLEM.name, "space": PROBLEM.space(), "minimum": PROBLEM.minimum},
        "settings": {"seeds": args.seeds, "evals": args.evals, "sequential": True},
        "results": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
