"""A sweep's trials drawn: learning curves coloured by how each trial ended, and the searched
values in parallel coordinates. Legible and fast at any size: up to ``MAX_CURVES`` trials each
is one line; beyond, the best ``SHOWN`` trials are drawn one by one and every other trial only
through the median and the 10-90% band per epoch of the trials that ended the same way; the
parallel coordinates draw the best trials and a seeded sample of the rest. The report says so.
Also the importance bars and population-based training's section of the report."""

from __future__ import annotations

import numpy as np
import pandas as pd

import raytune_hpo.results.plots as plots
from raytune_hpo.names import BUDGET_ATTR, config_column
from raytune_hpo.results.plots import Section

ENDINGS = {  # how a trial ended -> its colour
    "finished": "tab:green",
    "met stop": "tab:olive",
    "stopped early": "tab:orange",
    "cut": "tab:brown",
    "failed": "tab:red",
    "running": "tab:blue",
    "paused": "tab:purple",
    "pending": "0.6",
}
MAX_CURVES = 200  # trials drawn one line each, at most
SHOWN = 20  # beyond MAX_CURVES: the best trials still drawn one by one
MAX_PARALLEL = 500  # lines in the parallel coordinates, at most


def curves_note(table: pd.DataFrame) -> str:
    if len(table) <= MAX_CURVES:
        return ""
    return (
        f"With {len(table):,} trials, the best {SHOWN} are drawn one by one; the others appear "
        "as the median (line) and the 10-90% band (shade) per epoch of the trials that ended "
        "the same way (an error bar where they all ran one epoch)."
    )


def parallel_note(table: pd.DataFrame) -> str:
    if len(table) <= MAX_PARALLEL:
        return ""
    return (
        f"With {len(table):,} trials, {MAX_PARALLEL} lines are drawn: the best {MAX_PARALLEL // 5}"
        f" and a random sample (seed 0) of the rest."
    )


