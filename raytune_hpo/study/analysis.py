"""Statistics of a study (scipy / statsmodels): which searcher is better, and is it real?

Input is the study's trial table (problem, method, rep, trial, value, budget, config.*).

- ``final_best``: each run's best value.
- ``summary``: mean +- SD, a t-based 95% confidence interval and the median of the final best
  per method; the mean normalized loss and the average rank over repetitions.
- normalized loss (the RSA paper on random sequential addition, Latin hypercubes and
  hypertiling): in each repetition,
  a method's loss divided by the best loss any method reached in it (1 = the best). The loss is
  the regret to the known optimum where there is one (``value - minimum`` on test functions,
  ``maximum - value`` for a hypervolume, whose maximum is the Pareto front's), ``1 - value``
  for accuracies, the value itself otherwise.
- ``pairwise``: paired tests across repetitions of each method against the best-ranked one:
  Wilcoxon signed-rank (Holm-corrected over the comparisons) and, for accuracies, the
  two-proportion z-test on the pooled best accuracies (as the TinyVGG study did).
- ``best_so_far``: the running best per run, against evaluations and against compute (epochs).
- ``log_regret_table``: where the optimum is known (COCO's functions), the mean log10 regret of
  the final best per problem and method with its t-based 95% interval, and the mean rank;
  ``rank_by_group`` averages the ranks over groups of problems (COCO's five), ``at_or_below``
  counts the problems where one method's mean log10 regret is at or below another's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
KEYS = ["problem", "method", "rep"]


def _sign(mode: str) -> int:
    if mode not in ("min", "max"):
        raise ValueError(f"mode: got {mode!r}; allowed: min, max")
    return 1 if mode == "min" else -1


def best_so_far(trials: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Per run and trial: the best value so far, the evaluation count and the epochs used."""
    s = _sign(mode)
    df = trials.sort_values([*KEYS, "trial"]).copy()
    df["best"] = s * df.assign(v=s * df["value"].fillna(s * math.inf)).groupby(KEYS)["v"].cummin()
    df["evaluations"] = df.groupby(KEYS).cumcount() + 1
    df["compute"] = df.groupby(KEYS)["budget"].cumsum()
    return df


def final_best(trials: pd.DataFrame, mode: str) -> pd.DataFrame:
    """One row per run (problem, method, rep) with its best value."""
    s = _sign(mode)
    g = trials.assign(v=s * trials["value"]).groupby(KEYS)["v"].min()
    return (s * g).rename("best").reset_index()


def _loss(best: pd.Series, optimum: float | None, metric: str, sign: int = 1) -> pd.Series:
    if optimum is not None:
        return (sign * (best - optimum)).clip(lower=0)
    if "accuracy" in metric:
        return 1 - best
    return best


def summary(
    trials: pd.DataFrame,
    mode: str,
    metric: str = "loss",
    optima: dict | None = None,
    *,
    minima: dict | None = None,
) -> pd.DataFrame:
    """Per problem and method: n, mean, sd, ci_low, ci_high, median, norm_loss (mean over
    repetitions, and its median), rank (mean over repetitions). ``optima``: the known best
    value per problem (the minimum under min, the maximum under max; ``minima`` is its older
    name)."""
    s = _sign(mode)
    fb = final_best(trials, mode)
    optima = optima or minima or {}
    fb["loss"] = [
        float(_loss(pd.Series([b]), optima.get(p), metric, s).iloc[0])
        for p, b in zip(fb["problem"], fb["best"], strict=True)
    ]
    per_rep_best = fb.groupby(["problem", "rep"])["loss"].transform("min")
    fb["norm_loss"] = fb["loss"] / per_rep_best.where(per_rep_best > 0, np.nan)
    fb.loc[(fb["loss"] == 0) & (per_rep_best == 0), "norm_loss"] = 1.0
    fb["rank"] = (
        fb.groupby(["problem", "rep"])["best"].rank(method="average")
        if s == 1
        else (fb.groupby(["problem", "rep"])["best"].rank(method="average", ascending=False))
    )
    rows = []
    for (problem, method), g in fb.groupby(["problem", "method"], sort=False):
        x = g["best"].to_numpy(dtype=float)
        n = len(x)
        mean, sd = float(x.mean()), float(x.std(ddof=1)) if n > 1 else math.nan
        if n > 1 and sd > 0:
            lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
        else:
            lo = hi = mean
        rows.append(
            {
                "problem": problem,
                "method": method,
                "n": n,
                "mean": mean,
                "sd": sd,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "median": float(np.median(x)),
                "norm_loss": float(g["norm_loss"].mean()),
                "norm_loss_median": float(g["norm_loss"].median()),
                "rank": float(g["rank"].mean()),
            }
        )
    return pd.DataFrame(rows).sort_values(["problem", "rank"]).reset_index(drop=True)


