"""``raytune-hpo report DIR [DIR ...]``: a sweep (running or finished, local or remote) as one
self-contained HTML page and a Markdown twin: best value so far against trials and time,
each trial's learning curve coloured by how it ended, the searched values in parallel
coordinates coloured by the metric, and parameter importance (fANOVA, Hutter et al. 2014,
through Optuna's ``FanovaImportanceEvaluator``). Several sweeps: side by side (best-so-far
curves and a final table). With several objectives the front and its hypervolume take the
place of the best value (``raytune_hpo.results.front``). A study directory is reported by
``raytune_hpo.study.report``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

import raytune_hpo.results.curves as curves
import raytune_hpo.results.front as front_report
import raytune_hpo.results.plots as plots
import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import (
    BUDGET_ATTR,
    FEASIBLE,
    PARETO_RANK,
    config_column,
    config_name,
)
from raytune_hpo.results.curves import ENDINGS  # how a trial ended -> its colour
from raytune_hpo.results.live import SweepRecord, read_sweep
from raytune_hpo.results.plots import Section
from raytune_hpo.results.sweep_dir import stop_criteria


def endings(rec: SweepRecord) -> pd.Series:
    """Per trial id: finished, stopped early (by the scheduler), cut (by the sweep's time
    budget), failed (an error or a time limit), or still running / paused / pending."""
    t = rec.trials
    epochs = (
        rec.history.groupby("trial_id")[BUDGET_ATTR].max()
        if not rec.history.empty
        else pd.Series(dtype=float)
    )
    budget = _budget(rec) or (epochs.max() if len(epochs) else 0)
    met = _met_stop(rec)
    out = {}
    for row in t.to_dict("records"):
        tid = row["trial_id"]
        status = (rec.ends.get(tid) or {}).get("status") or row.get("ray_status", row.get("status"))
        if status == "ERROR":
            out[tid] = "failed"
        elif status == "CUT":
            out[tid] = "cut"
        elif status in ("TERMINATED", "OK"):
            n = epochs.get(tid, row.get("epochs", 0))
            reached = tid in met
            out[tid] = "met stop" if reached else "finished" if n >= budget else "stopped early"
        else:
            out[tid] = str(status).lower()
    return pd.Series(out, dtype=object)


def _met_stop(rec: SweepRecord) -> set[str]:
    """The trials whose last result met the sweep's ``stop:`` criteria."""
    criteria = stop_criteria(rec.spec)
    if not criteria or rec.history.empty:
        return set()
    last = rec.history.groupby("trial_id", sort=False).tail(1)
    return {
        r["trial_id"]
        for r in last.to_dict("records")
        if criteria.reason({k: v for k, v in r.items() if pd.notna(v)})
    }


def _budget(rec: SweepRecord) -> int | None:
    """The epochs a trial runs when nothing stops it (the trainable's budget), if known."""
    if rec.spec is None:
        return None
    try:
        from raytune_hpo.train import contract_of

        return contract_of(rec.spec).max_budget(rec.spec.search_space)
    except Exception:  # user code not importable here: fall back to the longest trial
        return None


# ---------------------------------------------------------------------- curves
def ended(rec: SweepRecord, table: pd.DataFrame, end: pd.Series) -> pd.DataFrame:
    """The rows of the trials that ended (finished, stopped early, failed), in that order."""
    ended_as = ["finished", "met stop", "stopped early", "failed"]
    done = table[table["trial_id"].map(end).isin(ended_as)]
    created = rec.trials.set_index("trial_id")["order"] if "order" in rec.trials else None
    keys = {"_o": done["trial_id"].map(created) if created is not None else range(len(done))}
    if not rec.history.empty and "wall_s" in rec.history:  # whole seconds: ties by creation
        keys["_t"] = done["trial_id"].map(rec.history.groupby("trial_id")["wall_s"].max())
    done = done.assign(**keys).sort_values(sorted(keys, reverse=True), kind="stable")
    return done.drop(columns=list(keys))


