"""``raytune-hpo report DIR``: a study as one self-contained HTML page (plots embedded as PNG
data URIs, no server, no network) and a Markdown twin with the plots as files beside it
(``raytune_hpo.results.plots``). The study directory may be local or a URI
(``raytune_hpo.storage``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

import raytune_hpo.storage as storage
from raytune_hpo.names import config_name
from raytune_hpo.results.plots import Section, colors, figure_grid, fmt, png, write_report
from raytune_hpo.study import analysis, coco_report, pareto_report
from raytune_hpo.study.runner import load_study
from raytune_hpo.study.spec import StudySpec


def _curves(
    bsf: pd.DataFrame, problems: list[str], x: str, xlabel: str, metric: str, colors: dict
) -> bytes:
    fig, axes = figure_grid(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        d = bsf[bsf["problem"] == problem]
        for method, g in d.groupby("method", sort=False):
            if x == "evaluations":
                curve = g.groupby("evaluations")["best"].agg(["mean", "std", "count"])
            else:  # compute: step curves of each run on a common grid of epochs
                grid = np.unique(g["compute"])
                runs = [
                    np.interp(grid, r["compute"], r["best"], left=np.nan)
                    for _, r in g.groupby("rep")
                ]
                arr = np.array(runs)
                curve = pd.DataFrame(
                    {"mean": np.nanmean(arr, 0), "std": np.nanstd(arr, 0), "count": len(runs)},
                    index=grid,
                )
            half = 1.96 * curve["std"].fillna(0) / np.sqrt(curve["count"])
            (line,) = ax.plot(curve.index, curve["mean"], label=method, color=colors.get(method))
            ax.fill_between(
                curve.index,
                curve["mean"] - half,
                curve["mean"] + half,
                color=line.get_color(),
                alpha=0.15,
            )
        ax.set_title(problem)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"best {metric} so far (mean, 95% CI)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return png(fig)


def _finals(fb: pd.DataFrame, problems: list[str], metric: str, colors: dict) -> bytes:
    fig, axes = figure_grid(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        d = fb[fb["problem"] == problem]
        methods = list(dict.fromkeys(d["method"]))
        ax.boxplot([d[d["method"] == m]["best"] for m in methods], tick_labels=methods)
        for i, m in enumerate(methods, 1):
            y = d[d["method"] == m]["best"]
            ax.scatter(np.full(len(y), i), y, s=12, alpha=0.7, color=colors[m])
        ax.set_title(problem)
        ax.set_ylabel(f"final best {metric}")
        ax.tick_params(axis="x", rotation=45)
    return png(fig)


def _configs(trials: pd.DataFrame, problems: list[str], colors: dict) -> bytes:
    fig, axes = figure_grid(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        d = trials[(trials["problem"] == problem) & (trials["rep"] == trials["rep"].min())]
        cols = [c for c in d.columns if config_name(c) is not None and d[c].notna().any()]
        numeric = [c for c in cols if pd.api.types.is_numeric_dtype(d[c])]
        if len(numeric) < 2:
            ax.set_visible(False)
            continue
        xc, yc = numeric[:2]
        for method, g in d.groupby("method", sort=False):
            ax.scatter(g[xc], g[yc], s=12, alpha=0.7, label=method, color=colors[method])
        ax.set_xlabel(config_name(xc))
        ax.set_ylabel(config_name(yc))
        ax.set_title(f"{problem}: configurations tried (repetition {d['rep'].min()})")
    drawn = [ax for ax in axes if ax.get_visible() and ax.collections]
    if drawn:  # on the first panel drawn (a problem with fewer than 2 numbers has none)
        drawn[0].legend(fontsize=7)
    return png(fig)


def build(study_dir: str | os.PathLike[str], out: str | None = None) -> dict[str, str]:
    """Write ``report.html`` and ``report.md`` (+ PNGs) into ``out``: by default the study
    directory when it is local, else ``./report-<name>``."""
    study, trials = load_study(study_dir)
    if out is None:
        local = not storage.is_uri(study_dir)
        out = str(study_dir) if local else str(Path.cwd() / f"report-{storage.name(study_dir)}")
    metric, mode = study.direction(study.problems[0])  # one for all: compare refuses a mix
    known = {q.label: r.optimum for q in study.problems if (r := study.recorded.get(q.label))}
    if not study.recorded:  # a study written before compare recorded its problems
        known = {q.label: q.make().minimum for q in study.problems if q.function}
    optima = {k: v for k, v in known.items() if v is not None}
    problems = list(dict.fromkeys(trials["problem"]))
    summ = analysis.summary(trials, mode, metric, optima)
    pairs = analysis.pairwise(trials, mode, metric, n_eval=_n_eval(study))
    bsf = analysis.best_so_far(trials, mode)
    fb = analysis.final_best(trials, mode)
    c = colors([m.name for m in study.methods])
    coco_sections, plots = coco_report.sections(study, trials, optima, c)
    pareto_sections, pareto_plots = pareto_report.sections(study, trials, summ, c)
    coco_sections += pareto_sections
    plots |= pareto_plots
    others = [p for p in problems if p not in coco_report.coco_problems(study)]
    if others:  # COCO functions have their own curves (log10 regret), ranks and groups
        plots |= _plots(trials, bsf, fb, others, metric, c)
    texts = _texts(study, summ, pairs, analysis.overall(summ))
    sections = coco_sections + [
        Section(title, tables=[df], items=_verdict(df) if title.startswith("Paired") else [])
        for title, df in texts.items()
    ]
    sections += [
        Section(name[:-4].replace("_", " "), plot=name) for name in plots if name[:-4] in _PLOTS
    ]
    intro = (
        f"{study.description or study.name}: {len(study.methods)} methods, "
        f"{study.repetitions} repetitions, {study.budget} trials per run, {study.concurrency} "
        f"at once; problems {_problem_list(study)}. Significance: paired Wilcoxon "
        f"signed-rank over repetitions, Holm-corrected, alpha {analysis.ALPHA}."
    )
    return write_report(out, f"Study {study.name}", intro, sections, plots)


_PLOTS = ("best_vs_evaluations", "best_vs_compute", "final_values", "configurations")


def _plots(trials, bsf, fb, problems: list[str], metric: str, c: dict) -> dict[str, bytes]:
    t = trials[trials["problem"].isin(problems)]
    b, f = bsf[bsf["problem"].isin(problems)], fb[fb["problem"].isin(problems)]
    return {
        "best_vs_evaluations.png": _curves(b, problems, "evaluations", "evaluations", metric, c),
        "best_vs_compute.png": _curves(b, problems, "compute", "epochs (compute)", metric, c),
        "final_values.png": _finals(f, problems, metric, c),
        "configurations.png": _configs(t, problems, c),
    }


def _problem_list(study: StudySpec) -> str:
    """The problems by label; COCO functions of one suite, dimension and instance as a range."""
    plain = [q.label for q in study.problems if not q.coco]
    runs: dict[tuple, list[int]] = {}
    for q in study.problems:
        if f := q.coco_function:
            runs.setdefault((f[0], q.dims, q.instance or 1), []).append(f[1])
    coco_text = [f"{s} {_ranges(fs)} in {d}-D, instance {i}" for (s, d, i), fs in runs.items()]
    return "; ".join(plain + coco_text)


def _ranges(numbers: list[int]) -> str:
    """``f1-f5, f8``: function numbers with consecutive runs written as ranges."""
    parts: list[list[int]] = []
    for n in numbers:
        if parts and n == parts[-1][-1] + 1:
            parts[-1].append(n)
        else:
            parts.append([n])
    return ", ".join(f"f{p[0]}" if len(p) == 1 else f"f{p[0]}-f{p[-1]}" for p in parts)


def _n_eval(study: StudySpec) -> int | None:
    """Validation images per run, for the z-test on accuracies (recorded by compare)."""
    rec = study.recorded.get(study.problems[0].label)
    return rec.val_size if rec else None


def _texts(study, summ, pairs, over) -> dict[str, pd.DataFrame]:
    cols = [
        "problem",
        "method",
        "n",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
        "median",
        "norm_loss",
        "norm_loss_median",
        "rank",
    ]
    out = {"Final best per method": summ[cols], "Over all problems": over}
    if not pairs.empty:
        out["Paired tests against the best-ranked method"] = pairs
    return {k: fmt(v) for k, v in out.items()}


def _verdict(pairs: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in pairs.iterrows():
        word = "significantly" if bool(r["significant"]) else "not significantly"
        n = int(r["n"])
        floor = 2 / 2**n  # the smallest two-sided p of an exact Wilcoxon test with n pairs
        why = (
            f"; with n = {n} no p below {floor:.3g} is possible" if floor >= analysis.ALPHA else ""
        )
        lines.append(
            f"{r['problem']}: {r['leader']} vs {r['method']}: {word} different "
            f"(Wilcoxon p = {r['wilcoxon_p_holm']}, Holm-corrected, n = {n}{why})"
        )
    return lines


__all__ = ["build"]
