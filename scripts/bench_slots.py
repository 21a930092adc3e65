"""Does the driver keep many more trial slots busy than the machine has cores? Trials of one
second (they sleep: the slots, not the CPU, bound them) run through ``run_sweep`` with 2, 8,
16 and 32 slots on a local Ray that declares that many CPUs; trials per second against the
ideal (slots per second), each slot count in a fresh process. The cost per trial of the driver
shows as the gap to the ideal.

    python scripts/bench_slots.py --slots 2,8,16,32 --rounds 6 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SLEEPER = """
import time

from ray import tune


def sleeper(config):
    time.sleep(config["seconds"])
    tune.report({"score": config["x"]})
"""

MARK = "slots-result: "  # the line of the run's figures among Ray's and the sweep's output
ONE = (
    f"MARK = {MARK!r}\n"
    + """
import json, sys, time, ray
from raytune_hpo import SweepSpec, run_sweep

slots, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
spec = SweepSpec.from_dict({
    "name": "slots", "metric": "score", "mode": "max", "num_samples": n,
    "searcher": {"name": "random"},
    "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
    "trainable": {"function": "sleeper.py:sleeper", "config": {"seconds": 1.0}},
    "resources": {"cpu": 1}, "storage_path": work + "/runs",
}, base_dir=work)
ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
start = time.perf_counter()
result = run_sweep(spec)
took = time.perf_counter() - start
assert len(result.table) == n and (result.table["status"] == "OK").all()
print(MARK + json.dumps({"slots": slots, "trials": n, "seconds": round(took, 2)}), flush=True)
"""
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", default="2,8,16,32")
    ap.add_argument("--rounds", type=int, default=6, help="trials per slot")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    rows = []
    for slots in (int(s) for s in args.slots.split(",")):
        with (
            tempfile.TemporaryDirectory() as work,
            tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as ray_tmp,
        ):
            Path(work, "sleeper.py").write_text(SLEEPER)
            Path(work, "one.py").write_text(ONE)
            env = {**os.environ, "RAY_TMPDIR": ray_tmp}
            env.pop("RAY_ADDRESS", None)
            n = slots * args.rounds
            done = subprocess.run(
                [sys.executable, str(Path(work, "one.py")), str(slots), str(n), work],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if done.returncode != 0:
                raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
            (line,) = [x for x in done.stdout.splitlines() if x.startswith(MARK)]
            row = json.loads(line[len(MARK) :])
        row["trials_per_s"] = round(row["trials"] / row["seconds"], 3)
        row["ideal_per_s"] = float(slots)  # one-second trials
        row["busy"] = round(row["trials_per_s"] / row["ideal_per_s"], 3)
        rows.append(row)
        print(row, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "slots",
        "machine": {"cpus": os.cpu_count(), "load_after": os.getloadavg()},
        "setup": "1 s sleeping user trainable, random searcher, one local Ray declaring as "
        "many CPUs as slots, trials of cpu 1, reuse_actors",
        "results": rows,
    }
    (out / "slots.json").write_text(json.dumps(doc, indent=2))
    print("| slots | trials | seconds | trials/s | ideal | busy |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['slots']} | {r['trials']} | {r['seconds']} | {r['trials_per_s']} | "
            f"{r['ideal_per_s']:.0f} | {r['busy']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
