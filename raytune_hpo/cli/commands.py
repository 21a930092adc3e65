"""``raytune-hpo``: run sweeps here or on a Ray cluster, resume them, compare searchers.

Bad input (a wrong sweep file, unknown names, a missing dataset or directory, a cluster that
does not answer) is a ``UserError``: ``main`` prints it as one line on stderr and exits with 2,
before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

from raytune_hpo.cli.common import (
    BY_HELP,
    RAY_ADDRESS_HELP,
    announce,
    blamed_on_flags,
    format_table,
    load_spec,
    overrides,
)
from raytune_hpo.cli.jobs import job_commands

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _fail(msg: str) -> int:
    print(f"raytune-hpo: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_run(args: argparse.Namespace) -> int:
    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.run.sweep import experiment_dir, experiment_name, run_sweep

    spec = load_spec(args)
    with blamed_on_flags(args):
        plan = assemble(spec)  # user code is imported (and pickled by value) from here on
    if args.sweep_env:  # a submitted job: see load_spec
        os.chdir(tempfile.gettempdir())
    announce(plan)
    name = experiment_name(spec)
    args._sweep_dir = experiment_dir(spec, name)
    print(f"Sweep directory (for `raytune-hpo resume`): {args._sweep_dir}")
    start = time.perf_counter()
    result = run_sweep(spec, address=args.address, name=name, plan=plan)
    return _summarise(result, spec, time.perf_counter() - start, args.top)


def _cmd_resume(args: argparse.Namespace) -> int:
    from raytune_hpo.plan.assemble import assemble
    from raytune_hpo.results.sweep_dir import read_spec_copy
    from raytune_hpo.run.sweep import resume

    plan = assemble(read_spec_copy(args.dir))
    args._sweep_dir = args.dir
    announce(plan, verb="resuming")
    start = time.perf_counter()
    result = resume(args.dir, address=args.address, plan=plan)
    return _summarise(result, plan.spec, time.perf_counter() - start, args.top)


def _cmd_extend(args: argparse.Namespace) -> int:
    from raytune_hpo.run.extend import extend, extension_plan

    plan = extension_plan(args.dir, num_samples=args.num_samples)
    args._sweep_dir = args.dir
    announce(plan, verb="extending")
    start = time.perf_counter()
    result = extend(args.dir, num_samples=args.num_samples, address=args.address, plan=plan)
    return _summarise(result, plan.spec, time.perf_counter() - start, args.top)


def _summarise(result, spec, took: float, top: int | None) -> int:
    objectives = spec.objectives
    print(f"\nBest trials ({objectives.describe()}):")
    print(format_table(result.table, top=top))
    if objectives.ranked:
        front = result.front
        print(f"\nPareto front: {len(front)} trial(s) (pareto_rank 1, feasible)")
        if front.empty:
            print("No trial met every constraint.")
    elif result.best is not None:
        print(f"\nBest {spec.metric}: {result.best[spec.metric]:.4g}")
        print(f"Best configuration: {json.dumps(result.best_config, default=str)}")
    if result.num_errors:
        print(f"{result.num_errors} trial(s) failed; their errors are in the table above.")
    print(f"Finished in {took:.1f} s. Results: {result.path}")
    return 0 if result.best is not None else 1


def _cmd_results(args: argparse.Namespace) -> int:
    from raytune_hpo.results.table import load_results, to_json

    if args.schedule:  # what population-based training did
        import raytune_hpo.storage as storage
        from raytune_hpo.results.live import read_schedule

        result = None
        df = read_schedule(storage.normalize(args.dir))
        if df.empty:
            print("raytune-hpo: no population-based training schedule here", file=sys.stderr)
    else:
        result = load_results(args.dir, by=args.by)
        df = result.front if args.pareto else result.table
    df = df if args.top is None else df.head(args.top)
    if result is not None and result.live:  # on stderr: stdout stays a clean table, CSV or JSON
        counts = result.table["status"].value_counts()
        done = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no trials yet"
        print(
            "raytune-hpo: no results.csv yet (running or interrupted); read from Ray's "
            f"files as they are now: {done}",
            file=sys.stderr,
        )
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(to_json(df))
    else:
        print(format_table(df))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from raytune_hpo.study import StudySpec, check, compare

    study = check(StudySpec.from_yaml(args.study))
    out = args.out or f"{study.name}-study"
    runs = len(study.problems) * len(study.methods) * study.repetitions
    print(f"study {study.name!r}: {runs} runs of {study.budget} trials -> {out}")
    compare(study, out)
    print(f"Done. Report: raytune-hpo report {out}")
    return 0


def kind_of(dirs: list[str]) -> str:
    """``study`` or ``sweep``, from what the directories hold (one line when neither)."""
    import raytune_hpo.storage as storage
    from raytune_hpo.errors import UserError
    from raytune_hpo.names import RESULTS_CSV, SPEC_COPY
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


def _cmd_report(args: argparse.Namespace) -> int:
    import raytune_hpo.results.report as sweep_report
    from raytune_hpo.study import report as study_report

    kind = kind_of(args.dirs)
    if kind == "study":
        paths = study_report.build(args.dirs[0], out=args.out)
    else:
        paths = sweep_report.build(args.dirs, out=args.out, by=args.by)
    print(f"{paths['html']}\n{paths['markdown']}")
    return 0


def _cmd_searchers(args: argparse.Namespace) -> int:
    import raytune_hpo.sweep.load as load
    from raytune_hpo.schedulers import SCHEDULERS
    from raytune_hpo.searchers import SEARCHERS, plugin_entry

    print("searchers:")
    for name, entry in SEARCHERS.items():
        opts = ", ".join(entry.option_names()) or "-"
        print(f"  {name:16s} {entry.summary}  [options: {opts}]")
    plugins = load.entry_points()
    if plugins:
        print(f"plug-ins (entry points {load.SEARCHER_GROUP}):")
    for name, ep in plugins.items():
        try:
            entry = plugin_entry(load.load_entry_point(name, field=name), name)
        except ValueError as e:
            print(f"  {name:16s} {ep.value}  (cannot be used: {e})")
            continue
        opts = ", ".join(entry.option_names()) or "-"
        print(f"  {name:16s} {entry.summary} ({ep.value})  [options: {opts}]")
    print("schedulers:")
    for name, entry in SCHEDULERS.items():
        opts = ", ".join(entry.option_names()) or "-"
        print(f"  {name:16s} {entry.summary}  [options: {opts}]")
    return 0


def _sweep_commands(sub) -> None:
    """run, resume."""
    run = sub.add_parser("run", help="run a sweep locally (no file: the built-in quickstart)")
    run.add_argument("sweep", nargs="?", help="sweep YAML file")
    run.add_argument("--address", help=RAY_ADDRESS_HELP)
    overrides(run)
    run.add_argument("--top", type=int, default=10, help="rows of the final table (10)")
    run.add_argument("--sweep-env", help=argparse.SUPPRESS)  # set by `submit` for its job
    run.set_defaults(func=_cmd_run)

    rsm = sub.add_parser("resume", help="continue an interrupted sweep from its directory")
    rsm.add_argument(
        "dir", help="the sweep directory printed when the sweep started (local, s3://, gs://)"
    )
    rsm.add_argument("--address", help=RAY_ADDRESS_HELP)
    rsm.add_argument("--top", type=int, default=10, help="rows of the final table (10)")
    rsm.set_defaults(func=_cmd_resume)

    ext = sub.add_parser("extend", help="run more trials of a finished sweep, same searcher")
    ext.add_argument("dir", help="the finished sweep's directory (local, s3://, gs://)")
    ext.add_argument("--num-samples", type=int, required=True, help="how many more trials")
    ext.add_argument("--address", help=RAY_ADDRESS_HELP)
    ext.add_argument("--top", type=int, default=10, help="rows of the final table (10)")
    ext.set_defaults(func=_cmd_extend)


def _result_commands(sub) -> None:
    """results, compare, report, searchers."""
    res = sub.add_parser("results", help="table of a sweep's trials (running or finished)")
    res.add_argument("dir", help="the sweep directory (local, s3:// or gs://)")
    res.add_argument("--format", choices=("table", "csv", "json"), default="table")
    res.add_argument("--top", type=int, help="only the best N trials")
    res.add_argument("--by", choices=("last", "best"), default="last", help=BY_HELP)
    res.add_argument(
        "--pareto",
        action="store_true",
        help="the Pareto front only: the feasible trials no other dominates (pareto_rank 1)",
    )
    res.add_argument(
        "--schedule",
        action="store_true",
        help="population-based training's exploits instead: who copied whom at which step",
    )
    res.set_defaults(func=_cmd_results)

    cmp_ = sub.add_parser("compare", help="run a study: searchers x repetitions on a problem")
    cmp_.add_argument("study", help="study YAML file (see specs/studies/*.yaml)")
    cmp_.add_argument("--out", help="output directory (default: ./<name>-study); resumable")
    cmp_.set_defaults(func=_cmd_compare)

    rep = sub.add_parser(
        "report", help="HTML + Markdown report of a sweep, of sweeps side by side, or a study"
    )
    rep.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="sweep directories (local, s3://, gs://), or one study",
    )
    rep.add_argument(
        "--out",
        help="where the report goes (default: a local sweep's or study's own directory, "
        "else ./report-<names>)",
    )
    rep.add_argument("--by", choices=("last", "best"), default="last", help=BY_HELP)
    rep.set_defaults(func=_cmd_report)

    srch = sub.add_parser("searchers", help="list searchers and schedulers with their options")
    srch.set_defaults(func=_cmd_searchers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytune-hpo", description=__doc__.splitlines()[0].replace("``", "")
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (_sweep_commands, job_commands, _result_commands):
        group(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from raytune_hpo.errors import UserError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:  # a user mistake: one line, exit 2, nothing started
        return _fail(" ".join(str(e).split()))
    except KeyboardInterrupt as e:  # Ctrl-C: Ray Tune saved the state (the 2nd stops at once)
        from raytune_hpo.run.sweep import Interrupted

        where = e.path if isinstance(e, Interrupted) else getattr(args, "_sweep_dir", None)
        how = f"; continue it with: raytune-hpo resume {where}" if where else ""
        print(f"raytune-hpo: interrupted{how}", file=sys.stderr, flush=True)
        # Shutting Ray down takes a moment; another Ctrl-C ends the process at once.
        signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
