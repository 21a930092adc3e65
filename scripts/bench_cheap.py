"""Cheap trials, bare Ray Tune against ``raytune-hpo run``: the same sweep side by side.

Two workloads, each in interleaved pairs (bare, ours, or ours, bare: the order alternates), every
run a fresh process with its own local Ray on all of this machine's cores:

- ``sleep``: trials that sleep ``--seconds`` and report once, at ``--slots`` trials at once
  (each trial asks for ``cores / slots`` CPUs), ``--rounds`` trials per slot;
- ``noop``: trials that only report, ``--noop`` trials each, 2 at once (one CPU each).

Bare is ``tune.Tuner`` with Ray's defaults (its own ``ray.init``, the random searcher, Ray's
loggers) and ``reuse_actors=True``; ours is ``python -m raytune_hpo.cli run`` on the matching
sweep file. Wall time is the whole process; CPU time is the process and every process it
started (Ray's raylet, GCS and workers, reaped on shutdown: ``RUSAGE_CHILDREN``). Each run also
counts the worker processes Ray started (their log files) and the distinct processes that ran a
trial. Speed-ups are bare / ours per pair (median and quartiles).

    python scripts/bench_cheap.py --slots 2,4,16 --noop 1000 --pairs 3
    python scripts/bench_cheap.py --slots "" --noop 10000 --pairs 1   # the 10,000-trial pair
    python scripts/bench_cheap.py --slots 4 --rounds 2 --noop "" --pairs 1 --out /tmp/x  # quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from bench_overhead import quartiles, timed  # scripts/, beside this one

MARK = "bench-cheap: "  # the line a run prints with its trial processes

TRAINABLE = """
import os
import time

from ray import tune


def trial(config):
    if config["seconds"]:
        time.sleep(config["seconds"])
    tune.report({"score": config["x"], "pid": os.getpid()})
"""

BARE = """
import json, os, sys
from ray import tune
sys.path.insert(0, {code!r})
from cheap import trial