def overall(summ: pd.DataFrame) -> pd.DataFrame:
    """Per method over all problems: the mean average rank, and the median over problems of
    the median normalized loss (a mean would be ruled by the problem where the best regret is
    nearly 0 and every ratio explodes)."""
    g = summ.groupby("method").agg(
        rank=("rank", "mean"), norm_loss_median=("norm_loss_median", "median")
    )
    return g.sort_values("rank").reset_index()


def pairwise(
    trials: pd.DataFrame,
    mode: str,
    metric: str = "loss",
    *,
    n_eval: int | None = None,
) -> pd.DataFrame:
    """Each method against the best-ranked one of its problem, paired by repetition."""
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportions_ztest

    summ = summary(trials, mode, metric)
    fb = final_best(trials, mode)
    rows = []
    for problem, sp in summ.groupby("problem", sort=False):
        leader = sp.iloc[0]["method"]
        wide = fb[fb["problem"] == problem].pivot(index="rep", columns="method", values="best")
        for method in sp["method"].iloc[1:]:
            pair = wide[[leader, method]].dropna()
            diff = pair[leader] - pair[method]
            if len(pair) >= 2 and (diff != 0).any():
                p = float(stats.wilcoxon(pair[leader], pair[method]).pvalue)
            else:
                p = 1.0
            row = {
                "problem": problem,
                "leader": leader,
                "method": method,
                "n": len(pair),
                "wilcoxon_p": p,
            }
            if "accuracy" in metric and n_eval:
                hits = np.round(pair[[leader, method]].mean().to_numpy() * n_eval * len(pair))
                total = np.array([n_eval * len(pair)] * 2)
                row["ztest_p"] = float(proportions_ztest(hits, total)[1])
            rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["wilcoxon_p_holm"] = np.nan
    for _, idx in out.groupby("problem").groups.items():
        out.loc[idx, "wilcoxon_p_holm"] = multipletests(out.loc[idx, "wilcoxon_p"], method="holm")[
            1
        ]
    out["significant"] = out["wilcoxon_p_holm"] < ALPHA
    return out


REGRET_FLOOR = 1e-8  # COCO's final target: a regret below it counts as solved


def log_regret_table(trials: pd.DataFrame, minima: dict[str, float]) -> pd.DataFrame:
    """Per problem (with a known minimum) and method: n, mean log10 regret of the final best
    (regrets floored at ``REGRET_FLOOR``), ci_low, ci_high (t, 95%), and rank: the mean over
    repetitions of the method's rank among the methods by final best (1 = best, ties shared)."""
    fb = final_best(trials[trials["problem"].isin(list(minima))], "min")
    fb["log_regret"] = np.log10(
        np.maximum(fb["best"] - fb["problem"].map(minima).astype(float), REGRET_FLOOR)
    )
    fb["rank"] = fb.groupby(["problem", "rep"])["log_regret"].rank(method="average")
    rows = []
    for (problem, method), g in fb.groupby(["problem", "method"], sort=False):
        x = g["log_regret"].to_numpy(dtype=float)
        mean, n = float(x.mean()), len(x)
        sd = float(x.std(ddof=1)) if n > 1 else 0.0
        lo, hi = (
            stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
            if sd > 0
            else (mean, mean)
        )
        rows.append(
            {
                "problem": problem,
                "method": method,
                "n": n,
                "mean": mean,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "rank": float(g["rank"].mean()),
            }
        )
    return pd.DataFrame(rows)


def rank_by_group(
    table: pd.DataFrame, groups: dict[str, str], methods: list[str] | None = None
) -> pd.DataFrame:
    """Mean rank per group (``groups``: problem -> group) and method, groups in their first
    order, then ``all`` over every problem; columns: group, problems, then one per method (in
    the order of ``methods``, by default the table's)."""
    t = table.assign(group=table["problem"].map(groups))
    order = list(dict.fromkeys(groups[p] for p in table["problem"]))
    methods = methods or list(dict.fromkeys(table["method"]))
    rows = []
    for name, g in [*((o, t[t["group"] == o]) for o in order), ("all", t)]:
        means = g.groupby("method")["rank"].mean()
        rows.append(
            {"group": name, "problems": g["problem"].nunique(), **means.reindex(methods).to_dict()}
        )
    return pd.DataFrame(rows)


def at_or_below(table: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """methods x methods: on how many problems the row method's mean log10 regret is at or
    below the column method's (problems where both ran)."""
    wide = table.pivot(index="problem", columns="method", values="mean")
    methods = methods or list(dict.fromkeys(table["method"]))
    counts = {
        a: {b: int((wide[a] <= wide[b])[wide[a].notna() & wide[b].notna()].sum()) for b in methods}
        for a in methods
    }
    out = pd.DataFrame(counts).T.reindex(index=methods, columns=methods)
    return out.rename_axis("method").reset_index()


__all__ = [
    "REGRET_FLOOR",
    "at_or_below",
    "best_so_far",
    "final_best",
    "log_regret_table",
    "overall",
    "pairwise",
    "rank_by_group",
    "summary",
]
