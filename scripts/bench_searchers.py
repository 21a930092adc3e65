"""Searcher benchmark: overhead per suggestion, and quality on test functions.

Table 1: median microseconds of one ``suggest`` + ``on_trial_complete`` once the searcher holds
1,000 and 10,000 observations, for each searcher, next to Ray's random search (one
``generate_variants`` draw per trial, what BasicVariantGenerator does) and Optuna's QMC sampler
through Ray's OptunaSearch (optional: skipped when optuna is not installed).

Table 2: mean best regret over ``--seeds`` seeds after ``--evals`` evaluations on Branin,
Ackley-5 and Styblinski-Tang-4, and each searcher's ratio to uniform random search (< 1 beats
random). Everything runs in one process, side by side; writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.searchers import SEARCHERS, UnitCubeSearcher, create_searcher, owns_space
from raytune_hpo.space import SearchSpace
from raytune_hpo.study import functions

# Our own algorithms; the model-based adapters (bohb, bayesopt, tpe) fit a model per
# suggestion by design and are compared in the studies (specs/studies/study-functions.yaml) instead.
CUSTOM = [
    n for n in SEARCHERS if owns_space(n) and issubclass(SEARCHERS[n].factory, UnitCubeSearcher)
]
OVERHEAD_SPACE = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(3)}


def options(name: str, budget: int) -> dict:
    """Settings that let every searcher keep going for ``budget`` suggestions."""
    if name in ("lhs", "rsa"):
        return {"budget": budget}
    if name == "pso":
        return {"epsilon": 1e-12}  # never converge during the overhead run
    if name == "approx_gradient":
        return {"levels": 25}  # 25^3 = 15,625 grid points
    return {}


def overhead_custom(name: str, n_obs: int, measure: int) -> float:
    s = create_searcher(
        name,
        space=OVERHEAD_SPACE,
        metric="loss",
        mode="min",
        seed=0,
        **options(name, n_obs + measure),
    )
    rng = np.random.default_rng(0)
    times = []
    for i in range(n_obs + measure):
        t0 = time.perf_counter()
        cfg = s.suggest(str(i))
        assert isinstance(cfg, dict), (name, i, cfg)
        s.on_trial_complete(str(i), {"loss": float(rng.random())})
        if i >= n_obs:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def overhead_ray_random(n_obs: int, measure: int) -> float:
    from ray.tune.search.variant_generator import generate_variants

    spec = {"config": SearchSpace.from_dict(OVERHEAD_SPACE).to_tune()}
    times = []
    for _ in range(measure):  # stateless: the count of observations does not matter
        t0 = time.perf_counter()
        next(generate_variants(spec))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def overhead_optuna_qmc(n_obs: int, measure: int) -> float | None:
    try:
        import optuna
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = OptunaSearch(
        SearchSpace.from_dict(OVERHEAD_SPACE).to_tune(),
        metric="loss",
        mode="min",
        sampler=optuna.samplers.QMCSampler(seed=0, warn_independent_sampling=False),
    )
    rng = np.random.default_rng(0)
    times = []
    for i in range(n_obs + measure):
        t0 = time.perf_counter()
        s.suggest(str(i))
        s.on_trial_complete(str(i), {"loss": float(rng.random())})
        if i >= n_obs:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def best_regret(s: Searcher, fn, evals: int) -> float:
    best = math.inf
    for i in range(evals):
        cfg = s.suggest(str(i))
        if cfg is None or cfg == Searcher.FINISHED:
            break
        y = fn(cfg)
        best = min(best, y)
        s.on_trial_complete(str(i), {"loss": y})
    return best - fn.minimum


def random_regret(fn, evals: int, seed: int) -> float:
    sp, rng = SearchSpace.from_dict(fn.space()), np.random.default_rng(seed)
    return min(fn(sp.from_unit(u)) for u in rng.random((evals, sp.dims))) - fn.minimum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evals", type=int, default=50)
    ap.add_argument("--measure", type=int, default=200, help="timed suggestions per cell")
    ap.add_argument("--obs", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--out", default="benchmarks/results/searchers.json")
    args = ap.parse_args()

    overhead: dict[str, dict[str, float | None]] = {}
    for n in args.obs:
        for name in CUSTOM:
            overhead.setdefault(name, {})[str(n)] = overhead_custom(name, n, args.measure)
        overhead.setdefault("ray_random", {})[str(n)] = overhead_ray_random(n, args.measure)
        overhead.setdefault("optuna_qmc", {})[str(n)] = overhead_optuna_qmc(n, args.measure)

    problems = [
        functions.make("branin"),
        functions.make("ackley", 5),
        functions.make("styblinski_tang", 4),
    ]
    quality: dict[str, dict[str, dict[str, float]]] = {}
    for fn in problems:
        rand = [random_regret(fn, args.evals, seed) for seed in range(args.seeds)]
        quality.setdefault("random", {})[fn.name] = {
            "mean_regret": float(np.mean(rand)),
            "ratio_to_random": 1.0,
        }
        for name in CUSTOM:
            kw = {"budget": args.evals} if name in ("lhs", "rsa") else {}
            if name == "approx_gradient":
                kw["levels"] = 8  # even: the grid does not contain the centre of a symmetric box
            regrets = [
                best_regret(
                    create_searcher(
                        name, space=fn.space(), metric="loss", mode="min", seed=seed, **kw
                    ),
                    fn,
                    args.evals,
                )
                for seed in range(args.seeds)
            ]
            quality.setdefault(name, {})[fn.name] = {
                "mean_regret": float(np.mean(regrets)),
                "ratio_to_random": float(np.mean(regrets) / np.mean(rand)),
            }

    out = {
        "benchmark": "bench_searchers",
        "overhead_us_median": overhead,
        "quality": quality,
        "settings": {
            "seeds": args.seeds,
            "evals": args.evals,
            "measure": args.measure,
            "overhead_space_dims": len(OVERHEAD_SPACE),
            "approx_gradient_levels_quality": 8,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)

    cols = [str(n) for n in args.obs]
    print("Table 1: median us per suggest + on_trial_complete, by observations held")
    print(f"{'searcher':16s}" + "".join(f"{c:>12s}" for c in cols))
    for name, row in overhead.items():
        cells = "".join(f"{'n/a' if row[c] is None else f'{row[c]:.0f}':>12s}" for c in cols)
        print(f"{name:16s}{cells}")
    names = [p.name for p in problems]
    print(
        f"\nTable 2: mean best regret after {args.evals} evaluations over {args.seeds} seeds "
        "(ratio to random in brackets)"
    )
    print(f"{'searcher':16s}" + "".join(f"{n:>26s}" for n in names))
    for name, row in quality.items():
        cells = "".join(
            f"{row[n]['mean_regret']:>17.4g} ({row[n]['ratio_to_random']:.2f})" for n in names
        )
        print(f"{name:16s}{cells}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