tuner = tune.Tuner(
    tune.with_resources(trial, {{"cpu": {cpu!r}}}),
    param_space={{"x": tune.uniform(0.0, 1.0), "seconds": {seconds!r}}},
    tune_config=tune.TuneConfig(
        metric="score", mode="max", num_samples={n}, reuse_actors=True
    ),
    run_config=tune.RunConfig(name="bare", storage_path={storage!r}),
)
grid = tuner.fit()
assert len(grid) == {n} and not grid.errors
pids = {{r.metrics["pid"] for r in grid}}
print({mark!r} + json.dumps({{"trial_processes": len(pids)}}), flush=True)
"""

SWEEP = """\
name: cheap
metric: score
mode: max
num_samples: {n}
searcher: {{name: random}}
space: {{x: {{type: float, low: 0.0, high: 1.0}}}}
trainable: {{function: cheap.py:trial, config: {{seconds: {seconds!r}}}}}
resources: {{cpu: {cpu!r}}}
storage_path: {storage}
"""


def commands(work: Path, variant: str, n: int, cpu: float, seconds: float) -> list[str]:
    (work / "cheap.py").write_text(TRAINABLE)
    storage = work / "runs"
    if variant == "bare":
        script = work / "bare.py"
        script.write_text(
            BARE.format(
                code=str(work), cpu=cpu, seconds=seconds, n=n, storage=str(storage), mark=MARK
            )
        )
        return [sys.executable, str(script)]
    sweep = work / "sweep.yaml"
    sweep.write_text(SWEEP.format(n=n, cpu=cpu, seconds=seconds, storage=storage))
    return [sys.executable, "-m", "raytune_hpo.cli", "run", str(sweep), "--top", "1"]


def trial_processes(variant: str, out: str, work: Path) -> int:
    if variant == "bare":
        line = next(x for x in out.splitlines() if x.startswith(MARK))
        return int(json.loads(line[len(MARK) :])["trial_processes"])
    pids = set()
    for result in (work / "runs").glob("cheap-*/*/result.json"):
        for line in result.read_text().splitlines():
            pids.add(json.loads(line)["pid"])
    return len(pids)


def measure(variant: str, n: int, cpu: float, seconds: float) -> dict[str, float]:
    """One run in a fresh process with its own Ray temp dir."""
    with (
        tempfile.TemporaryDirectory(prefix="cheap") as work,
        tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as ray_tmp,
    ):
        env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        done, wall, cpu_s = timed(commands(Path(work), variant, n, cpu, seconds), env)
        if done.returncode != 0:
            raise RuntimeError(f"{variant} n={n}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        logs = Path(ray_tmp).glob("**/session_2*/logs/worker-*.out")  # not session_latest
        workers = len({p.name for p in logs})
        ran = trial_processes(variant, done.stdout, Path(work))
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu_s, 3),
        "trials_per_s": round(n / wall, 3),
        "worker_processes": workers,
        "trial_processes": ran,
    }


def pairs(case: dict, count: int) -> dict:
    runs: dict[str, list[dict]] = {"bare": [], "ours": []}
    for i in range(count):
        order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
        for variant in order:
            runs[variant].append(measure(variant, case["trials"], case["cpu"], case["seconds"]))
            print(f"{case['name']} pair {i + 1}/{count} {variant}: {runs[variant][-1]}", flush=True)
    out = {**case, "pairs": count, "runs": runs}
    for key in ("wall_s", "cpu_s"):
        ratios = [b[key] / o[key] for b, o in zip(runs["bare"], runs["ours"], strict=True)]
        summary = quartiles(ratios)  # bare / ours: above 1, ours is faster
        out[f"speedup_{key}"] = {k: round(v, 4) for k, v in summary.items()}
    for variant in runs:
        out[f"{variant}_trials_per_s"] = round(
            statistics.median(r["trials_per_s"] for r in runs[variant]), 3
        )
    return out


def cases(args) -> list[dict]:
    cores = os.cpu_count() or 1
    out = []
    for slots in (int(s) for s in args.slots.split(",") if s):
        out.append(
            {
                "name": f"sleep {args.seconds:g} s, {slots} slots",
                "slots": slots,
                "cpu": round(cores / slots, 6),
                "seconds": args.seconds,
                "trials": slots * args.rounds,
                "ideal_trials_per_s": slots / args.seconds,
            }
        )
    for n in (int(s) for s in args.noop.split(",") if s):
        out.append(
            {
                "name": f"no-op, {n} trials",
                "slots": 2,
                "cpu": cores / 2,
                "seconds": 0.0,
                "trials": n,
            }
        )
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| case | trials | pairs | bare trials/s | ours trials/s | speed-up wall (IQR) | "
        "speed-up CPU (IQR) | worker processes bare / ours | trial processes bare / ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        w, c = r["speedup_wall_s"], r["speedup_cpu_s"]
        procs = {
            v: statistics.median(x["worker_processes"] for x in r["runs"][v]) for v in r["runs"]
        }
        ran = {v: statistics.median(x["trial_processes"] for x in r["runs"][v]) for v in r["runs"]}
        lines.append(
            f"| {r['name']} | {r['trials']} | {r['pairs']} | {r['bare_trials_per_s']} | "
            f"{r['ours_trials_per_s']} | {w['median']:.2f} ({w['q1']:.2f}-{w['q3']:.2f}) | "
            f"{c['median']:.2f} ({c['q1']:.2f}-{c['q3']:.2f}) | {procs['bare']:g} / "
            f"{procs['ours']:g} | {ran['bare']:g} / {ran['ours']:g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", default="2,4,16", help="trials at once for the sleeping trials")
    ap.add_argument("--rounds", type=int, default=6, help="sleeping trials per slot")
    ap.add_argument("--seconds", type=float, default=1.0, help="how long a sleeping trial sleeps")
    ap.add_argument("--noop", default="1000", help="sizes of the no-op sweeps")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="cheap-trials", help="the JSON file's name")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    results = [pairs(case, args.pairs) for case in cases(args)]
    doc = {
        "benchmark": "cheap-trials",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,  # other work on the machine when it started
            "load_after": os.getloadavg(),
            # where installed, Ray's usage tag of a sweep's callbacks imported it (see docs)
            "mlflow_installed": importlib.util.find_spec("mlflow") is not None,
        },
        "setup": textwrap.dedent(__doc__).split("\n\n")[2].replace("\n", " "),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(doc, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
