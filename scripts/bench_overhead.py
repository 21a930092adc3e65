"""The service's own cost per trial: the same sweep of no-op trials through ``raytune-hpo run``
(the CLI), through ``run_sweep`` and through a bare ``tune.Tuner``, interleaved in one run.

Each run is a fresh process with its own local Ray (2 CPUs), a no-op user trainable that
reports once, the random searcher (Ray's BasicVariantGenerator), 2 trials at a time and actor
reuse. Wall time is the whole process; CPU time is the process and every process it started
(Ray's raylet, GCS and workers, reaped on shutdown: ``RUSAGE_CHILDREN``). Ratios are taken per
interleaved pair (ours / bare) and summarised by their median and quartiles, since this machine
is noisy; the extra milliseconds per trial are (ours - bare) / trials, from the medians.

    python scripts/bench_overhead.py --trials 100,1000 --pairs 5 --out benchmarks/results
    python scripts/bench_overhead.py --trials 20 --pairs 1 --out /tmp/x   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

VARIANTS = ("cli", "run_sweep", "bare")

NOOP = """
from ray import tune


def noop(config):
    tune.report({"score": config["x"]})
"""

BARE = """
import sys, ray
from ray import tune
from ray.tune.search import BasicVariantGenerator
sys.path.insert(0, {code!r})
from noop import noop

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
tuner = tune.Tuner(
    tune.with_resources(noop, {{"cpu": 1}}),
    param_space={{"x": tune.uniform(0.0, 1.0)}},
    tune_config=tune.TuneConfig(
        metric="score", mode="max", num_samples={n},
        search_alg=BasicVariantGenerator(max_concurrent=2, random_state=0),
        reuse_actors=True,
    ),
    run_config=tune.RunConfig(name="bare", storage_path={storage!r}, verbose=1),
)
grid = tuner.fit()
assert len(grid) == {n} and not grid.errors
ray.shutdown()
"""

RUN_SWEEP = """
import ray
from raytune_hpo import SweepSpec, run_sweep

spec = SweepSpec.from_yaml({sweep!r})
result = run_sweep(spec, num_cpus=2)
assert len(result.table) == {n} and (result.table["status"] == "OK").all()
ray.shutdown()
"""


def sweep_file(d: Path, n: int, storage: Path) -> Path:
    (d / "noop.py").write_text(NOOP)
    path = d / f"sweep-{n}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: overhead
            metric: score
            mode: max
            num_samples: {n}
            max_concurrent: 2
            searcher: {{name: random}}
            space: {{x: {{type: float, low: 0.0, high: 1.0}}}}
            trainable: {{function: noop.py:noop}}
            resources: {{cpu: 1}}
            storage_path: {storage}
            """
        )
    )
    return path


def command(variant: str, n: int, work: Path) -> list[str]:
    storage = work / f"runs-{variant}"
    sweep = sweep_file(work, n, storage)
    if variant == "cli":
        return [sys.executable, "-m", "raytune_hpo.cli", "run", str(sweep), "--top", "1"]
    script = work / f"{variant}.py"
    body = (
        BARE.format(code=str(work), n=n, storage=str(storage))
        if variant == "bare"
        else RUN_SWEEP.format(sweep=str(sweep), n=n)
    )
    script.write_text(body)
    return [sys.executable, str(script)]


def measure(variant: str, n: int) -> dict[str, float]:
    """One run in a fresh process (its own Ray temp dir): wall and CPU seconds."""
    with (
        tempfile.TemporaryDirectory(prefix="ovh") as work,
        tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as ray_tmp,
    ):
        env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        done, wall, cpu = timed(command(variant, n, Path(work)), env)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} n={n} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def timed(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cmd``: its result, wall seconds, and CPU seconds of it and every process it
    started and reaped (``RUSAGE_CHILDREN``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, wall, cpu


def quartiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if len(xs) == 1:
        return {"median": xs[0], "q1": xs[0], "q3": xs[0]}
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "q1": q[0], "q3": q[2]}


def summarise(n: int, runs: dict[str, list[dict]]) -> dict:
    out: dict = {"trials": n, "pairs": len(runs["bare"]), "runs": runs}
    for variant in ("cli", "run_sweep"):
        for key in ("wall_s", "cpu_s"):
            ratios = [o[key] / b[key] for o, b in zip(runs[variant], runs["bare"], strict=True)]
            out[f"{variant}_{key}_ratio"] = {k: round(v, 4) for k, v in quartiles(ratios).items()}
            ours = statistics.median(r[key] for r in runs[variant])
            bare = statistics.median(r[key] for r in runs["bare"])
            out[f"{variant}_{key}_extra_ms_per_trial"] = round(1000 * (ours - bare) / n, 3)
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| trials | pairs | cli/bare wall (IQR) | cli/bare CPU (IQR) | run_sweep/bare wall | "
        "extra ms/trial wall (cli) | extra ms/trial CPU (cli) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        w, c, s = r["cli_wall_s_ratio"], r["cli_cpu_s_ratio"], r["run_sweep_wall_s_ratio"]
        lines.append(
            f"| {r['trials']} | {r['pairs']} | {w['median']:.3f} ({w['q1']:.2f}-{w['q3']:.2f}) | "
            f"{c['median']:.3f} ({c['q1']:.2f}-{c['q3']:.2f}) | {s['median']:.3f} | "
            f"{r['cli_wall_s_extra_ms_per_trial']:.2f} | {r['cli_cpu_s_extra_ms_per_trial']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", default="100,1000", help="comma-separated sweep sizes")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved runs of each variant")
    ap.add_argument("--out", default="benchmarks/results", help="directory for the JSON")
    ap.add_argument("--seed", type=int, default=0, help="seeds the interleaving order")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()  # 1, 5, 15-minute load averages
    order = random.Random(args.seed)
    results = []
    for n in (int(x) for x in args.trials.split(",")):
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for i in range(args.pairs):
            variants = list(VARIANTS)
            order.shuffle(variants)  # interleaved, in a new order each round
            for v in variants:
                runs[v].append(measure(v, n))
                print(f"n={n} pair {i + 1}/{args.pairs} {v}: {runs[v][-1]}", flush=True)
        results.append(summarise(n, runs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "overhead",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,  # other work on the machine when it started
            "load_after": os.getloadavg(),
        },
        "setup": "no-op user trainable reporting once, random searcher, 2 concurrent, reuse_actors",
        "results": results,
    }
    (out / "overhead.json").write_text(json.dumps(doc, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
