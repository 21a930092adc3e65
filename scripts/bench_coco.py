"""COCO BBOB studies: compact summaries, and option settings of our adaptive searchers chosen on
some instances and checked on others.

``summary DIR [DIR ...] --out JSON``: for each study directory (``raytune-hpo compare`` of a
study on COCO functions), the mean log10 regret per function and method with its 95% interval,
mean ranks overall and by COCO group, on how many functions each method is at or below each
other, and every run's final best and evaluations used (what the tables are computed from),
small enough to commit where the trials file is not.

``tune DIR [DIR ...] --field a,b,... --out JSON``: each method of the studies outside the
field (candidate option settings, e.g. ``pso-s12``) ranked against the field alone, over every
function and instance of the studies: its mean rank among the field plus itself and on how
many problems its mean log10 regret is at or below ``--reference``'s. Directories are the same
study at different concurrency; a setting's score is its mean rank averaged over them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np
import pandas as pd

from raytune_hpo.study import analysis, coco, load_study


def _minima(study) -> dict[str, float]:
    return {
        q.label: study.recorded[q.label].minimum
        for q in study.problems
        if q.coco and q.label in study.recorded
    }


def summarize(path: str, without: list[str]) -> dict:
    study, trials = load_study(path)
    minima = _minima(study)
    methods = [m.name for m in study.methods]
    table = analysis.log_regret_table(trials, minima)
    groups = {q.label: coco.group_of(q.coco[1]) for q in study.problems if q.coco}
    ranks = analysis.rank_by_group(table, groups, methods)
    kept = [m for m in methods if m not in without]
    fewer = analysis.log_regret_table(trials[trials["method"].isin(kept)], minima)
    fewer_ranks = analysis.rank_by_group(fewer, groups, kept)
    fb = analysis.final_best(trials, "min")
    used = trials.groupby(analysis.KEYS)["trial"].count().rename("evaluations").reset_index()
    runs = fb.merge(used, on=analysis.KEYS)
    runs["regret"] = runs["best"] - runs["problem"].map(minima)
    cells = {
        p: {
            m: {k: round(float(r[k]), 4) for k in ("mean", "ci_low", "ci_high", "rank")}
            for m, r in g.set_index("method").iterrows()
        }
        for p, g in table.groupby("problem", sort=False)
    }
    return {
        "study": study.name,
        "description": study.description,
        "budget": study.budget,
        "repetitions": study.repetitions,
        "concurrency": study.concurrency,
        "methods": methods,
        "mean_rank": {m: round(float(ranks.iloc[-1][m]), 3) for m in methods},
        # the ranks again without some methods (e.g. our tpe, which is Optuna's TPE with its
        # defaults and the same seed: the two tie in every run and share their ranks)
        "without": without,
        "mean_rank_without": {m: round(float(fewer_ranks.iloc[-1][m]), 3) for m in kept},
        "mean_rank_by_group": {
            r["group"]: {m: round(float(r[m]), 3) for m in methods} for _, r in ranks.iterrows()
        },
        "at_or_below": analysis.at_or_below(table, methods).set_index("method").to_dict("index"),
        "mean_out": _mean_out(trials),
        "log10_regret": cells,
        "runs": {
            "columns": ["problem", "method", "rep", "regret", "evaluations"],
            "rows": [
                [r.problem, r.method, int(r.rep), float(f"{r.regret:.6g}"), int(r.evaluations)]
                for r in runs.itertuples()
            ],
        },
    }


def _mean_out(trials: pd.DataFrame) -> dict[str, float]:
    """Per method, the mean number of trials out when a result returned (the concurrency it
    really used; below the study's when the searcher left slots idle)."""
    if "out" not in trials:
        return {}
    means = trials.groupby("method")["out"].mean().dropna()  # copied runs may predate the column
    return {m: round(float(v), 3) for m, v in means.items()}


def standing(trials: pd.DataFrame, minima: dict, field: list[str], reference: str) -> dict:
    """Each non-field method's mean rank among field + itself, and its problems at or below
    the reference."""
    out = {}
    for c in sorted(set(trials["method"]) - set(field)):
        t = analysis.log_regret_table(trials[trials["method"].isin([*field, c])], minima)
        wide = t.pivot(index="problem", columns="method", values="mean")
        out[c] = {
            "mean_rank": float(t[t["method"] == c]["rank"].mean()),
            f"at_or_below_{reference}": int((wide[c] <= wide[reference]).sum()),
            "problems": int(len(wide)),
            "mean_out": _mean_out(trials[trials["method"] == c]).get(c),
            "field_mean_rank": {
                m: float(t[t["method"] == m]["rank"].mean()) for m in field if m in set(t["method"])
            },
        }
    return out


def tune(paths: list[str], field: list[str], reference: str) -> dict:
    per_study = {}
    for path in paths:
        study, trials = load_study(path)
        per_study[study.name] = {
            "concurrency": study.concurrency,
            "instances": sorted({q.instance or 1 for q in study.problems if q.coco}),
            "candidates": standing(trials, _minima(study), field, reference),
        }
    names = set.intersection(*(set(s["candidates"]) for s in per_study.values()))
    score = {
        c: float(np.mean([s["candidates"][c]["mean_rank"] for s in per_study.values()]))
        for c in names
    }
    return {"field": field, "reference": reference, "studies": per_study, "score": score}


def _print_tune(result: dict) -> None:
    ref = result["reference"]
    studies = list(result["studies"])
    print(f"{'candidate':34s}" + "".join(f"{s:>26s}" for s in studies) + f"{'score':>8s}")
    for c, sc in sorted(result["score"].items(), key=lambda kv: kv[1]):
        cells = ""
        for s in studies:
            r = result["studies"][s]["candidates"][c]
            cells += f"{r['mean_rank']:>12.3f} ({r[f'at_or_below_{ref}']:>3d}/{r['problems']})"
            cells += " " * 5
        print(f"{c:34s}{cells}{sc:>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary")
    s.add_argument("dirs", nargs="+")
    s.add_argument("--out", required=True)
    s.add_argument("--without", action="append", default=[], help="also rank without METHOD")
    t = sub.add_parser("tune")
    t.add_argument("dirs", nargs="+")
    t.add_argument("--field", required=True, help="comma-separated method names")
    t.add_argument("--reference", default="optuna-tpe")
    t.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "summary":
        studies = [summarize(d, args.without) for d in args.dirs]
        out = {"benchmark": "bench_coco summary", "studies": studies}
        for st in studies:
            print(st["study"], "mean rank:", st["mean_rank"], "without:", st["mean_rank_without"])
    else:
        result = tune(args.dirs, args.field.split(","), args.reference)
        out = {"benchmark": "bench_coco tune", **result}
        _print_tune(out)
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
