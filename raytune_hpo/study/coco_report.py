"""The COCO part of a study's report: where each method is strong, by function and by COCO's
five groups of functions (Hansen et al., "Real-parameter black-box optimization benchmarking
2009: noiseless functions definitions"), from the log10 regret of each run's final best."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from raytune_hpo.results.plots import Section, png
from raytune_hpo.study import analysis, coco
from raytune_hpo.study.spec import StudySpec


def coco_problems(study: StudySpec) -> dict[str, tuple[str, int]]:
    """label -> (suite, function number) of the study's COCO problems, in study order."""
    return {q.label: f for q in study.problems if (f := q.coco_function)}


def sections(
    study: StudySpec, trials: pd.DataFrame, minima: dict[str, float], colors: dict
) -> tuple[list[Section], dict[str, bytes]]:
    """The COCO sections and their plot (none when the study has no COCO problem)."""
    problems = coco_problems(study)
    minima = {k: v for k, v in minima.items() if k in problems}
    if not minima:
        return [], {}
    table = analysis.log_regret_table(trials, minima)
    methods = [m.name for m in study.methods if m.name in set(table["method"])]
    groups = {label: coco.group_of(f) for label, (_, f) in problems.items()}
    floor = f"{analysis.REGRET_FLOOR:g}"
    out = [
        Section(
            "COCO functions: mean log10 regret of the final best (95% interval)",
            text=(
                f"Regret = best f(x) - f_opt of the instance, floored at {floor} (COCO's final "
                "target); lower is better. 'best' is the method with the lowest mean."
            ),
            tables=[_per_function(table, problems, methods)],
        ),
        Section(
            "COCO groups: mean rank per method",
            text=(
                "Rank of each run's final best among the methods in its repetition (1 = best, "
                "ties shared), averaged over repetitions, then over the functions of each group."
            ),
            tables=[_fmt(analysis.rank_by_group(table, groups, methods), 2)],
        ),
        Section(
            "COCO functions where the row method is at or below the column method",
            text=f"Counts of functions (of {len(minima)}) by mean log10 regret.",
            tables=[analysis.at_or_below(table, methods)],
        ),
        Section("log10 regret vs evaluations", plot="log_regret.png"),
    ]
    bsf = analysis.best_so_far(trials[trials["problem"].isin(list(minima))], "min")
    return out, {"log_regret.png": _curves(bsf, list(minima), minima, methods, colors)}


def _per_function(table: pd.DataFrame, problems: dict, methods: list[str]) -> pd.DataFrame:
    rows = []
    for label, (_, f) in problems.items():
        t = table[table["problem"] == label].set_index("method")
        if t.empty:
            continue
        row = {"function": label, "name": coco.NAMES[f - 1], "group": coco.group_of(f)}
        for m in methods:
            if m in t.index:
                r = t.loc[m]
                row[m] = f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        row["best"] = t["mean"].idxmin()
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(df: pd.DataFrame, digits: int) -> pd.DataFrame:
    return df.map(lambda v: f"{v:.{digits}f}" if isinstance(v, float) else v)


def _curves(
    bsf: pd.DataFrame, problems: list[str], minima: dict, methods: list[str], colors: dict
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(problems), 4)
    rows = math.ceil(len(problems) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(problems) :]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, problems, strict=False):
        d = bsf[bsf["problem"] == label]
        regret = np.log10(np.maximum(d["best"] - minima[label], analysis.REGRET_FLOOR))
        d = d.assign(log_regret=regret)
        for method in methods:
            g = d[d["method"] == method]
            if g.empty:
                continue
            curve = g.groupby("evaluations")["log_regret"].agg(["mean", "std", "count"])
            half = 1.96 * curve["std"].fillna(0) / np.sqrt(curve["count"])
            ax.plot(curve.index, curve["mean"], color=colors[method], label=method, lw=1.2)
            lo, hi = curve["mean"] - half, curve["mean"] + half
            ax.fill_between(curve.index, lo, hi, color=colors[method], alpha=0.12)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("log10 regret (mean, 95% CI)", fontsize=8)
    axes.flat[0].legend(fontsize=6)
    return png(fig)


__all__ = ["coco_problems", "sections"]