def _curve_by_trials(rec: SweepRecord, table: pd.DataFrame, end: pd.Series):
    """Ended trials in the order they ended, and the best value so far after each (with
    constraints: of the feasible ones)."""
    done = ended(rec, table, end)
    metric, mode = rec.objectives.metrics[0], rec.objectives.modes[0]  # the one objective
    values = done[metric].to_numpy(dtype=float)
    if FEASIBLE in done:
        values = np.where(done[FEASIBLE].astype(bool), values, np.nan)
    return np.arange(1, len(values) + 1), plots.best_so_far(values, mode)


def _curve_by_time(rec: SweepRecord):
    """Every reported result in time order, and the best value reported so far (with
    constraints: by a result within them)."""
    h = rec.history
    metric, mode = rec.objectives.metrics[0], rec.objectives.modes[0]  # the one objective
    if h.empty or "wall_s" not in h or metric not in h:
        return np.array([]), np.array([])
    h = h.sort_values("wall_s", kind="stable")
    values = h[metric].to_numpy(dtype=float)
    if rec.objectives.constraints:
        values = np.where(rec.objectives.violations(h) == 0, values, np.nan)
    return h["wall_s"].to_numpy(float), plots.best_so_far(values, mode)


def _best_so_far_plot(items: list[tuple[str, SweepRecord, pd.DataFrame, pd.Series]]) -> bytes:
    fig, (a1, a2) = plots.figure_grid(2)
    for label, rec, table, end in items:
        x, y = _curve_by_trials(rec, table, end)
        a1.step(x, y, where="post", label=label)
        x, y = _curve_by_time(rec)
        a2.step(x, y, where="post", label=label)
    metric = items[0][1].metric
    a1.xaxis.get_major_locator().set_params(integer=True)
    a1.set_xlabel("trials ended")
    a2.set_xlabel("seconds since the sweep started")
    for ax in (a1, a2):
        ax.set_ylabel(f"best {metric} so far")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return plots.png(fig)


MAX_IMPORTANCE_TRIALS = 1000  # fANOVA fits a seeded sample of this many trials beyond


