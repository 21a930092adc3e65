"""The multi-objective part of a study's report: mean hypervolume +- SD and mean rank per method
and problem (``study.pareto`` states the reference point's rule), and each method's
non-dominated points of one repetition beside the Pareto front (pymoo's, where installed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raytune_hpo.errors import UserError
from raytune_hpo.results.plots import Section, figure_grid, png
from raytune_hpo.study import pareto
from raytune_hpo.study.spec import StudySpec


def sections(
    study: StudySpec, trials: pd.DataFrame, summ: pd.DataFrame, colors: dict
) -> tuple[list[Section], dict[str, bytes]]:
    """The sections and their plot (none when no problem has several objectives)."""
    several = [q for q in study.problems if q.several and q.label in study.recorded]
    if not several:
        return [], {}
    methods = [m.name for m in study.methods if m.name in set(summ["method"])]
    boxes = "; ".join(
        f"{q.label}: ideal {_point(r.ideal)}, reference {_point(r.reference)}, "
        f"front {r.maximum:.4f}"
        for q in several
        if (r := study.recorded[q.label])
    )
    text = (
        "Score of a run: the hypervolume of its feasible evaluations (moocore), both objectives "
        "minimised, scaled to the box from the ideal point (the Pareto front's best values) to "
        "the reference point (each objective's worst value over the search box plus 10% of the "
        "range from the ideal, unless the study gives one), so 0 to 1; higher is better, "
        f"'front' is the Pareto front's own. {boxes}. Cells: mean +- SD over repetitions "
        "(mean rank among the methods in each repetition, 1 = best)."
    )
    out = [
        Section(
            "Several objectives: final hypervolume per method",
            text=text,
            tables=[hypervolume_table(summ, [q.label for q in several], methods)],
        ),
        Section("Non-dominated points (first repetition)", plot="fronts.png"),
    ]
    return out, {"fronts.png": _fronts(study, trials, several, methods, colors)}


def _point(values: list[float] | None) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values or []) + ")"


def hypervolume_table(summ: pd.DataFrame, problems: list[str], methods: list[str]) -> pd.DataFrame:
    """One row per problem, one column per method: ``mean +- sd (rank)``; ``best``: the
    method of the highest mean."""
    rows = []
    for problem in problems:
        t = summ[summ["problem"] == problem].set_index("method")
        if t.empty:
            continue
        row: dict[str, str] = {"problem": problem}
        for m in methods:
            if m in t.index:
                r = t.loc[m]
                row[m] = f"{r['mean']:.4f} +- {r['sd']:.4f} ({r['rank']:.1f})"
        row["best"] = str(t["mean"].idxmax())
        rows.append(row)
    return pd.DataFrame(rows)


def _fronts(study: StudySpec, trials: pd.DataFrame, problems, methods, colors) -> bytes:
    import moocore

    fig, axes = figure_grid(len(problems))
    for ax, q in zip(axes, problems, strict=True):
        names = study.recorded[q.label].objectives or []
        d = trials[(trials["problem"] == q.label) & (trials["rep"] == trials["rep"].min())]
        for m in methods:
            pts = d.loc[d["method"] == m, names].dropna().to_numpy(dtype=float)
            if len(pts):
                pts = pts[moocore.is_nondominated(pts)]
                pts = pts[np.argsort(pts[:, 0])]
                ax.step(pts[:, 0], pts[:, 1], where="post", color=colors[m], alpha=0.8, label=m)
                ax.scatter(pts[:, 0], pts[:, 1], s=10, color=colors[m])
        try:
            front = pareto.front(q.function, q.dims)
            ax.plot(front[:, 0], front[:, 1], color="black", lw=0.8, ls="--", label="Pareto front")
        except UserError:  # pymoo not installed: the runs' points only
            pass
        ax.set_title(q.label)
        ax.set_xlabel(names[0] if names else "")
        ax.set_ylabel(names[1] if len(names) > 1 else "")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return png(fig)


__all__ = ["hypervolume_table", "sections"]
