"""The kill harness's tally (``scripts/kill_harness.py``): what a case's sweep must be after
its kills and resumes, and what they cost."""

from __future__ import annotations

import io
import json
import tempfile
import threading
from pathlib import Path

IMPORTS = threading.Lock()
SEQUENCES = ("sobol", "lhs")  # their suggestions do not depend on results


def check(case, rc: int) -> dict:
    """Every check of the module docstring; ``failures`` lists the ones that fail."""
    from raytune_hpo import storage

    fails: list[str] = []
    exp = case.exp or case._find_exp()
    if rc != 0 or exp is None:
        err = Path(f"{case.logs[-1]}.err").read_text()[-1500:]
        return {"failures": [f"rc {rc}: {err}"], "lost": case.args.samples, "repeated": 0}
    state = json.loads(storage.read_text(max(storage.glob(exp, "experiment_state-*.json"))))
    trials = [(json.loads(t), json.loads(m)) for t, m in state["trial_data"]]
    finished = [t for t, _ in trials if t["status"] == "TERMINATED"]
    ids = [t["trial_id"] for t in finished]
    n = case.args.samples
    lost = max(0, n - len(set(ids)))
    repeated = len(ids) - len(set(ids)) + max(0, len(set(ids)) - n)
    if len(trials) != n or len(finished) != n:
        fails.append(f"{len(trials)} trials, {len(finished)} finished, want {n}")
    import pandas as pd

    table = pd.read_csv(io.StringIO(storage.read_text(storage.join(exp, "results.csv"))))
    if sorted(table["trial_id"]) != sorted(ids) or not (table["status"] == "OK").all():
        fails.append("results.csv differs from the finished trials")
    schedule = _schedule(exp)
    kept = 0
    for t, _ in trials:
        text = storage.read_text(storage.join(exp, t["relative_logdir"], "result.json"))
        rows = [json.loads(x) for x in text.splitlines() if x.strip()]
        kept += len(rows)
        exploits = [e for e in schedule if e["trial_id"] == t["trial_id"]]
        problem = _rows_problem(rows, exploits)
        if problem:
            fails.append(f"{t['trial_id']}: {problem}")
        if exploits and any(t["config"].get(k) != v for k, v in exploits[-1]["config"].items()):
            fails.append(f"{t['trial_id']}: its config is not its last exploit's")
    ledger = [line for p in case.ledger.iterdir() for line in p.read_text().splitlines()]
    ran = sum(line.startswith("end ") for line in ledger)
    begun = sum(line.startswith("begin ") for line in ledger)
    configs = [{k: t["config"][k] for k in case.space} for t in finished]
    with IMPORTS:  # assemble imports each case's train.py as the module "train"
        fails += _searcher_checks(case, exp, configs)
    lines = []
    for log in case.logs:
        err = Path(f"{log}.err").read_text()
        if "Traceback" in err and log.name.endswith("-resume"):
            fails.append(f"{log.name}: a traceback on stderr")
        said = [x for x in err.splitlines() if x.startswith("raytune-hpo: resuming from")]
        lines += said
        restored = "Restoring the run" in err or log == case.logs[-1]
        if not said and log.name.endswith("-resume") and restored:
            fails.append(f"{log.name}: no resume line")
    return {
        "lost": lost,
        "repeated": repeated,
        "epochs_redone": ran - kept,
        "epochs_cut": begun - ran,  # killed while they ran
        "lost_per_trial_kill": kill_costs(case.ledger),
        "epochs_kept": kept,
        "resume_lines": lines,
        "failures": fails,
    }


def kill_costs(ledger: Path) -> list[int]:
    """For each kill and each trial it hit, the epochs that trial ran again: those it had
    begun (finished or not) beyond the step it went on from after the kill."""
    costs = []
    for path in sorted(ledger.iterdir()):
        begun, after_kill = 0, False  # the last step begun; a kill since
        for line in path.read_text().splitlines():
            if line == "kill":
                after_kill = begun > 0
                continue
            word, step = line.split()
            if word == "begin":
                if after_kill:
                    costs.append(max(0, begun - (int(step) - 1)))
                    after_kill = False
                begun = int(step)
    return costs


def resume_line(logs: list[Path], index: int | None) -> str | None:
    if index is None or index >= len(logs):
        return None
    err = Path(f"{logs[index]}.err").read_text().splitlines()
    return next((x for x in err if x.startswith("raytune-hpo: resuming from")), None)


def _schedule(exp: str) -> list[dict]:
    from raytune_hpo import storage

    path = storage.join(exp, "pbt_schedule.jsonl")
    if not storage.is_file(path):
        return []
    return [json.loads(x) for x in storage.read_text(path).splitlines() if x.strip()]


def _rows_problem(rows: list[dict], exploits: list[dict]) -> str | None:
    """None when the budgets run 1, 2, ... with each jump an exploit and each exploit a jump."""
    if not rows or rows[0]["training_iteration"] != 1:
        return "no first row"
    todo = list(exploits)
    for prev, row in zip(rows, rows[1:], strict=False):
        a, b = prev["training_iteration"], row["training_iteration"]
        e = todo[0] if todo else None
        if (
            e is not None
            and row.get("iterations_since_restore") == 1
            and a == e["training_iteration"]
            and b == e["copied_at"] + 1
        ):
            todo.pop(0)
        elif b != a + 1:
            return f"budget {a} followed by {b}"
    if len(todo) == 1 and todo[0]["training_iteration"] == rows[-1]["training_iteration"]:
        return None  # the exploit that ended it: its donor's checkpoint had nothing left to run
    return f"{len(todo)} exploit(s) not in its rows" if todo else None


def _searcher_checks(case, exp: str, configs: list[dict]) -> list[str]:
    import numpy as np

    from raytune_hpo import storage
    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.results.sweep_dir import read_spec_copy

    fails = []
    plan = assemble(read_spec_copy(exp))
    space = plan.spec.search_space
    mine = np.array(sorted(tuple(space.to_unit(c)) for c in configs))
    searcher = case.searcher
    if searcher in SEQUENCES:
        ref = plan.searcher()
        points = [space.to_unit(ref.suggest(f"r{i}")) for i in range(len(mine))]
        want = np.array(sorted(map(tuple, points)))
        if mine.shape != want.shape or not np.allclose(mine, want):
            fails.append("the configurations are not the sequence's first points")
    found = storage.glob(exp, "searcher-state-*.pkl")
    if not found or searcher == "random":
        return fails
    s = plan.searcher()
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / "state.pkl"
        local.write_bytes(storage.read_bytes(max(found)))
        s.restore(str(local))
    x, _ = s.observations
    seen = np.array(sorted(map(tuple, x))) if len(x) else np.empty((0, mine.shape[1]))
    if seen.shape != mine.shape or not np.allclose(seen, mine):
        fails.append(f"the searcher observed {len(x)} trials, not the {len(mine)} finished")
    return fails


# ---------------------------------------------------------------- main
