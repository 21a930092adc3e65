"""``raytune-hpo report DIR [DIR ...]``: a sweep (running or finished, local or remote) as one
self-contained HTML page and a Markdown twin: best value so far against trials and time,
each trial's learning curve coloured by how it ended, the searched values in parallel
coordinates coloured by the metric, and parameter importance (fANOVA, Hutter et al. 2014,
through Optuna's ``FanovaImportanceEvaluator``). Several sweeps: side by side (best-so-far
curves and a final table). A study directory is reported by ``raytune_hpo.study.report``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

import raytune_hpo.curves as curves
import raytune_hpo.plots as plots
import raytune_hpo.storage as storage
from raytune_hpo.curves import ENDINGS  # how a trial ended -> its colour
from raytune_hpo.errors import UserError
from raytune_hpo.live import SweepRecord, read_sweep
from raytune_hpo.names import BUDGET_ATTR, RESULTS_CSV, SPEC_COPY, config_column, config_name
from raytune_hpo.plots import Section


def kind_of(dirs: list[str]) -> str:
    """``study`` or ``sweep``, from what the directories hold (one line when neither)."""
    from raytune_hpo.study.runner import TRIALS_CSV
    from raytune_hpo.study.spec import STUDY_COPY

    kinds = []
    for d in dirs:
        if not storage.exists(d):
            raise UserError("no such directory", source=d)
        names = set(storage.listdir(d))
        if {STUDY_COPY, TRIALS_CSV} <= names:
            kinds.append("study")
        elif names & {SPEC_COPY, RESULTS_CSV} or any(
            n.startswith("experiment_state-") for n in names
        ):
            kinds.append("sweep")
        else:
            raise UserError(
                f"neither a sweep directory ({SPEC_COPY}, {RESULTS_CSV} or Ray's "
                f"experiment state) nor a study directory ({STUDY_COPY} and {TRIALS_CSV}: "
                "run compare first)",
                source=d,
            )
    if "study" in kinds and len(dirs) > 1:
        raise UserError("report: give one study directory, or one or more sweep directories")
    return kinds[0]


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
            out[tid] = "finished" if n >= budget else "stopped early"
        else:
            out[tid] = str(status).lower()
    return pd.Series(out, dtype=object)


def _budget(rec: SweepRecord) -> int | None:
    """The epochs a trial runs when nothing stops it (the trainable's budget), if known."""
    if rec.spec is None:
        return None
    try:
        from raytune_hpo.assemble import trainable_of

        return trainable_of(rec.spec).max_budget(rec.spec.search_space)
    except Exception:  # user code not importable here: fall back to the longest trial
        return None


# ---------------------------------------------------------------------- curves
def _curve_by_trials(rec: SweepRecord, table: pd.DataFrame, end: pd.Series):
    """Ended trials in the order they ended, and the best value so far after each."""
    done = table[table["trial_id"].map(end).isin(["finished", "stopped early", "failed"])]
    created = rec.trials.set_index("trial_id")["order"] if "order" in rec.trials else None
    keys = {"_o": done["trial_id"].map(created) if created is not None else range(len(done))}
    if not rec.history.empty and "wall_s" in rec.history:  # whole seconds: ties by creation
        keys["_t"] = done["trial_id"].map(rec.history.groupby("trial_id")["wall_s"].max())
    done = done.assign(**keys).sort_values(sorted(keys, reverse=True), kind="stable")
    values = done[rec.metric].to_numpy(dtype=float)
    return np.arange(1, len(values) + 1), plots.best_so_far(values, rec.mode)


def _curve_by_time(rec: SweepRecord):
    """Every reported result in time order, and the best value reported so far."""
    h = rec.history
    if h.empty or "wall_s" not in h or rec.metric not in h:
        return np.array([]), np.array([])
    h = h.sort_values("wall_s", kind="stable")
    return h["wall_s"].to_numpy(float), plots.best_so_far(h[rec.metric].to_numpy(), rec.mode)


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


def importance(rec: SweepRecord, table: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """fANOVA importance of each searched parameter for the trials' values (Optuna's
    evaluator on an in-memory study built from the trials); None and why when it cannot."""
    space = rec.spec.search_space if rec.spec else None
    if space is None or not space.params:
        return None, "no searched parameters"
    import optuna

    dists = space.to_optuna()
    trials = []
    for _, row in table.iterrows():
        v = float(row[rec.metric])
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize" if rec.mode == "min" else "maximize")
    study.add_trials(trials)
    seed = rec.spec.seed if rec.spec and rec.spec.seed is not None else 0
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    df = pd.DataFrame({"parameter": list(scores), "importance": list(scores.values())})
    note = f"fANOVA on {len(trials)} trials' values of {rec.metric}"
    left = [n for n in space.library_names if n not in scores]
    if space.conditional and left:  # Optuna fits the parameters that every trial holds
        note += f"; {', '.join(left)} apply to some trials only and are left out"
    return df, note


def _importance_plot(df: pd.DataFrame) -> bytes:
    fig, (ax,) = plots.figure_grid(1, width=7, height=0.5 * len(df) + 1.6)
    ax.barh(df["parameter"][::-1], df["importance"][::-1], color="tab:blue")
    ax.set_xlabel("share of the metric's variance (fANOVA)")
    ax.set_xlim(0, 1)
    return plots.png(fig)


# ---------------------------------------------------------------------- pages
def _label(rec: SweepRecord) -> str:
    return rec.spec.name if rec.spec else storage.name(rec.path)


def _summary(rec: SweepRecord, table: pd.DataFrame, end: pd.Series) -> dict:
    ok = table[table["status"] != "ERROR"].dropna(subset=[rec.metric])
    best = ok.iloc[0] if len(ok) else None
    spec = rec.spec
    return {
        "sweep": storage.name(rec.path),
        "searcher": spec.searcher.name if spec else "?",
        "scheduler": (spec.scheduler.name if spec.scheduler else "fifo") if spec else "?",
        "trials": len(table),
        **{k: int((end == k).sum()) for k in ENDINGS if (end == k).any()},
        f"best {rec.metric}": float(best[rec.metric]) if best is not None else math.nan,
        "best configuration": json.dumps(
            {config_name(k): _plain(v) for k, v in best.items() if config_name(k) and _set(v)}
            if best is not None
            else {},
            default=str,
        ),
        "seconds": float(rec.history["wall_s"].max()) if "wall_s" in rec.history else math.nan,
        "state": "finished" if rec.finished else "running or interrupted",
    }


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
    metrics = {(r.metric, r.mode) for r in recs}
    if len(metrics) > 1:
        raise UserError(
            "report: the sweeps optimise different metrics "
            f"({', '.join(f'{m} {o}' for m, o in sorted(metrics))}); compare sweeps of one"
        )
    labels = [_label(r) for r in recs]
    if len(set(labels)) < len(labels):
        labels = [storage.name(r.path) for r in recs]
    items = list(zip(labels, recs, tables, ends, strict=True))
    fig = {"best_so_far.png": _best_so_far_plot(items)}
    final = pd.DataFrame([_summary(r, t, e) for r, t, e in zip(recs, tables, ends, strict=True)])
    rec = recs[0]
    sections = [
        Section("Sweeps side by side", tables=[plots.fmt(final)]),
        Section(
            "Best so far",
            text=f"Left: the best {rec.metric} among the trials that had ended (each trial "
            f"counted by its {by} reported epoch), in the order they ended. Right: the best "
            f"{rec.metric} any trial had reported, by time since its sweep started.",
            plot="best_so_far.png",
        ),
    ]
    for label, t in zip(labels, tables, strict=True):
        sections.append(Section(f"Best trials: {label}", tables=[plots.fmt(_top(t))]))
    title = "Sweeps " + " vs ".join(labels)
    intro = f"{len(recs)} sweeps, {rec.mode} {rec.metric}: " + ", ".join(r.path for r in recs)
    return plots.write_report(target, title, intro, sections, fig)


def _top(table: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    t = table.head(n)
    if "error" in t:
        t = t.drop(columns="error") if t["error"].isna().all() else t.fillna({"error": ""})
    return t


def _single(rec: SweepRecord, table: pd.DataFrame, end: pd.Series, out: str, by: str):
    label = _label(rec)
    figs = {
        "best_so_far.png": _best_so_far_plot([(label, rec, table, end)]),
        "learning_curves.png": curves.learning_curves(rec.history, rec.metric, end, table),
    }
    par = curves.parallel(rec.spec, rec.metric, table)
    if par is not None:
        figs["parallel_coordinates.png"] = par
    imp, why = importance(rec, table)
    if imp is not None:
        figs["importance.png"] = _importance_plot(imp)
    summ = _summary(rec, table, end)
    sections = [
        Section("Summary", tables=[plots.fmt(pd.DataFrame([summ]))]),
        Section(f"Best trials (by their {by} reported epoch)", tables=[plots.fmt(_top(table))]),
        Section(
            "Best so far",
            text=f"Left: the best {rec.metric} among the trials that had ended, in the order "
            f"they ended. Right: the best {rec.metric} any trial had reported, by time.",
            plot="best_so_far.png",
        ),
        Section(
            "Learning curves",
            text="finished: ran its full budget; stopped early: stopped by the scheduler; cut: "
            "cut off by the sweep's time budget; failed: raised an error or ran past a time "
            "limit (x: its last report). " + curves.curves_note(table),
            plot="learning_curves.png",
        ),
    ]
    if par is not None:
        sections.append(
            Section(
                "Parallel coordinates",
                text="One line per trial through its searched values (log ranges on a log "
                f"scale); grey: no {rec.metric} (failed before its first report). "
                + curves.parallel_note(table),
                plot="parallel_coordinates.png",
            )
        )
    sections.extend(_population(rec, figs))
    if imp is not None:
        note = (
            f"{why} ({by} reported epoch of each trial; trials stopped early count with "
            "their value at the epoch where they stopped)."
        )
        sections.append(
            Section(
                "Parameter importance",
                text=note,
                tables=[plots.fmt(imp)],
                plot="importance.png",
            )
        )
    else:
        sections.append(Section("Parameter importance", text=f"not computed: {why}"))
    intro = (
        f"{rec.path}: {summ['trials']} trials, {rec.mode} {rec.metric}, searcher "
        f"{summ['searcher']}, scheduler {summ['scheduler']}; {summ['state']}."
    )
    return plots.write_report(out, f"Sweep {label}", intro, sections, figs)


def _population(rec: SweepRecord, figs: dict) -> list[Section]:
    """What population-based training did: its exploits as a table and a plot."""
    if rec.schedule.empty:
        return []
    plot = curves.schedule_plot(rec.history, rec.schedule)
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


__all__ = ["ENDINGS", "build", "endings", "importance", "kind_of"]