def learning_curves(history: pd.DataFrame, metric, end: pd.Series, table) -> bytes:
    """Each trial's ``metric`` by epoch (a list of metrics: one panel each)."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    one = len(metrics) == 1
    fig, axes = plots.figure_grid(len(metrics), width=9 if one else 6.4, height=4.6)
    for ax, m in zip(axes, metrics, strict=True):
        _curves_of(ax, history, m, end, table)
    return plots.png(fig)


def _curves_of(ax, history: pd.DataFrame, metric: str, end: pd.Series, table) -> None:
    seen: set[str] = set()
    if not history.empty and metric in history:
        by_trial = history.groupby("trial_id", sort=False)
        if by_trial.ngroups <= MAX_CURVES:
            for tid, g in by_trial:
                _one_curve(ax, g, metric, end.get(tid, "running"), seen)
        else:
            _bands(ax, history, metric, end, seen)
            best = list(table["trial_id"].head(SHOWN)) if "trial_id" in table else []
            for tid in best:
                if tid in by_trial.groups:
                    _one_curve(ax, by_trial.get_group(tid), metric, end.get(tid, "running"), seen)
    from matplotlib.ticker import MaxNLocator

    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # not where one epoch fixed a single tick
        locator.set_params(integer=True)
    ax.set_xlabel(f"epoch ({BUDGET_ATTR})")
    ax.set_ylabel(metric)
    ax.set_title("learning curves, coloured by how each trial ended")
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=8)


def _one_curve(ax, g: pd.DataFrame, metric: str, how: str, seen: set[str]) -> None:
    label = None if how in seen else how
    seen.add(how)
    ax.plot(g[BUDGET_ATTR], g[metric], color=ENDINGS.get(how, "0.4"), label=label, lw=1.3,
            marker="o", ms=3)  # fmt: skip
    if how == "failed":
        ax.plot(g[BUDGET_ATTR].iloc[-1:], g[metric].iloc[-1:], "x", c="red")


def _bands(ax, history: pd.DataFrame, metric: str, end: pd.Series, seen: set[str]) -> None:
    h = history[["trial_id", BUDGET_ATTR, metric]].copy()
    h["how"] = h["trial_id"].map(end).fillna("running")
    q = h.groupby(["how", BUDGET_ATTR])[metric].quantile([0.1, 0.5, 0.9]).unstack()
    groups = list(q.groupby(level=0))
    lone = [how for how, g in groups if len(g) == 1]  # endings whose trials ran one epoch
    for how, g in groups:
        epochs = g.index.get_level_values(1)
        color = ENDINGS.get(how, "0.4")
        n = int((end == how).sum())
        label = f"{how} (median of {n:,})"
        if how in lone:  # a band over one point draws nothing: an error bar, side by side
            at = epochs + 0.12 * (lone.index(how) - (len(lone) - 1) / 2)
            low, mid, high = g[0.1].to_numpy(), g[0.5].to_numpy(), g[0.9].to_numpy()
            ax.errorbar(at, mid, yerr=[mid - low, high - mid], fmt="o", color=color,
                        capsize=6, lw=2, ms=6, label=label)  # fmt: skip
        else:
            ax.fill_between(epochs, g[0.1], g[0.9], color=color, alpha=0.2, lw=0)
            ax.plot(epochs, g[0.5], color=color, lw=2, label=label)
        seen.add(how)
    if h[BUDGET_ATTR].max() == h[BUDGET_ATTR].min():  # one epoch only: not a sliver of an axis
        first = h[BUDGET_ATTR].iloc[0]
        ax.set_xlim(first - 0.5, first + 0.5)
        ax.set_xticks([first])


def parallel(spec, metric: str, table: pd.DataFrame) -> bytes | None:
    space = spec.search_space if spec else None
    if space is None or not space.params:
        return None
    names = space.names
    shown = _sample(table)
    unit, values = [], []
    for row in shown.to_dict("records"):
        config = {n: row[config_column(n)] for n in names if config_column(n) in row}
        try:
            u = space.to_unit(config)
        except (KeyError, ValueError, TypeError):
            continue
        if space.conditional:  # a parameter that does not apply: no point on its axis
            on = set(space.active(config))
            u = np.where([path in on for path in space.params], u, np.nan)
        unit.append(u)
        values.append(float(row[metric]))
    if not unit:
        return None
    ticks = {}
    for n, p in zip(names, space.params.values(), strict=True):
        if hasattr(p, "choices"):
            k = len(p.choices)
            ticks[n] = ([(i + 0.5) / k for i in range(k)], [str(c) for c in p.choices])
        else:
            ticks[n] = ([p.to_unit(p.low), p.to_unit(p.high)], [f"{p.low:.3g}", f"{p.high:.3g}"])
    fig, (ax,) = plots.figure_grid(1, width=max(7, 2.2 * len(names)), height=4.6)
    plots.parallel_coordinates(ax, np.array(unit), names, np.array(values), metric, ticks)
    gaps = " (no point where a parameter does not apply)" if space.conditional else ""
    ax.set_title(f"searched values of each trial, coloured by its {metric}{gaps}")
    return plots.png(fig)


def _sample(table: pd.DataFrame) -> pd.DataFrame:
    """At most MAX_PARALLEL rows: the best fifth of them, then a seeded sample of the rest."""
    if len(table) <= MAX_PARALLEL:
        return table
    best = MAX_PARALLEL // 5
    rest = table.iloc[best:].sample(MAX_PARALLEL - best, random_state=0)
    return pd.concat([table.iloc[:best], rest])


def schedule_plot(history: pd.DataFrame, schedule: pd.DataFrame) -> bytes | None:
    """Population-based training: each mutated value of each trial over its epochs (one panel
    per parameter), a dot where the trial copied another and took new values."""
    names = [c for c in schedule.columns if c.startswith("config.") and c in history]
    if not names or history.empty:
        return None
    fig, axes = plots.figure_grid(len(names))
    by_trial = history.groupby("trial_id", sort=False)
    shown = list(by_trial.groups)[:MAX_CURVES]
    for ax, col in zip(axes, names, strict=False):
        for tid in shown:
            g = by_trial.get_group(tid)
            if pd.api.types.is_numeric_dtype(g[col]):
                ax.step(g[BUDGET_ATTR], g[col], where="post", lw=1, alpha=0.7)
        at = schedule[pd.to_numeric(schedule[col], errors="coerce").notna()]
        ax.plot(at[BUDGET_ATTR], at[col].astype(float), "o", ms=4, c="black", label="exploit")
        ax.set_xlabel(f"epoch ({BUDGET_ATTR})")
        ax.set_ylabel(col.removeprefix("config."))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return plots.png(fig)


def importance_plot(df: pd.DataFrame) -> bytes:
    """One bar per parameter and metric (the columns after ``parameter``)."""
    metrics = [c for c in df.columns if c != "parameter"]
    fig, (ax,) = plots.figure_grid(1, width=7, height=0.5 * len(df) * len(metrics) + 1.6)
    y = np.arange(len(df))[::-1] * len(metrics)
    for j, m in enumerate(metrics):
        label = m if len(metrics) > 1 else None
        ax.barh(y - j, df[m], height=0.9, label=label, color=None if label else "tab:blue")
    ax.set_yticks(y - (len(metrics) - 1) / 2, df["parameter"])
    ax.set_xlabel("share of the metric's variance (fANOVA)")
    ax.set_xlim(0, 1)
    if len(metrics) > 1:
        ax.legend(fontsize=8)
    return plots.png(fig)


def population_sections(rec, figs: dict) -> list[Section]:
    """What population-based training did: its exploits as a table and a plot."""
    if rec.schedule.empty:
        return []
    plot = schedule_plot(rec.history, rec.schedule)
    if plot is not None:
        figs["pbt_schedule.png"] = plot
    n, trials = len(rec.schedule), rec.schedule["trial_id"].nunique()
    text = (
        f"{n} exploits in {trials} trials: at the epoch shown a trial copied the weights of "
        "`copied` (as they were at epoch `copied_at`) and went on with the values after. The "
        "plot shows each mutated value of each trial over its epochs (a dot: an exploit)."
    )
    table = rec.schedule.head(50)
    return [
        Section(
            "Population-based training",
            text=text + (" The first 50 exploits:" if n > 50 else ""),
            tables=[plots.fmt(table)],
            plot="pbt_schedule.png" if plot is not None else None,
        )
    ]


__all__ = [
    "ENDINGS",
    "curves_note",
    "importance_plot",
    "learning_curves",
    "parallel",
    "parallel_note",
    "population_sections",
    "schedule_plot",
]
