"""Every command at 10,000 trials: how long each takes and how much memory it needs, on a real
sweep of no-op trials (``raytune-hpo run``), each command a fresh process timed with
``/usr/bin/time`` (wall seconds, peak resident memory).

Measured: the sweep itself, ``results`` after it ends (``results.csv``) and live (``--by best``
reads Ray's experiment state and every trial's ``result.json``), ``report``, ``resume`` of the
finished sweep, a sweep warm-started from it (its 10,000 earlier results told to the searcher
before it suggests; for several searchers), ``compare`` of a study of 10,000 evaluations, and
each searcher's saved state after 10,000 observations (its size and the time to save it, which
Ray does on every experiment snapshot).

    python scripts/bench_scale.py --trials 10000 --out benchmarks/results
    python scripts/bench_scale.py --trials 200 --out /tmp/x          # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

NOOP = """
from ray import tune


def noop(config):
    tune.report({"score": -((config["x"] - 0.3) ** 2) - (config["y"] - 0.6) ** 2})
"""
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}
WARM_SEARCHERS = ("sobol", "rsa", "pso", "tpe")
STATE_SEARCHERS = ("sobol", "lhs", "rsa", "pso", "approx_gradient", "hypertiling", "tpe")
# Optuna's TPE fits its densities over every trial at each suggestion (about 25 us per earlier
# trial here): 10,000 suggestions would take 20 minutes, so its state is measured at 2,000.
STATE_CAP = {"tpe": 2000}


def timed(cmd: list[str], env: dict, log: Path, *, reuse: bool = False) -> dict:
    """Run ``cmd`` under /usr/bin/time: wall seconds and peak RSS (MB). ``reuse``: a step an
    earlier call in the same working directory measured is read back, not run again."""
    stats = log.with_suffix(".time")
    if reuse and stats.is_file() and stats.read_text().strip():
        return read_time(stats)
    full = ["/usr/bin/time", "-f", "%e %M", "-o", str(stats), *cmd]
    with open(log, "w") as out:
        done = subprocess.run(full, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=14400)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({done.returncode}): {log.read_text()[-3000:]}")
    return read_time(stats)


def read_time(stats: Path) -> dict:
    """What /usr/bin/time -f '%e %M' wrote: wall seconds and peak RSS."""
    wall, rss_kb = stats.read_text().split()[-2:]
    return {"wall_s": float(wall), "max_rss_mb": round(int(rss_kb) / 1024, 1)}


def sweep_file(work: Path, n: int, name: str, **extra) -> Path:
    import yaml

    (work / "noop.py").write_text(NOOP)
    data = {
        "name": name,
        "metric": "score",
        "mode": "max",
        "num_samples": n,
        "searcher": {"name": "random"},
        "space": SPACE,
        "trainable": {"function": "noop.py:noop"},
        "resources": {"cpu": 0.25},  # 8 no-op trials at once on 2 cores
        "storage_path": str(work / "runs"),
        **extra,
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def state_costs(n: int) -> dict:
    """Each searcher told ``n`` results, then saved: the state's size and the save's time."""
    from raytune_hpo.searchers import create_searcher
    from raytune_hpo.sweep.space import SearchSpace
    from raytune_hpo.testing import drive

    out = {}
    space = SearchSpace.from_dict(SPACE)
    with tempfile.TemporaryDirectory() as d:
        for name in STATE_SEARCHERS:
            s = create_searcher(name, space=space, seed=0, metric="loss", mode="min", budget=n)

            def f(cfg):
                return (cfg["x"] - 0.3) ** 2 + (cfg["y"] - 0.6) ** 2

            start = time.perf_counter()
            told = len(drive(s, min(n, STATE_CAP.get(name, n)), f=f))
            drive_s = time.perf_counter() - start
            path = os.path.join(d, f"{name}.pkl")
            start = time.perf_counter()
            s.save(path)
            out[name] = {
                "observations": told,
                "ms_per_suggestion": round(1000 * drive_s / max(told, 1), 3),
                "state_kb": round(os.path.getsize(path) / 1024, 1),
                "save_ms": round(1000 * (time.perf_counter() - start), 2),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument(
        "--work",
        help="a working directory kept after the run; the steps an earlier call there measured "
        "(its .time files) are read back, not run again",
    )
    args = ap.parse_args(argv)
    load_before = os.getloadavg()  # 1, 5, 15-minute load averages
    n = args.trials
    cli = [sys.executable, "-m", "raytune_hpo.cli"]
    rows: dict[str, dict] = {}
    with (
        tempfile.TemporaryDirectory(prefix="scale") as w,
        tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as ray_tmp,
    ):
        work = Path(args.work or w)
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        reuse = args.work is not None

        def step(cmd: list[str], log: str) -> dict:
            return timed(cmd, env, work / log, reuse=reuse)

        rows["run"] = step([*cli, "run", str(sweep_file(work, n, "many"))], "run.log")
        rows["run"]["ms_per_trial"] = round(1000 * rows["run"]["wall_s"] / n, 2)
        (exp,) = (work / "runs").glob("many-*")
        rows["results"] = step([*cli, "results", str(exp), "--top", "5"], "r.log")
        rows["results_live"] = step(
            [*cli, "results", str(exp), "--by", "best", "--top", "5"], "rl.log"
        )
        rows["report"] = step([*cli, "report", str(exp)], "rep.log")
        rows["resume"] = step([*cli, "resume", str(exp), "--top", "1"], "res.log")
        for searcher in WARM_SEARCHERS:
            warm = sweep_file(
                work, 8, f"warm-{searcher}", warm_start=[str(exp)], searcher={"name": searcher}
            )
            rows[f"warm_start_{searcher}"] = step(
                [*cli, "run", str(warm), "--top", "1"], f"w-{searcher}.log"
            )
        study = work / "study.yaml"
        study.write_text(
            textwrap.dedent(
                f"""\
                name: scale
                problem: {{function: branin}}
                methods: [{{name: sobol, searcher: {{name: sobol}}}}]
                repetitions: 1
                budget: {n}
                """
            )
        )
        rows["compare"] = step(
            [*cli, "compare", str(study), "--out", str(work / "study")], "cmp.log"
        )
        rows["report_study"] = step([*cli, "report", str(work / "study")], "rs.log")
    doc = {
        "benchmark": "scale",
        "trials": n,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,  # other work on the machine when it started
            "load_after": os.getloadavg(),
        },
        "setup": "no-op user trainable, random searcher, 8 trials at once (cpu 0.25), local disk",
        "commands": rows,
        "searcher_states": state_costs(n),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scale-{n}.json").write_text(json.dumps(doc, indent=2))
    print("| command | wall s | max RSS MB |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['wall_s']:.1f} | {v['max_rss_mb']:.0f} |")
    print("\n| searcher | ms/suggestion | state kB | save ms |\n|---|---|---|---|")
    for k, v in doc["searcher_states"].items():
        print(f"| {k} | {v['ms_per_suggestion']} | {v['state_kb']} | {v['save_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
