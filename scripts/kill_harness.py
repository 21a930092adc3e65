"""Kill harness: sweeps SIGKILLed at seeded random moments, again and again, then the tally.

Each case is a small sweep of a user function trainable (no torch; it sleeps ``--step-s`` per
step, checkpoints every step through ``raytune_hpo.report(state=...)`` and notes every step it
runs in a ledger) on one Ray head this script starts on loopback. A ``driver`` case SIGKILLs the
driver's whole process group at K moments spread over the sweep (a seeded number of results
reported, plus a random fraction of a step) and runs ``raytune-hpo resume`` after each; a
``worker`` case SIGKILLs a running trial's worker process instead (the trial comes back from its
checkpoint within ``max_failures``). At the end every case is checked:

- exactly ``num_samples`` trials, each TERMINATED once, in ``results.csv`` as OK;
- each trial's ``result.json``: its budget 1, 2, ..., n with no row twice or missing
  (population-based training: each jump is an exploit of ``pbt_schedule.jsonl``, and each
  exploit a jump);
- the searcher's saved observations are the finished trials (same points); Sobol and LHS
  suggested the first ``num_samples`` points of their unkilled sequence;
- no resume printed a traceback, and each printed its one line.

Measured: kills, resumes, trials lost and repeated, epochs redone (steps the ledger saw beyond
the rows kept) and seconds. Storage: a local directory, or S3 (moto's server on loopback).

    python scripts/kill_harness.py --kills 7 --storage local,s3 --out benchmarks/results
    python scripts/kill_harness.py --quick --out /tmp/k   # the short run the tests use
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when a test imports this file
from kill_procs import (  # noqa: E402
    BUCKET,
    ROOT,
    Zygote,
    free_port,
    kill_group,
    moto,
    ray_env,
    start_head,
    trial_workers,
)
from kill_tally import check, resume_line  # noqa: E402

TRAIN = """
import os
import time

from ray import tune

import raytune_hpo


def train(config):
    tid = tune.get_context().get_trial_id()
    state = raytune_hpo.restore_state() or {"step": 0}
    for step in range(state["step"] + 1, config["steps"] + 1):
        with open(os.path.join(config["ledger"], tid), "a") as f:
            f.write(f"begin {step}\\n")
        time.sleep(config["step_s"])
        with open(os.path.join(config["ledger"], tid), "a") as f:
            f.write(f"end {step}\\n")
        x, y = config["x"], config["y"]
        score = step * (1.0 - (x - 0.3) ** 2 - (y - 0.6) ** 2)
        raytune_hpo.report({"score": score, "cost": x + y}, state={"step": step})
