"""What the ``raytune-hpo`` commands share: reading the sweep named on the command line with its
overrides, printing tables and warnings, the options several commands take."""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys

ADDRESS_HELP = "the cluster's dashboard, e.g. http://HEAD:8265 (default: RAY_ADDRESS or local)"
RAY_ADDRESS_HELP = "an existing Ray cluster: auto or ray://HOST:10001"
BY_HELP = "rank each trial by its last reported epoch (default) or its best one"


def format_table(df, top: int | None = None) -> str:
    """The terminal table: floats to 4 significant digits; a searched value that does not
    apply to a trial (``when:``) and an empty note are empty cells, as in ``results.csv``."""
    import math

    from raytune_hpo.names import config_name

    shown = df if top is None else df.head(top)
    if shown.empty:
        return "(no trials)"
    notes = ("error", "stopped")
    shown = shown.drop(columns=[c for c in notes if c in shown and shown[c].isna().all()])

    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else v

    blank = [c for c in shown if config_name(c) or c in notes]
    shown = shown.assign(**{c: shown[c].map(cell) for c in blank})
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def apply_override(data: dict, item: str) -> None:
    """Apply ``a.b.c=value`` (value read as YAML) to the sweep dict ``data``."""
    from raytune_hpo.errors import SpecError
    from raytune_hpo.sweep.spec import parse_yaml

    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. trainable.epochs=5")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"--set {key}: {part} is not a mapping")
        node = child
    node[parts[-1]] = parse_yaml(raw, f"--set {key}")


def given_on_command_line(args: argparse.Namespace) -> list[tuple[tuple[str, ...], str]]:
    """The fields the command line sets, each with how it was set (``--set a.b=1``)."""
    out = []
    for item in getattr(args, "set", None) or []:
        key = item.partition("=")[0]
        out.append((tuple(key.split(".")), f"--set {item}"))
    for key, flag in (
        ("num_samples", "--num-samples"),
        ("storage_path", "--storage-path"),
        ("seed", "--seed"),
    ):
        value = getattr(args, key, None)
        if value is not None:
            out.append(((key,), f"{flag} {value}"))
    return out


@contextlib.contextmanager
def blamed_on_flags(args: argparse.Namespace):
    """An error in a field the command line set names that flag, not the sweep file."""
    from raytune_hpo.errors import UserError

    try:
        yield
    except UserError as e:
        field = tuple(str(p) for p in e.field)
        for path, flag in reversed(given_on_command_line(args)):  # the last --set wins
            n = min(len(path), len(field))
            if n and path[:n] == field[:n]:
                new = copy.copy(e)
                new.source = flag
                raise new from None
        raise


def load_spec(args: argparse.Namespace):
    """The sweep named by ``args`` with its overrides, validated once; SpecError on bad
    input."""
    from raytune_hpo.errors import SpecError
    from raytune_hpo.sweep.spec import SweepSpec, parse_yaml, sweep_file

    base: str | None  # where user code is found (None: the quickstart inside the package)
    if getattr(args, "sweep_env", None):  # a submitted job: the sweep is in the environment
        text = os.environ.get(args.sweep_env)
        if text is None:
            raise SpecError(f"--sweep-env {args.sweep_env}: no such environment variable")
        # The job's working_dir (the user's code) is the current directory now, but Ray may
        # remove it under a running driver: take its path now and never look there again.
        data, source, base = parse_yaml(text, f"${args.sweep_env}"), "the job", os.getcwd()
    else:
        data, source, base = sweep_file(args.sweep)
    sets = list(args.set or [])
    for key, value in (
        ("num_samples", args.num_samples),
        ("storage_path", args.storage_path),
        ("seed", args.seed),
    ):
        if value is not None:
            sets.append(f"{key}={value}")
    if sets and isinstance(data, dict):
        for item in sets:
            apply_override(data, item)
    with blamed_on_flags(args):
        return SweepSpec.from_dict(data, source=source, base_dir=base)


def announce(plan, verb: str = "sweep") -> None:
    """What will run, one line, and the plan's warnings: every command that runs a plan
    (``run``, ``resume``, ``extend``, ``submit``) says it before it starts."""
    spec = plan.spec
    print(
        f"{verb} {spec.name!r}: {plan.samples} trial(s) of {plan.trainable.label}, "
        f"searcher {plan.searcher_name}, scheduler {plan.scheduler_name}, "
        f"{plan.objectives.describe()}"
    )
    if plan.searcher_choice:
        print(plan.searcher_choice)
    for line in plan.warnings:
        print(f"raytune-hpo: warning: {line}", file=sys.stderr)


def overrides(p: argparse.ArgumentParser, storage_help: str = "override storage_path") -> None:
    """The options that change a sweep file's fields (``run`` and ``submit``)."""
    p.add_argument("--num-samples", type=int, help="override num_samples")
    p.add_argument("--storage-path", help=storage_help)
    p.add_argument("--seed", type=int, help="override seed")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a field, e.g. --set trainable.data.root=/data/images (repeatable)",
    )


__all__ = [
    "ADDRESS_HELP",
    "BY_HELP",
    "RAY_ADDRESS_HELP",
    "announce",
    "apply_override",
    "blamed_on_flags",
    "format_table",
    "load_spec",
    "overrides",
]
