"""The search-frontier studies of issue 37, summarised side by side: for each study directory
(``raytune-hpo compare`` of ``specs/studies/frontier-*.yaml``), each method's mean rank over
the problems (rank of each run's final best among the methods of its repetition, 1 = best,
ties shared, averaged over repetitions, then problems), its mean rank by group (COCO's five
groups; the tabular benchmarks' three families), on how many problems it is at or below each
other method (COCO: mean log10 regret; tabular: mean final loss), the evaluations it spent on a
configuration it had already evaluated in that run (repeats), and the trials it kept out at
once (``out``). Writes JSON and prints the tables as Markdown.

    python scripts/bench_frontier.py DIR [DIR ...] --out benchmarks/results/frontier/summary.json

A study still running (or stopped part way) is summarised from the runs on disk
(``DIR/runs/*.csv``) with ``--spec STUDY.yaml`` per directory (the study file, for the problems
and methods): only the problems and repetitions where every method has finished count, and the
summary says how many of each that is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import pandas as pd

from raytune_hpo.study import analysis, coco, load_study


def _group(problem) -> str:
    if problem.coco:
        return coco.group_of(problem.coco[1])
    if problem.tabular is not None:
        return problem.tabular_names[0].split("/")[0]
    return "other"


def ranks(study, trials: pd.DataFrame) -> pd.DataFrame:
    """Per problem and method: mean rank over repetitions and the mean score compared
    (COCO: log10 regret; otherwise the final best loss)."""
    minima = {q.label: study.recorded[q.label].minimum for q in study.problems if q.coco}
    if minima and len(minima) == len(study.problems):
        return analysis.log_regret_table(trials, minima)
    fb = analysis.final_best(trials, "min")
    fb["rank"] = fb.groupby(["problem", "rep"])["best"].rank(method="average")
    return fb.groupby(["problem", "method"], as_index=False).agg(
        mean=("best", "mean"), rank=("rank", "mean")
    )


def repeats(trials: pd.DataFrame) -> dict[str, float]:
    """Per method: the mean number of evaluations per run of a configuration evaluated before
    in the same run."""
    cols = [c for c in trials.columns if c.startswith("config.")]
    if not cols:
        return {}
    keys = pd.util.hash_pandas_object(trials[cols], index=False)
    dup = keys.groupby([trials["problem"], trials["method"], trials["rep"]]).transform(
        lambda s: s.duplicated()
    )
    per_run = dup.groupby([trials["problem"], trials["method"], trials["rep"]]).sum()
    return {m: round(float(v), 2) for m, v in per_run.groupby(level=1).mean().items()}


def from_runs(path: str, spec: str):
    """The study of ``spec`` and the trials of its runs finished under ``path``, restricted to
    the problem and repetition pairs every method has finished."""
    import glob

    from raytune_hpo.study import StudySpec
    from raytune_hpo.study.runner import record

    study = StudySpec.from_yaml(spec)
    study = study.model_copy(update={"recorded": {q.label: record(q) for q in study.problems}})
    frames = [pd.read_csv(f) for f in sorted(glob.glob(os.path.join(path, "runs", "*.csv")))]
    trials = pd.concat(frames, ignore_index=True)
    methods = [m.name for m in study.methods]
    labels = [q.label for q in study.problems]
    trials = trials[trials["method"].isin(methods) & trials["problem"].isin(labels)]
    trials = trials[trials["rep"] < study.repetitions]
    done = trials.groupby(["problem", "rep"])["method"].nunique()
    full = done[done == len(methods)].reset_index()[["problem", "rep"]]
    return study, trials.merge(full, on=["problem", "rep"])


def summarize(path: str, spec: str | None = None) -> dict:
    study, trials = from_runs(path, spec) if spec else load_study(path)
    pairs = trials[["problem", "rep"]].drop_duplicates()
    methods = [m.name for m in study.methods if m.name in set(trials["method"])]
    table = ranks(study, trials)
    groups = {q.label: _group(q) for q in study.problems}
    by_group = analysis.rank_by_group(table, groups, methods)
    mean_out = trials.groupby("method")["out"].mean().round(3).to_dict() if "out" in trials else {}
    return {
        "study": study.name,
        "description": study.description,
        "problems": len(study.problems),
        "repetitions": study.repetitions,
        "problems_complete": int(pairs["problem"].nunique()),
        "problem_repetitions_complete": int(len(pairs)),
        "budget": study.budget,
        "concurrency": study.concurrency,
        "methods": methods,
        "mean_rank": {m: round(float(by_group.iloc[-1][m]), 3) for m in methods},
        "mean_rank_by_group": {
            r["group"]: {m: round(float(r[m]), 3) for m in methods} for _, r in by_group.iterrows()
        },
        "at_or_below": analysis.at_or_below(table, methods).set_index("method").to_dict("index"),
        "repeats_per_run": repeats(trials),
        "mean_out": mean_out,
        "per_problem": {
            p: {
                m: {"mean": round(float(r["mean"]), 5), "rank": round(float(r["rank"]), 3)}
                for m, r in g.set_index("method").iterrows()
            }
            for p, g in table.groupby("problem", sort=False)
        },
    }


def markdown(s: dict) -> str:
    methods = s["methods"]
    lines = [
        f"### {s['study']}: {s['description']}",
        "",
        f"Every method finished: {s['problem_repetitions_complete']} of "
        f"{s['problems'] * s['repetitions']} problem x repetition pairs "
        f"({s['problems_complete']} of {s['problems']} problems).",
        "",
        "| group | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for group, row in s["mean_rank_by_group"].items():
        best = min(row.values())
        cells = [f"**{row[m]:.2f}**" if row[m] == best else f"{row[m]:.2f}" for m in methods]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines += ["", "At or below (row method's mean at or below the column's, problems):", ""]
    lines += ["| method | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(str(s["at_or_below"][m][o]) for o in methods) + " |")
    rep, out = s["repeats_per_run"], s["mean_out"]
    lines += ["", "| method | repeats per run | mean trials out |", "|---|---|---|"]
    lines += [f"| {m} | {rep.get(m, '-')} | {out.get(m, '-')} |" for m in methods]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--spec", action="append", default=[], help="study file per DIR (runs)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    specs = args.spec or [None] * len(args.dirs)
    studies = [summarize(d, spec) for d, spec in zip(args.dirs, specs, strict=True)]
    out = {"benchmark": "bench_frontier", "studies": studies}
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    for s in studies:
        print(markdown(s))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
