"""``raytune-hpo report DIR``: a study as one self-contained HTML page (plots embedded as PNG
data URIs, no server, no network) and a Markdown twin with the plots as files beside it."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from raytune_hpo.study import analysis
from raytune_hpo.study.runner import load_study
from raytune_hpo.study.spec import StudySpec


def _fig_grid(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _colors(methods: list[str]) -> dict[str, tuple]:
    """One colour per method, the same in every plot."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _curves(
    bsf: pd.DataFrame, problems: list[str], x: str, xlabel: str, metric: str, colors: dict
) -> bytes:
    fig, axes = _fig_grid(len(problems))
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
            (line,) = ax.plot(curve.index, curve["mean"], label=method)
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
    return _png(fig)


def _finals(fb: pd.DataFrame, problems: list[str], metric: str, colors: dict) -> bytes:
    fig, axes = _fig_grid(len(problems))
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
    return _png(fig)


def _configs(trials: pd.DataFrame, problems: list[str], colors: dict) -> bytes:
    fig, axes = _fig_grid(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        d = trials[(trials["problem"] == problem) & (trials["rep"] == trials["rep"].min())]
        cols = [c for c in d.columns if c.startswith("config.") and d[c].notna().any()]
        numeric = [c for c in cols if pd.api.types.is_numeric_dtype(d[c])]
        if len(numeric) < 2:
            ax.set_visible(False)
            continue
        xc, yc = numeric[:2]
        for method, g in d.groupby("method", sort=False):
            ax.scatter(g[xc], g[yc], s=12, alpha=0.7, label=method, color=colors[method])
        ax.set_xlabel(xc.removeprefix("config."))
        ax.set_ylabel(yc.removeprefix("config."))
        ax.set_title(f"{problem}: configurations tried (repetition {d['rep'].min()})")
    axes[0].legend(fontsize=7)
    return _png(fig)


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    return df.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)


def build(out: str | Path) -> dict[str, Path]:
    """Write ``report.html`` and ``report.md`` (+ PNGs) into the study directory."""
    out = Path(out).expanduser()
    study, trials = load_study(out)
    metric, mode = study.direction(study.problems[0])
    minima = {q.label: r.minimum for q in study.problems if (r := study.recorded.get(q.label))}
    minima = {k: v for k, v in minima.items() if v is not None}
    if not study.recorded:  # a study written before compare recorded its problems
        minima = {q.label: q.make().minimum for q in study.problems if q.function}
    problems = list(dict.fromkeys(trials["problem"]))
    summ = analysis.summary(trials, mode, metric, minima)
    pairs = analysis.pairwise(trials, mode, metric, n_eval=_n_eval(study))
    bsf = analysis.best_so_far(trials, mode)
    fb = analysis.final_best(trials, mode)
    c = _colors([m.name for m in study.methods])
    plots = {
        "best_vs_evaluations.png": _curves(bsf, problems, "evaluations", "evaluations", metric, c),
        "best_vs_compute.png": _curves(bsf, problems, "compute", "epochs (compute)", metric, c),
        "final_values.png": _finals(fb, problems, metric, c),
        "configurations.png": _configs(trials, problems, c),
    }
    for name, data in plots.items():
        (out / name).write_bytes(data)
    texts = _texts(study, summ, pairs, analysis.overall(summ))
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(_html(study, texts, plots))
    md_path.write_text(_markdown(study, texts, plots))
    return {"html": html_path, "markdown": md_path}


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
    return {k: _fmt(v) for k, v in out.items()}


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


def _html(study: StudySpec, texts: dict, plots: dict[str, bytes]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(study.name)}</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1300px}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%;border:1px solid #eee;margin:.5em 0}",
        "</style></head><body>",
        f"<h1>Study {html.escape(study.name)}</h1>",
        f"<p>{html.escape(study.description or study.name)}: {len(study.methods)} methods, "
        f"{study.repetitions} repetitions, {study.budget} trials per run; problems "
        f"{html.escape(', '.join(q.label for q in study.problems))}. Significance: paired "
        f"Wilcoxon signed-rank over repetitions, Holm-corrected, alpha {analysis.ALPHA}.</p>",
    ]
    for title, df in texts.items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(df.to_html(index=False, escape=True))
        if title.startswith("Paired"):
            parts.append(
                "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in _verdict(df)) + "</ul>"
            )
    for name, data in plots.items():
        b64 = base64.b64encode(data).decode()
        parts.append(f"<h2>{html.escape(name[:-4].replace('_', ' '))}</h2>")
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(study: StudySpec, texts: dict, plots: dict[str, bytes]) -> str:
    lines = [f"# Study {study.name}", "", study.description, ""]
    for title, df in texts.items():
        lines += [f"## {title}", "", df.to_markdown(index=False), ""]
        if title.startswith("Paired"):
            lines += [f"- {x}" for x in _verdict(df)] + [""]
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


__all__ = ["build"]
