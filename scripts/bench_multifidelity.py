"""Multi-fidelity benchmark: how much compute BOHB, ASHA and HyperBand need to match random
search, on the multi-fidelity test function (``raytune_hpo.study.functions.MultiFidelity``).

Per seed: plain random search runs ``--random-trials`` trials at the full budget; its final
best is the target. Each method (real Ray Tune runs, side by side in one process) then counts
the epochs (sum over all trials, in the order results arrived) until one of its *full-budget*
results reaches that target. Reported: the ratio of that compute to random's own, per seed,
with the median and geometric mean over seeds (< 1: cheaper than random search). A method that
never reaches the target within its trials counts as not reached.

    python scripts/bench_multifidelity.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

from raytune_hpo.study import MethodSpec, ProblemSpec, StudySpec, run_tune

METHODS = {
    "random": {"searcher": {"name": "random"}, "scheduler": {"name": "fifo"}},
    "asha+random": {
        "searcher": {"name": "random"},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
    },
    "hyperband+random": {
        "searcher": {"name": "random"},
        "scheduler": {"name": "hyperband", "reduction_factor": 3},
    },
    "bohb": {"searcher": {"name": "bohb"}, "scheduler": {"name": "bohb", "reduction_factor": 3}},
}


def compute_to_reach(events, target: float, max_budget: int) -> float:
    """Epochs spent until a full-budget result <= target (inf if never)."""
    pairs = zip(events["epoch"], events["value"], strict=True)
    for spent, (epoch, value) in enumerate(pairs, 1):
        if epoch == max_budget and value <= target:
            return float(spent)
    return math.inf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--function", default="styblinski_tang")
    ap.add_argument("--dims", type=int, default=4)
    ap.add_argument("--max-budget", type=int, default=27)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--random-trials", type=int, default=64)
    ap.add_argument("--trials", type=int, default=128, help="trials for the early-stopping methods")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False)
    problem = {"function": args.function, "dims": args.dims, "max_budget": args.max_budget}
    storage = Path("/tmp/bench_multifidelity")
    rows = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        per = {}
        target = None
        for name, m in METHODS.items():
            trials = args.random_trials if name == "random" else args.trials
            study = StudySpec.from_dict(
                {
                    "name": "mf",
                    "problems": [problem],
                    "repetitions": 1,
                    "budget": trials,
                    "max_concurrent": args.concurrency,
                    "seed": 1000 * seed,
                    "methods": [{"name": name.replace("+", "-"), **m}],
                }
            )
            q: ProblemSpec = study.problems[0]
            method: MethodSpec = study.methods[0]
            t0 = time.perf_counter()
            table, events = run_tune(study, q, method, 0, storage, events=True)
            wall = time.perf_counter() - t0
            if name == "random":
                target = float(table["value"].min())
            per[name] = {
                "compute": compute_to_reach(events, target, args.max_budget),
                "total_epochs": int(len(events)),
                "best": float(table.loc[table["budget"] == args.max_budget, "value"].min()),
                "wall_s": round(wall, 1),
            }
        for name in METHODS:
            per[name]["ratio"] = per[name]["compute"] / per["random"]["compute"]
        rows.append({"seed": seed, "target": target, "methods": per})
        print(
            f"seed {seed}: " + ", ".join(f"{k} {v['ratio']:.3g}" for k, v in per.items()),
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    ray.shutdown()

    table = {}
    for name in METHODS:
        ratios = [r["methods"][name]["ratio"] for r in rows]
        finite = [x for x in ratios if math.isfinite(x)]
        table[name] = {
            "median_ratio": statistics.median(ratios) if ratios else math.nan,
            "geomean_ratio": math.exp(statistics.fmean(map(math.log, finite))) if finite else None,
            "reached": f"{len(finite)}/{len(ratios)}",
            "mean_total_epochs": statistics.fmean(r["methods"][name]["total_epochs"] for r in rows),
        }
    head = f"{'median ratio':>13s} {'geo-mean':>9s} {'reached':>8s} {'epochs run':>11s}"
    print(f"\n{'method':18s} {head}")
    for name, t in table.items():
        geo = f"{t['geomean_ratio']:.3f}" if t["geomean_ratio"] else "-"
        print(
            f"{name:18s} {t['median_ratio']:13.3f} {geo:>9s} {t['reached']:>8s} "
            f"{t['mean_total_epochs']:11.0f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "multifidelity",
        "problem": problem,
        "random_trials": args.random_trials,
        "trials": args.trials,
        "concurrency": args.concurrency,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": table,
        "per_seed": rows,
    }
    (out / "multifidelity.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out / 'multifidelity.json'}")


if __name__ == "__main__":
    main()
