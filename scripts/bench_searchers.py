"""Searcher benchmark: overhead per suggestion, and search quality next to Optuna's samplers.

Table 1 (``--overhead``): median microseconds of one ``suggest`` + ``on_trial_complete`` once the
searcher holds 1,000 and 10,000 observations, for each of our unit-cube searchers, next to Ray's
random search (one ``generate_variants`` draw per trial, what BasicVariantGenerator does) and
Optuna's QMC sampler through Ray's OptunaSearch.

Table 1b (``--at-once K``): mean and median microseconds per suggestion and completion with K
suggestions out (the oldest completed first) next to one at a time, for ``--searchers``
(approx_gradient: with free slots it fits its exploration model). Writes
``benchmarks/results/searchers-at-once.json``.

Table 2 (``--quality``): mean best regret after ``--evals`` sequential evaluations over
``--seeds`` seeds (the same seeds for every method), and each method's ratio to Optuna's TPE
used directly (< 1 beats TPE). Peers: Optuna's TPESampler, GPSampler and CmaEsSampler driven
directly (ask/tell, default settings), next to our searchers through the Searcher API. Problems:
the project's functions (raytune_hpo/study/functions.py) in 2 to 8 dimensions, on which the PSO and
approximate-gradient defaults were chosen (``TUNING``), and standard functions never used for
tuning (``HELD_OUT``). Boxes whose optimum is the box centre are shifted by 17.3% of their
width, so that no grid (odd ``levels``) hits the optimum by construction.

``--tune``: candidate settings of PSO and the approximate gradient on the tuning problems only
(how the defaults were chosen). Everything runs in one process per job; torch (Optuna's GP) is
kept to one thread. Writes JSON (``--out``) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
from ray.tune.search import Searcher

from raytune_hpo.searchers import SEARCHERS, UnitCubeSearcher, create_searcher, owns_space
from raytune_hpo.study import functions
from raytune_hpo.study.functions import TestFunction
from raytune_hpo.sweep.space import SearchSpace

# ----------------------------------------------------------------------------- problems


def _rosenbrock(x):
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


def _rastrigin(x):
    return float(10 * len(x) + (x**2 - 10 * np.cos(2 * np.pi * x)).sum())


def _griewank(x):
    i = np.arange(1, len(x) + 1)
    return float((x**2).sum() / 4000 - np.prod(np.cos(x / np.sqrt(i))) + 1)


_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def _hartmann6(x):
    alpha = np.array([1.0, 1.2, 3.0, 3.2])
    return float(-(alpha * np.exp(-(_H_A * (x - _H_P) ** 2).sum(1))).sum())


def _michalewicz(x):
    i = np.arange(1, len(x) + 1)
    return float(-(np.sin(x) * np.sin(i * x**2 / np.pi) ** 20).sum())


def shifted(fn: TestFunction, fraction: float = 0.173) -> TestFunction:
    """The same function on a box moved by ``fraction`` of its width (optimum off-centre)."""
    bounds = tuple((lo + fraction * (hi - lo), hi + fraction * (hi - lo)) for lo, hi in fn.bounds)
    return replace(fn, name=fn.name + "s", bounds=bounds)


def tuning_problems() -> list[TestFunction]:
    return [
        functions.make("branin"),
        shifted(functions.make("ackley", 3)),
        functions.make("styblinski_tang", 4),
        functions.make("levy", 6),
        functions.make("styblinski_tang", 8),
    ]


def held_out_problems() -> list[TestFunction]:
    return [
        TestFunction("rosenbrock4", 4, ((-5.0, 10.0),) * 4, _rosenbrock, 0.0),
        shifted(TestFunction("rastrigin3", 3, ((-5.12, 5.12),) * 3, _rastrigin, 0.0)),
        shifted(TestFunction("griewank5", 5, ((-600.0, 600.0),) * 5, _griewank, 0.0)),
        TestFunction("hartmann6", 6, ((0.0, 1.0),) * 6, _hartmann6, -3.32237),
        TestFunction("michalewicz5", 5, ((0.0, math.pi),) * 5, _michalewicz, -4.687658),
    ]


# ----------------------------------------------------------------------------- methods
OPTUNA = ("optuna_tpe", "optuna_gp", "optuna_cmaes")
OURS = ("random", "sobol", "lhs", "rsa", "hypertiling", "pso", "approx_gradient", "tpe")
QUALITY_METHODS = (*OURS, "bayesopt", "bayesopt_init5", *OPTUNA)
# Labels that run a registered searcher with other options.
VARIANTS = {"bayesopt_init5": ("bayesopt", {"n_initial_points": 5})}
REFERENCE = "optuna_tpe"

# Candidate settings for --tune (the chosen defaults are among them).
# Candidate settings for --tune, every option spelt out (the chosen defaults are "pso" and
# "approx_gradient:levels5,refine8").
_PSO = dict(
    swarm_size=8, w=0.4, phi_l=1.49618, phi_g=1.49618, attractor="personal", topology="global"
)
_PSO.update(per_dimension=True, init="sobol", stall=0, max_speed=0.5, init_speed=0.1)
_PAPER = dict(_PSO, w=0.5, phi_l=1.5, phi_g=1.5, attractor="current", per_dimension=False)
_PAPER.update(init="random", init_speed=0.0, max_speed=math.inf)
TUNE_VARIANTS: dict[str, tuple[str, dict]] = {
    "pso:paper(w.5,phi1.5)": ("pso", _PAPER),
    "pso:previous-default": ("pso", dict(_PAPER, attractor="personal", init_speed=0.1)),
    "pso": ("pso", _PSO),
    **{f"pso:w{w}": ("pso", dict(_PSO, w=w)) for w in (0.3, 0.35, 0.45, 0.5, 0.6, 0.7298)},
    **{f"pso:S{n}": ("pso", dict(_PSO, swarm_size=n)) for n in (5, 6, 10, 12)},
    **{f"pso:init={i}": ("pso", dict(_PSO, init=i)) for i in ("random", "lhs")},
    **{f"pso:phi{p}": ("pso", dict(_PSO, phi_l=p, phi_g=p)) for p in (1.2, 1.8)},
    "pso:ring": ("pso", dict(_PSO, topology="ring")),
    "pso:scalar-factors": ("pso", dict(_PSO, per_dimension=False)),
    "pso:attractor=current": ("pso", dict(_PSO, attractor="current")),
    "pso:stall3": ("pso", dict(_PSO, stall=3)),
    "pso:stall5": ("pso", dict(_PSO, stall=5)),
    "pso:max_speed0.2": ("pso", dict(_PSO, max_speed=0.2)),
    "pso:init_speed0": ("pso", dict(_PSO, init_speed=0.0)),
    **{
        f"approx_gradient:levels{n},refine{r}": ("approx_gradient", dict(levels=n, refine=r))
        for n in (3, 4, 5, 6, 8)
        for r in (4, 8, 12)
    },
}


def _optuna_sampler(kind: str, seed: int):
    import optuna

    if kind == "optuna_tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "optuna_gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed)


def run_optuna(kind: str, fn: TestFunction, evals: int, seed: int) -> tuple[float, int]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=_optuna_sampler(kind, seed))
    best = math.inf
    for _ in range(evals):
        trial = study.ask()
        cfg = {
            f"x{i}": trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(fn.bounds)
        }
        y = fn(cfg)
        study.tell(trial, y)
        best = min(best, y)
    return best - fn.minimum, evals


def run_searcher(s: Searcher, fn: TestFunction, evals: int) -> tuple[float, int]:
    best, used = math.inf, 0
    for i in range(evals):
        cfg = s.suggest(str(i))
        if cfg is None or cfg == Searcher.FINISHED:
            break
        y = fn(cfg)
        best = min(best, y)
        used += 1
        s.on_trial_complete(str(i), {"loss": y})
    return best - fn.minimum, used


def run_random(fn: TestFunction, evals: int, seed: int) -> tuple[float, int]:
    sp, rng = SearchSpace.from_dict(fn.space()), np.random.default_rng(seed)
    return min(fn(sp.from_unit(u)) for u in rng.random((evals, sp.dims))) - fn.minimum, evals


def run_one(job: tuple) -> tuple[float, int]:
    method, options, fn, evals, seed = job
    import torch

    torch.set_num_threads(1)  # Optuna's GP: one core per job (the machine is shared)
    if method == "random":
        return run_random(fn, evals, seed)
    if method in OPTUNA:
        return run_optuna(method, fn, evals, seed)
    kw = dict(options)
    if method in ("lhs", "rsa", "hypertiling"):
        kw.setdefault("budget", evals)
    s = create_searcher(method, space=fn.space(), metric="loss", mode="min", seed=seed, **kw)
    return run_searcher(s, fn, evals)


def quality_table(runs: dict[str, tuple[str, dict]], problems, evals, seeds, jobs) -> dict:
    """{label: {problem: {...}}} for every (label -> (method, options)) on every problem."""
    work = [
        (label, fn.name, (method, opts, fn, evals, seed))
        for label, (method, opts) in runs.items()
        for fn in problems
        for seed in range(seeds)
    ]
    with ProcessPoolExecutor(jobs) as pool:
        results = list(pool.map(run_one, [w[2] for w in work], chunksize=1))
    out: dict[str, dict[str, dict]] = {}
    for (label, name, _), (regret, used) in zip(work, results, strict=True):
        cell = out.setdefault(label, {}).setdefault(name, {"regrets": [], "used": []})
        cell["regrets"].append(float(regret))
        cell["used"].append(used)
    for row in out.values():
        for cell in row.values():
            cell["mean_regret"] = float(np.mean(cell["regrets"]))
            cell["median_regret"] = float(np.median(cell["regrets"]))
    return out


def add_ratios(table: dict, reference: str) -> None:
    for row in table.values():
        for name, cell in row.items():
            ref = table[reference][name]["mean_regret"]
            cell[f"ratio_to_{reference}"] = cell["mean_regret"] / ref if ref > 0 else math.nan


def print_quality(table: dict, names: list[str], reference: str, title: str) -> None:
    print(f"\n{title}")
    print(f"{'method':30s}" + "".join(f"{n:>22s}" for n in names))
    for label, row in table.items():
        cells = "".join(
            f"{row[n]['mean_regret']:>13.4g} ({row[n][f'ratio_to_{reference}']:5.2f})"
            for n in names
        )
        print(f"{label:30s}{cells}")


# ----------------------------------------------------------------------------- overhead
CUSTOM = [
    n for n in SEARCHERS if owns_space(n) and issubclass(SEARCHERS[n].factory, UnitCubeSearcher)
]
OVERHEAD_SPACE = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(3)}


def overhead_options(name: str, budget: int) -> dict:
    """Settings that let every searcher keep going for ``budget`` suggestions."""
    if name in ("lhs", "rsa", "hypertiling"):
        return {"budget": budget}
    if name == "pso":
        return {"epsilon": 1e-12}  # never converge during the overhead run
    return {}


def overhead_custom(name: str, n_obs: int, measure: int) -> float:
    """Median microseconds of one suggest + one on_trial_complete, one at a time."""
    return statistics.median(overhead_times(name, n_obs, measure, 1)) * 1e6


def overhead_times(name: str, n_obs: int, measure: int, at_once: int) -> list[float]:
    """Seconds of each of the last ``measure`` suggest + complete pairs, after ``n_obs``, with
    ``at_once`` suggestions out (the oldest completed first)."""
    s = create_searcher(
        name,
        space=OVERHEAD_SPACE,
        metric="loss",
        mode="min",
        seed=0,
        **overhead_options(name, n_obs + measure),
    )
    rng = np.random.default_rng(0)
    times = []
    for i in range(n_obs + measure + at_once - 1):
        t0 = time.perf_counter()
        cfg = s.suggest(str(i))
        assert isinstance(cfg, dict), (name, i, cfg)
        if i >= at_once - 1:
            s.on_trial_complete(str(i - at_once + 1), {"loss": float(rng.random())})
        if i >= n_obs + at_once - 1:
            times.append(time.perf_counter() - t0)
    return times


def overhead_ray_random(n_obs: int, measure: int) -> float:
    from ray.tune.search.variant_generator import generate_variants

    spec = {"config": SearchSpace.from_dict(OVERHEAD_SPACE).to_tune()}
    times = []
    for _ in range(measure):  # stateless: the count of observations does not matter
        t0 = time.perf_counter()
        next(generate_variants(spec))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def overhead_optuna_qmc(n_obs: int, measure: int) -> float:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

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


def at_once_table(names: list[str], obs: list[int], measure: int, at_once: int) -> dict:
    """Mean and median microseconds per suggest + complete with ``at_once`` out, next to one
    at a time (searchers that model their results do it when a slot is free)."""
    table: dict[str, dict[str, float]] = {}
    for name in names:
        for n in obs:
            for k in (1, at_once):
                start = time.perf_counter()
                t = overhead_times(name, n, measure, k)
                row = table.setdefault(f"{name} ({k} out)", {})
                row[f"{n}_mean"] = statistics.mean(t) * 1e6
                row[f"{n}_median"] = statistics.median(t) * 1e6
                row[f"{n}_whole_run_s"] = time.perf_counter() - start  # n + measure of them
    print(
        f"Table 1b: us per suggest + on_trial_complete after n held ({measure} timed): mean / "
        f"median; and seconds for the whole run of n + {measure}"
    )
    print(f"{'searcher':24s}" + "".join(f"{n:>27d}" for n in obs))
    for label, row in table.items():
        cells = "".join(
            f"{row[f'{n}_mean']:>9.0f} /{row[f'{n}_median']:>6.0f} /"
            f"{row[f'{n}_whole_run_s']:>7.1f} s"
            for n in obs
        )
        print(f"{label:24s}{cells}")
    return table


def overhead_table(obs: list[int], measure: int) -> dict:
    table: dict[str, dict[str, float]] = {}
    for n in obs:
        for name in CUSTOM:
            table.setdefault(name, {})[str(n)] = overhead_custom(name, n, measure)
        table.setdefault("ray_random", {})[str(n)] = overhead_ray_random(n, measure)
        table.setdefault("optuna_qmc", {})[str(n)] = overhead_optuna_qmc(n, measure)
    print("Table 1: median us per suggest + on_trial_complete, by observations held")
    print(f"{'searcher':16s}" + "".join(f"{n:>12d}" for n in obs))
    for name, row in table.items():
        print(f"{name:16s}" + "".join(f"{row[str(n)]:>12.0f}" for n in obs))
    return table


# ----------------------------------------------------------------------------- main
def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overhead", action="store_true", help="table 1")
    ap.add_argument("--quality", action="store_true", help="table 2")
    ap.add_argument("--tune", action="store_true", help="candidate settings on TUNING only")
    ap.add_argument("--methods", nargs="+", default=list(QUALITY_METHODS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evals", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--measure", type=int, default=200, help="timed suggestions per cell")
    ap.add_argument("--obs", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--out", default=None, help="JSON path (default by mode)")
    ap.add_argument(
        "--at-once", type=int, default=0, help="table 1b: this many out at once, vs one"
    )
    ap.add_argument("--searchers", nargs="+", default=["approx_gradient"], help="for table 1b")
    args = ap.parse_args()
    settings = {"seeds": args.seeds, "evals": args.evals, "sequential": True}
    if args.overhead:
        table = overhead_table(args.obs, args.measure)
        out = {"benchmark": "bench_searchers --overhead", "overhead_us_median": table}
        out["settings"] = {"measure": args.measure, "overhead_space_dims": len(OVERHEAD_SPACE)}
        write(out, args.out or "benchmarks/results/searchers.json")
    if args.at_once:
        table = at_once_table(args.searchers, args.obs, args.measure, args.at_once)
        out = {"benchmark": f"bench_searchers --at-once {args.at_once}", "us": table}
        out["settings"] = {"measure": args.measure, "overhead_space_dims": len(OVERHEAD_SPACE)}
        write(out, args.out or "benchmarks/results/searchers-at-once.json")
    if args.tune:
        runs = {"random": ("random", {}), "optuna_tpe": ("optuna_tpe", {}), **TUNE_VARIANTS}
        problems = tuning_problems()
        table = quality_table(runs, problems, args.evals, args.seeds, args.jobs)
        add_ratios(table, REFERENCE)
        for row in table.values():  # one number per setting: geometric mean ratio to TPE
            ratios = [row[p.name][f"ratio_to_{REFERENCE}"] for p in problems]
            row["_geomean_ratio"] = float(np.exp(np.mean(np.log(ratios))))
        print_quality(table, [p.name for p in problems], REFERENCE, "Tuning problems")
        print("\ngeometric mean of the ratio to TPE")
        for label, row in sorted(table.items(), key=lambda kv: kv[1]["_geomean_ratio"]):
            print(f"  {label:32s}{row['_geomean_ratio']:8.3f}")
        out = {"benchmark": "bench_searchers --tune", "settings": settings, "tuning": table}
        write(out, args.out or "benchmarks/results/searchers-tuning.json")
    if args.quality:
        runs = {m: VARIANTS.get(m, (m, {})) for m in args.methods}
        out = {"benchmark": "bench_searchers --quality", "settings": settings}
        for group, problems in (("tuning", tuning_problems()), ("held_out", held_out_problems())):
            table = quality_table(runs, problems, args.evals, args.seeds, args.jobs)
            if REFERENCE in table:
                add_ratios(table, REFERENCE)
                title = (
                    f"Table 2 ({group}): mean best regret after {args.evals} evaluations over "
                    f"{args.seeds} seeds (ratio to Optuna TPE)"
                )
                print_quality(table, [p.name for p in problems], REFERENCE, title)
            out[group] = table
        write(out, args.out or "benchmarks/results/searchers-quality.json")


def write(out: dict, path: str) -> None:
    out["machine"] = machine()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
