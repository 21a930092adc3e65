"""The report of a sweep with several objectives: the Pareto front drawn (2 objectives: a
scatter with the front as a staircase; 3 or more: parallel coordinates of the objectives
coloured by rank), infeasible trials marked, and the hypervolume against trials ended, for one
sweep or several side by side (``raytune_hpo.results.report`` calls these).

The hypervolume is measured in the box of ``HypervolumeBox``: from the best value of each
objective among the feasible trials of every sweep shown to their worst plus 10% of the range
(the reference point), scaled to the unit cube; sweeps compared share one box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import raytune_hpo.results.plots as plots
from raytune_hpo.names import FEASIBLE, PARETO_RANK
from raytune_hpo.objectives import MARGIN, HypervolumeBox, Objectives, describe_reference
from raytune_hpo.results.plots import Section


@dataclass(frozen=True)
class Ranked:
    """One sweep as the front's plots read it: its table (ranked) and its ended trials in the
    order they ended."""

    label: str
    table: pd.DataFrame
    ended: pd.DataFrame

    def feasible(self, objectives: Objectives) -> np.ndarray:
        return objectives.losses(self.table)[self.table[FEASIBLE].astype(bool).to_numpy()]


def box_of(items: list[Ranked], objectives: Objectives) -> HypervolumeBox | None:
    return HypervolumeBox.around(i.feasible(objectives) for i in items)


def _front_mask(t: pd.DataFrame) -> np.ndarray:
    return ((t[PARETO_RANK] == 1) & t[FEASIBLE].astype(bool)).to_numpy()


# ---------------------------------------------------------------------- plots
def front_plot(items: list[Ranked], objectives: Objectives) -> bytes:
    """2 objectives: every trial by its two values, the front joined as a staircase;
    infeasible trials as crosses. Several sweeps: one colour each."""
    x, y = objectives.metrics[:2]
    fig, (ax,) = plots.figure_grid(1, width=8, height=5.2)
    colours = plots.colors([i.label for i in items])
    one = len(items) == 1
    for item in items:
        t = item.table
        front, ok = _front_mask(t), t[FEASIBLE].astype(bool).to_numpy()
        colour = "tab:red" if one else colours[item.label]
        rest = ok & ~front
        label = "feasible" if one else None
        ax.scatter(t[x][rest], t[y][rest], s=22, alpha=0.6, color="tab:blue" if one else colour,
                   label=label)  # fmt: skip
        label = "infeasible" if one else None
        ax.scatter(t[x][~ok], t[y][~ok], s=28, marker="x", color="0.55" if one else colour,
                   alpha=0.8, label=label)  # fmt: skip
        f = t[front].sort_values(x)
        where = "post" if objectives.modes[0] == "min" else "pre"  # the dominated region's edge
        ax.step(f[x], f[y], where=where, color=colour, lw=2, alpha=0.9)
        label = f"{'Pareto' if one else item.label} front ({len(f)})"
        ax.scatter(f[x], f[y], s=64, color=colour, edgecolor="black", zorder=3, label=label)
    ax.set_xlabel(f"{x} ({objectives.modes[0]})")
    ax.set_ylabel(f"{y} ({objectives.modes[1]})")
    ax.set_title("each trial by its objectives; the Pareto front joined")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plots.png(fig)


def front_parallel(item: Ranked, objectives: Objectives) -> bytes:
    """3 or more objectives: one line per trial through its objectives (each scaled to its
    range, the better end up), coloured by Pareto rank; infeasible trials grey."""
    t = item.table
    losses = objectives.losses(t)
    low, high = np.nanmin(losses, axis=0), np.nanmax(losses, axis=0)
    unit = 1 - (losses - low) / np.where(high > low, high - low, 1.0)  # better: up
    ok = t[FEASIBLE].astype(bool).to_numpy() & np.isfinite(unit).all(axis=1)
    ranks = np.where(ok, t[PARETO_RANK].to_numpy(dtype=float), np.nan)
    names = list(objectives.metrics)
    ticks = {}
    for j, (m, mode) in enumerate(zip(names, objectives.modes, strict=True)):
        best, worst = (low[j], high[j]) if mode == "min" else (-low[j], -high[j])
        ticks[m] = ([1.0, 0.0], [f"{best:.3g}", f"{worst:.3g}"])
    fig, (ax,) = plots.figure_grid(1, width=max(7, 2.2 * len(names)), height=4.6)
    label = "minus pareto_rank (the front: -1)"
    plots.parallel_coordinates(ax, np.nan_to_num(unit, nan=0.0), names, -ranks, label, ticks)
    ax.set_title("objectives of each trial (better up) by Pareto rank; grey: infeasible")
    return plots.png(fig)


def hypervolume_plot(items: list[Ranked], objectives: Objectives, box: HypervolumeBox) -> bytes:
    fig, (ax,) = plots.figure_grid(1, width=8, height=4.2)
    for item in items:
        x, hv = hypervolume_curve(item, objectives, box)
        ax.step(x, hv, where="post", label=item.label)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trials ended")
    ax.set_ylabel("hypervolume of the front so far")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plots.png(fig)


def hypervolume_curve(item: Ranked, objectives: Objectives, box: HypervolumeBox):
    """Trials ended (1..n) and the hypervolume of the feasible ones among them."""
    e = item.ended
    losses = objectives.losses(e)
    feasible = e[FEASIBLE].astype(bool).to_numpy() & np.isfinite(losses).all(axis=1)
    return np.arange(1, len(e) + 1), box.curve(losses, feasible)


# ---------------------------------------------------------------------- tables, sections
def hypervolume_table(
    items: list[Ranked], objectives: Objectives, box: HypervolumeBox | None
) -> pd.DataFrame:
    rows = []
    for item in items:
        t = item.table
        ok = t[FEASIBLE].astype(bool)
        rows.append(
            {
                "sweep": item.label,
                "trials": len(t),
                "feasible": int(ok.sum()),
                "front": int(_front_mask(t).sum()),
                "hypervolume": box.hypervolume(item.feasible(objectives)) if box else 0.0,
                "reference point": describe_reference(box, objectives) if box else "-",
            }
        )
    return pd.DataFrame(rows)


def sections(items: list[Ranked], objectives: Objectives, figs: dict) -> list[Section]:
    """The front and hypervolume sections of one sweep or several (plots into ``figs``)."""
    box = box_of(items, objectives)
    two = len(objectives.metrics) == 2
    if two:
        figs["pareto_front.png"] = front_plot(items, objectives)
    elif len(items) == 1:
        figs["pareto_front.png"] = front_parallel(items[0], objectives)
    note = (
        f"Objectives: {objectives.describe()}. Rank 1 is the Pareto front of the feasible "
        "trials (no other feasible trial is as good in every objective and better in one); "
        "infeasible trials (outside a constraint, failed, or missing an objective) rank after "
        "every feasible one."
    )
    plot = "pareto_front.png" if "pareto_front.png" in figs else None
    out = [Section("Pareto front", text=note, plot=plot)]
    hv_text = (
        "Hypervolume: the share of the box from the best value of each objective (among the "
        "feasible trials of the sweeps shown) to the reference point (their worst value plus "
        f"{MARGIN:.0%} of the range) that the front dominates, each objective scaled to the box; "
        "1 would be one trial best in every objective. Against trials ended, in the order they "
        "ended."
    )
    if box is None:
        out.append(Section("Hypervolume", text="no feasible trial: no hypervolume"))
        return out
    figs["hypervolume.png"] = hypervolume_plot(items, objectives, box)
    table = plots.fmt(hypervolume_table(items, objectives, box))
    out.append(Section("Hypervolume", text=hv_text, tables=[table], plot="hypervolume.png"))
    return out


__all__ = [
    "Ranked",
    "box_of",
    "front_parallel",
    "front_plot",
    "hypervolume_curve",
    "hypervolume_plot",
    "hypervolume_table",
    "sections",
]