"""

SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}
# name: (searcher, scheduler, two objectives)
FAMILIES = {
    "sobol": ("sobol", None, False),
    "pso-asha": ("pso", "asha", False),
    "approx_gradient": ("approx_gradient", None, False),
    "tpe-mo-asha": ("tpe", "asha", True),
    "bohb": ("bohb", "bohb", False),
    "pbt": ("random", "pbt", False),
    "lhs-median": ("lhs", "median", False),
    "tpe": ("tpe", None, False),
}
QUICK = ("sobol", "pso-asha", "approx_gradient", "tpe-mo-asha", "bohb", "pbt")


def sweep_file(case: str, family: str, args, ledger: Path, storage: str) -> dict:
    searcher, scheduler, mo = FAMILIES[family]
    data = {
        "name": case,
        "metric": ["score", "cost"] if mo else "score",
        "mode": ["max", "min"] if mo else "max",
        "num_samples": args.samples,
        "max_concurrent": 2,
        "max_failures": 3,
        "seed": args.seed,
        "searcher": {"name": searcher},
        "space": SPACE,
        "storage_path": storage,
        "trainable": {
            "function": "train.py:train",
            "config": {"ledger": str(ledger), "steps": args.steps, "step_s": args.step_s},
        },
    }
    if scheduler in ("asha", "bohb", "median"):
        data["scheduler"] = {"name": scheduler, "max_t": args.steps}
        if scheduler == "median":
            data["scheduler"]["grace_period"] = 2
    elif scheduler == "pbt":
        data["scheduler"] = {"name": "pbt", "perturbation_interval": 2}
    return data


# ---------------------------------------------------------------- processes
class Case:
    def __init__(self, name: str, family: str, where: str, mode: str, kills: int, ctx) -> None:
        self.name, self.family, self.where, self.mode, self.kills = name, family, where, mode, kills
        self.searcher, self.space = FAMILIES[family][0], tuple(SPACE)
        self.ctx, self.args = ctx, ctx.args
        self.dir = ctx.work / name
        self.dir.mkdir(parents=True)
        self.ledger = self.dir / "ledger"
        self.ledger.mkdir()
        (self.dir / "train.py").write_text(TRAIN)
        root = str(self.dir / "out") if where == "local" else f"s3://{BUCKET}/{name}"
        self.root = root
        import yaml

        self.sweep = self.dir / "sweep.yaml"
        data = sweep_file(name, family, self.args, self.ledger, root)
        self.sweep.write_text(yaml.safe_dump(data))
        self.rng = random.Random(f"{self.args.seed}-{name}")
        self.logs: list[Path] = []
        self.exp: str | None = None
        self.restarts = self.truncated = self.refused = 0
        self.truncate, self.truncated_log = False, None

    def driver(self, *argv: str):
        log = self.dir / f"{len(self.logs)}-{argv[0]}"
        self.logs.append(log)
        if getattr(self.ctx, "zygote", None) is not None:
            return self.ctx.zygote.start([*argv, "--address", self.ctx.address], log, self.dir)
        return subprocess.Popen(
            [sys.executable, "-m", "raytune_hpo.cli", *argv, "--address", self.ctx.address],
            env=self.ctx.env,
            stdout=open(f"{log}.out", "w"),  # noqa: SIM115 - the driver owns them
            stderr=open(f"{log}.err", "w"),  # noqa: SIM115
            start_new_session=True,
            cwd=self.dir,
        )

    def rows(self) -> int:
        from raytune_hpo import storage

        exp = self.exp or self._find_exp()
        if exp is None:
            return 0
        n = 0
        for trial in storage.listdir(exp):
            f = storage.join(exp, trial, "result.json")
            with contextlib.suppress(Exception):
                n += sum(1 for x in storage.read_text(f).splitlines() if x.strip())
        return n

    def steps_done(self) -> int:
        """Steps the trials finished, from their ledgers (at once; storage's rows come with
        Ray's snapshots, which under PBT are only timed, so kills aimed by them came late)."""
        return sum(p.read_text().count("end ") for p in self.ledger.iterdir() if p.is_file())

    def _find_exp(self) -> str | None:
        """The sweep directory, once it holds something to resume from."""
        from raytune_hpo import storage

        names = [n for n in storage.listdir(self.root) if n.startswith(self.name)]
        if len(names) == 1:
            exp = storage.join(self.root, names[0])
            inside = storage.listdir(exp)
            if any(n.startswith("experiment_state-") for n in inside) or ".raytune-hpo" in inside:
                self.exp = exp
        return self.exp

    def _start_over(self) -> subprocess.Popen:
        """A kill before the sweep saved anything: remove what it wrote, run it again."""
        from raytune_hpo import storage

        for n in storage.listdir(self.root):
            path = storage.join(self.root, n)
            if storage.is_uri(path):
                fs, fs_path = storage.filesystem(path)
                fs.delete_dir(fs_path)
            else:
                shutil.rmtree(path)
        self.restarts += 1
        return self.driver("run", str(self.sweep))

    def run(self) -> dict:
        start = time.monotonic()
        total = self.args.samples * self.args.steps
        if FAMILIES[self.family][1] in ("asha", "bohb", "median"):
            total *= 0.4  # trials stopped early report fewer rows
        targets = sorted(self.rng.uniform(0, 0.9 * total) for _ in range(self.kills))
        proc = self.driver("run", str(self.sweep))
        landed = resumes = 0
        kill = {"worker": self._worker, "node": self._node}.get(self.mode, self._kill_at)
        for i, target in enumerate(targets):
            cut = self.truncate and i == len(targets) - 1
            if cut:  # once trials have reported: Ray has saved a searcher state to cut
                target = max(target, self.args.samples)
            aim = functools.partial(self._kill_at, early=False) if cut else kill
            hit = aim(proc, target)
            while hit is None and self._refused(proc):  # the same kill in the new run
                resumes -= 1
                proc = self._start_over()
                hit = aim(proc, target)
            if hit is None:  # the sweep ended first
                break
            landed += 1
            if cut:
                self._truncate()
                self.truncated_log = len(self.logs)  # the resume that follows
            if self.mode == "driver":
                exp = self.exp or self._find_exp()
                if exp is None:  # killed before Ray saved anything: start again
                    proc = self._start_over()
                    continue
                proc = self.driver("resume", exp)
                resumes += 1
        rc = proc.wait(timeout=self.args.timeout)
        if self._refused(proc):
            resumes -= 1
            rc = self._start_over().wait(timeout=self.args.timeout)
        out = {
            "case": self.name,
            "family": self.family,
            "storage": self.where,
            "kill": self.mode,
            "kills": landed,
            "resumes": resumes,
            "restarts": self.restarts,
            "resumes_refused": self.refused,
            "staged_copies_cut": self.truncated,
            "after_the_cut": resume_line(self.logs, self.truncated_log),
            "seconds": round(time.monotonic() - start, 1),
            "rc": rc,
        }
        out.update(check(self, rc))
        return out

    def _refused(self, proc) -> bool:
        """The resume ended saying to start the sweep again: killed after Ray's first experiment
        state but before the searcher's, nothing had run. The harness does what the one line
        says, and the kill is followed by that new run, not by a resume (before, the next kill
        found the refused driver gone and was lost: the short run's S3 case had 1 kill of 2)."""
        if proc.wait(timeout=self.args.timeout) != 2 or self.rows() != 0:
            return False
        if "start the sweep again" not in Path(f"{self.logs[-1]}.err").read_text():
            return False
        self.exp, self.refused = None, self.refused + 1
        return True

    def _kill_at(self, proc, target: float, early: bool = True):
        deadline = time.monotonic() + self.args.timeout
        started = time.monotonic()
        # now and then while the driver starts or restores
        early = self.rng.random() < 0.15 and early
        delay = self.rng.uniform(0, 4.0)
        # Else once the sweep has reached the target and this driver has made progress: a
        # resumed sweep already holds the rows of the targets before.
        target = max(target, self.steps_done() + 1)
        while True:
            if proc.poll() is not None:
                return None
            if early and time.monotonic() - started >= delay:
                break
            if not early and self.steps_done() >= target:
                time.sleep(self.rng.uniform(0, 1.5 * self.args.step_s))
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no progress before the kill")
            time.sleep(0.1 if self.where == "local" else 0.3)
        kill_group(proc)
        self._mark()
        return True

    def _mark(self) -> None:
        """A kill line in every trial's ledger: what each kill cost is read back from them."""
        for p in self.ledger.iterdir():
            with open(p, "a") as f:
                f.write("kill\n")

    def _truncate(self) -> None:
        """Cut the newest searcher state short mid-file on storage and in the killed
        driver's staging copy (what a kill during Ray's copy would leave, both at once)."""
        from raytune_hpo import storage

        exp = self.exp or self._find_exp()
        if exp is None:
            return
        name = storage.name(max(storage.glob(exp, "searcher-state-*.pkl"), key=storage.name))
        data = storage.read_bytes(storage.join(exp, name))
        storage.write_bytes(storage.join(exp, name), data[: len(data) // 2])
        staged = Path(self.ctx.env["RAY_TMPDIR"]).glob(
            f"ray/session_*/artifacts/*/{storage.name(exp)}/driver_artifacts/{name}"
        )
        for copy in staged:
            copy.write_bytes(copy.read_bytes()[: len(data) // 2])
            self.truncated += 1

    def _node(self, proc: subprocess.Popen, target: float):
        """SIGKILL the worker node (the context's ``kill_node``) once a trial runs there."""
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            if self.rows() >= target and trial_workers(self.ctx.node_pid()):
                time.sleep(self.rng.uniform(0, self.args.step_s))
                self.ctx.kill_node()
                self._mark()
                return True
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no trial on the worker node to kill")

    def _worker(self, proc: subprocess.Popen, target: float):
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            pids = trial_workers(self.ctx.head_pid, self.name)  # this case's, not another's
            if self.rows() >= target and pids:
                time.sleep(self.rng.uniform(0, self.args.step_s))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.rng.choice(sorted(pids)), signal.SIGKILL)
                self._mark()
                return True
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no trial worker to kill")


class Context:
    pass


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=7, help="driver kills per case (7)")
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated")
    p.add_argument("--storage", default="local", help="local,s3")
    p.add_argument("--s3-kills", type=int, default=None, help="kills per S3 case (--kills)")
    p.add_argument("--s3-families", default="sobol", help="families run on S3 (sobol)")
    p.add_argument("--worker-kills", type=int, default=0, help="a worker-kill case with N kills")
    p.add_argument(
        "--truncate", action="store_true", help="a case whose searcher state is cut short"
    )
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--step-s", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=3, help="cases at once (3)")
    p.add_argument("--timeout", type=float, default=400)
    p.add_argument("--quick", action="store_true", help="the tests' short run")
    p.add_argument("--keep", action="store_true", help="keep the cases' files")
    p.add_argument(
        "--fork",
        action="store_true",
        help="fork drivers from a zygote (faster; but they share Ray's ID generator, see "
        "kill_procs.Zygote: two starting at once can crash in Ray)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--address", help="a Ray head to use (its RAY_AUTH_TOKEN in the environment)")
    p.add_argument("--head-pid", type=int, help="that head's process (worker kills find trials)")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.families, args.storage, args.s3_kills = 3, ",".join(QUICK), "local,s3", 2
        args.truncate = True
        args.samples, args.steps, args.step_s, args.parallel = 5, 5, 0.25, 4
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    ctx = Context()
    ctx.args, ctx.work = args, Path(tempfile.mkdtemp(prefix="kill-harness-"))
    extra = {}
    server = None
    if "s3" in args.storage:
        port = free_port()
        server = moto(port)
        extra = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        os.environ.update(extra)
    ctx.env = ray_env(extra)
    cases = build_cases(args, ctx)
    started = time.monotonic()
    if args.address:  # the head's token and temp dir (where drivers stage their files)
        ctx.head, ctx.address = None, args.address
        ctx.head_pid = args.head_pid
        for k in ("RAY_AUTH_TOKEN", "RAY_TMPDIR"):
            ctx.env[k] = os.environ.get(k, "")
    else:
        ctx.head, ctx.address = start_head(ctx.env, ctx.work / "head.log", cpus=2 * args.parallel)
        ctx.head_pid = ctx.head.pid
    ctx.zygote = Zygote(ctx.env) if args.fork else None  # with the head's token
    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            results = list(pool.map(_safe_run, cases))
    finally:
        if ctx.zygote is not None:
            ctx.zygote.close()
        if ctx.head is not None:
            kill_group(ctx.head)
        if server is not None:
            server.stop()
    report = {
        "what": "kill harness: SIGKILL at seeded random moments, resume, tally",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{os.cpu_count()} cores",
        "load_average_at_end": os.getloadavg()[0],  # other jobs on the machine
        "seconds": round(time.monotonic() - started, 1),
        "cases": results,
        "totals": {
            k: sum(r.get(k, 0) for r in results)
            for k in (
                "kills",
                "resumes",
                "lost",
                "repeated",
                "epochs_redone",
                "epochs_cut",
                "epochs_kept",
            )
        },
    }
    report["totals"]["failures"] = sum(len(r["failures"]) for r in results)
    costs = [c for r in results for c in r.get("lost_per_trial_kill", [])]
    report["totals"]["trials_hit"] = len(costs)  # a trial running (or paused) at a kill
    report["totals"]["epochs_per_trial_hit"] = {
        n: costs.count(n) for n in sorted(set(costs))
    }  # how many trials ran 0, 1, 2, ... epochs again after a kill
    args.out.mkdir(parents=True, exist_ok=True)
    name = "kill-harness-quick.json" if args.quick else "kill-harness.json"
    (args.out / name).write_text(json.dumps(report, indent=2))
    _table(results, report)
    if report["totals"]["failures"] or args.keep:
        print(f"the cases' files (logs, sweeps, ledgers): {ctx.work}")
    else:
        shutil.rmtree(ctx.work, ignore_errors=True)
    return 0 if report["totals"]["failures"] == 0 else 1


def build_cases(args, ctx) -> list[Case]:
    cases = [
        Case(f"{fam}-local", fam, "local", "driver", args.kills, ctx)
        for fam in filter(None, args.families.split(","))
    ]
    if "s3" in args.storage:
        kills = args.kills if args.s3_kills is None else args.s3_kills
        for fam in filter(None, args.s3_families.split(",")):
            cases.append(Case(f"{fam}-s3", fam, "s3", "driver", kills, ctx))
    if args.worker_kills:
        cases.append(Case("sobol-worker", "sobol", "local", "worker", args.worker_kills, ctx))
    if args.truncate:  # the last kill of the first local case cuts its searcher state short
        if not cases or cases[0].where != "local":
            cases.insert(0, Case("sobol-truncate", "sobol", "local", "driver", 1, ctx))
        cases[0].truncate = True
    return cases


def _safe_run(case: Case) -> dict:
    try:
        return case.run()
    except Exception as e:
        return {"case": case.name, "failures": [f"{type(e).__name__}: {e}"], "lost": 0}


def _table(results: list[dict], report: dict) -> None:
    cols = ("case", "kills", "resumes", "lost", "repeated", "epochs_redone", "epochs_cut")
    cols += ("seconds",)
    print(" ".join(f"{c:>14s}" for c in cols))
    for r in results:
        print(" ".join(f"{r.get(c, '-')!s:>14s}" for c in cols))
        for f in r["failures"]:
            print(f"    FAIL {f}")
    t = report["totals"]
    print(
        f"total: {t['kills']} kills, {t['resumes']} resumes, {t['lost']} lost, "
        f"{t['repeated']} repeated, {t['epochs_redone']} whole epochs redone and "
        f"{t['epochs_cut']} cut while running, of {t['epochs_kept']} kept; "
        f"{t['failures']} failed checks, {report['seconds']} s; epochs a hit trial ran again: "
        f"{t['epochs_per_trial_hit']} (epochs: trials)"
    )


if __name__ == "__main__":
    sys.exit(main())