def importance(
    rec: SweepRecord, table: pd.DataFrame, metric: str | None = None, mode: str | None = None
) -> tuple[pd.DataFrame | None, str]:
    """fANOVA importance of each searched parameter for the trials' values of ``metric``
    (default: the sweep's first objective; Optuna's evaluator on an in-memory study built
    from the trials); None and why when it cannot."""
    metric = metric or rec.objectives.metrics[0]
    mode = mode or rec.objectives.modes[0]
    space = rec.spec.search_space if rec.spec else None
    if space is None or not space.params:
        return None, "no searched parameters"
    import optuna

    dists = space.to_optuna()
    trials = []
    for _, row in table.iterrows():
        v = float(row[metric])
        if not math.isfinite(v):
            continue
        try:
            params = space.to_library({n: row[config_column(n)] for n in space.names})
        except (KeyError, ValueError, TypeError):
            continue
        params = {k: v.item() if hasattr(v, "item") else v for k, v in params.items()}
        held = {k: dists[k] for k in params}  # a conditional space: the active ones
        trials.append(optuna.trial.create_trial(params=params, distributions=held, value=v))
    if len(trials) < 3:
        return None, f"{len(trials)} trial(s) with a value: fANOVA needs at least 3"
    seed = rec.spec.seed if rec.spec and rec.spec.seed is not None else 0
    valued = len(trials)
    if valued > MAX_IMPORTANCE_TRIALS:  # its forest's marginals cost minutes at 10,000 trials
        keep = np.random.default_rng(seed).choice(valued, MAX_IMPORTANCE_TRIALS, replace=False)
        trials = [trials[i] for i in sorted(keep)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    df = pd.DataFrame({"parameter": list(scores), "importance": list(scores.values())})
    note = f"fANOVA on {len(trials)} trials' values of {metric}"
    if valued > len(trials):
        note += f" (a seeded sample of the {valued} trials with a value)"
    left = [n for n in space.library_names if n not in scores]
    if space.conditional and left:  # Optuna fits the parameters that every trial holds
        note += f"; {', '.join(left)} apply to some trials only and are left out"
    return df, note


# ---------------------------------------------------------------------- pages
def _label(rec: SweepRecord) -> str:
    return rec.spec.name if rec.spec else storage.name(rec.path)


def _summary(rec: SweepRecord, table: pd.DataFrame, end: pd.Series) -> dict:
    ok = table[table["status"] != "ERROR"]
    if FEASIBLE in ok:
        ok = ok[ok[FEASIBLE].astype(bool)]
    objectives = rec.objectives
    spec = rec.spec
    out = {
        "sweep": storage.name(rec.path),
        "searcher": spec.searcher.name if spec else "?",
        "scheduler": (spec.scheduler.name if spec.scheduler else "fifo") if spec else "?",
        "trials": len(table),
        **{k: int((end == k).sum()) for k in ENDINGS if (end == k).any()},
    }
    if objectives.ranked:
        out["feasible"] = int(table[FEASIBLE].astype(bool).sum())
    if objectives.several:
        out["front"] = int(((table[PARETO_RANK] == 1) & table[FEASIBLE].astype(bool)).sum())
    else:
        ok = ok.dropna(subset=[rec.metric])
        best = ok.iloc[0] if len(ok) else None
        out[f"best {rec.metric}"] = float(best[rec.metric]) if best is not None else math.nan
        out["best configuration"] = json.dumps(
            {config_name(k): _plain(v) for k, v in best.items() if config_name(k) and _set(v)}
            if best is not None
            else {},
            default=str,
        )
    out["seconds"] = float(rec.history["wall_s"].max()) if "wall_s" in rec.history else math.nan
    out["state"] = "finished" if rec.finished else "running or interrupted"
    return out


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _set(v) -> bool:
    """A cell with a value (an empty one: the parameter did not apply to the trial)."""
    return not (v is None or (isinstance(v, float) and math.isnan(v)))


def _out(dirs: list[str], recs: list[SweepRecord], out: str | None) -> str:
    if out is not None:
        return storage.normalize(out)
    if len(dirs) == 1 and not storage.is_uri(dirs[0]):
        return storage.normalize(dirs[0])
    return str(Path.cwd() / ("report-" + "-vs-".join(storage.name(r.path) for r in recs)))


def build(dirs: list[str], *, out: str | None = None, by: str = "last") -> dict[str, str]:
    """Read the sweeps as they are now and write ``report.html``/``report.md`` (+ PNGs)."""
    recs = [read_sweep(d) for d in dirs]
    target = _out(dirs, recs, out)
    tables = [r.table(by) for r in recs]
    ends = [endings(r) for r in recs]
    if len(recs) == 1:
        return _single(recs[0], tables[0], ends[0], target, by)
    goals = {(r.objectives.metrics, r.objectives.modes) for r in recs}
    if len(goals) > 1:
        said = sorted(", ".join(f"{o} {m}" for m, o in zip(*g, strict=True)) for g in goals)
        raise UserError(
            f"report: the sweeps optimise different metrics ({'; '.join(said)}); compare sweeps "
            "of one"
        )
    labels = [_label(r) for r in recs]
    if len(set(labels)) < len(labels):
        labels = [storage.name(r.path) for r in recs]
    items = list(zip(labels, recs, tables, ends, strict=True))
    final = pd.DataFrame([_summary(r, t, e) for r, t, e in zip(recs, tables, ends, strict=True)])
    rec = recs[0]
    fig: dict[str, bytes] = {}
    sections = [Section("Sweeps side by side", tables=[plots.fmt(final)])]
    if rec.objectives.several:
        ranked = [front_report.Ranked(lb, t, ended(r, t, e)) for lb, r, t, e in items]
        sections += front_report.sections(ranked, rec.objectives, fig)
    else:
        fig["best_so_far.png"] = _best_so_far_plot(items)
        sections.append(
            Section(
                "Best so far",
                text=f"Left: the best {rec.metric} among the trials that had ended (each trial "
                f"counted by its {by} reported epoch), in the order they ended. Right: the best "
                f"{rec.metric} any trial had reported, by time since its sweep started.",
                plot="best_so_far.png",
            )
        )
    for label, t in zip(labels, tables, strict=True):
        sections.append(Section(f"Best trials: {label}", tables=[plots.fmt(_top(t))]))
    title = "Sweeps " + " vs ".join(labels)
    intro = f"{len(recs)} sweeps, {rec.objectives.describe()}: " + ", ".join(r.path for r in recs)
    return plots.write_report(target, title, intro, sections, fig)


def _top(table: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    t = table.head(n)
    if "error" in t:
        t = t.drop(columns="error") if t["error"].isna().all() else t.fillna({"error": ""})
    return t


def _single(rec: SweepRecord, table: pd.DataFrame, end: pd.Series, out: str, by: str):
    label = _label(rec)
    objectives = rec.objectives
    figs: dict[str, bytes] = {}
    summ = _summary(rec, table, end)
    sections = [
        Section("Summary", tables=[plots.fmt(pd.DataFrame([summ]))]),
        Section(f"Best trials (by their {by} reported epoch)", tables=[plots.fmt(_top(table))]),
    ]
    if objectives.several:
        ranked = front_report.Ranked(label, table, ended(rec, table, end))
        sections += front_report.sections([ranked], objectives, figs)
    else:
        figs["best_so_far.png"] = _best_so_far_plot([(label, rec, table, end)])
        within = " meeting every constraint" if objectives.constraints else ""
        sections.append(
            Section(
                "Best so far",
                text=f"Left: the best {rec.metric} among the trials{within} that had ended, in "
                f"the order they ended. Right: the best {rec.metric} any trial had reported"
                f"{within}, by time.",
                plot="best_so_far.png",
            )
        )
    sections += _trial_sections(rec, table, end, by, figs)
    intro = (
        f"{rec.path}: {summ['trials']} trials, {objectives.describe()}, searcher "
        f"{summ['searcher']}, scheduler {summ['scheduler']}; {summ['state']}."
    )
    return plots.write_report(out, f"Sweep {label}", intro, sections, figs)


def _trial_sections(rec: SweepRecord, table, end, by: str, figs: dict) -> list[Section]:
    """Learning curves, parallel coordinates, population-based training, importance."""
    metrics = list(rec.objectives.metrics)
    figs["learning_curves.png"] = curves.learning_curves(rec.history, metrics, end, table)
    colour_by = PARETO_RANK if rec.objectives.several else rec.objectives.metrics[0]
    colours = (
        "coloured by Pareto rank (1: the front)"
        if rec.objectives.several
        else f"grey: no {colour_by} (failed before its first report)"
    )
    par = curves.parallel(rec.spec, colour_by, table)
    sections = [
        Section(
            "Learning curves",
            text="finished: ran its full budget; met stop: ended by the sweep's stop: "
            "criteria; stopped early: stopped by the scheduler; cut: "
            "cut off by the sweep's time budget; failed: raised an error or ran past a time "
            "limit (x: its last report). " + curves.curves_note(table),
            plot="learning_curves.png",
        )
    ]
    if par is not None:
        figs["parallel_coordinates.png"] = par
        sections.append(
            Section(
                "Parallel coordinates",
                text="One line per trial through its searched values (log ranges on a log "
                f"scale); {colours}. " + curves.parallel_note(table),
                plot="parallel_coordinates.png",
            )
        )
    sections.extend(curves.population_sections(rec, figs))
    return [*sections, _importance_section(rec, table, by, figs)]


def _importance_section(rec: SweepRecord, table, by: str, figs: dict) -> Section:
    found = []
    for metric, mode in zip(rec.objectives.metrics, rec.objectives.modes, strict=True):
        imp, why = importance(rec, table, metric, mode)
        if imp is None:
            return Section("Parameter importance", text=f"not computed: {why}")
        found.append((metric, imp.set_index("parameter")["importance"], why))
    imp = pd.DataFrame({m: scores for m, scores, _ in found}).rename_axis("parameter")
    imp = imp.sort_values(found[0][0], ascending=False).reset_index()
    if len(found) == 1:
        imp = imp.rename(columns={found[0][0]: "importance"})
    figs["importance.png"] = curves.importance_plot(imp)
    note = (
        f"{'; '.join(why for _, _, why in found)} ({by} reported epoch of each trial; trials "
        "stopped early count with their value at the epoch where they stopped)."
    )
    return Section(
        "Parameter importance", text=note, tables=[plots.fmt(imp)], plot="importance.png"
    )


__all__ = ["ENDINGS", "build", "ended", "endings", "importance"]
