"""``raytune-hpo submit|status|logs|stop|list``: sweeps as Ray jobs on a cluster (the commands;
the Job Submission API calls are ``raytune_hpo.jobs.client``)."""

from __future__ import annotations

import argparse
import json
import sys

from raytune_hpo.cli.common import (
    ADDRESS_HELP,
    announce,
    blamed_on_flags,
    format_table,
    load_spec,
    overrides,
)


def _where(args: argparse.Namespace) -> dict:
    """The cluster a job command talks to, and how (``--address``, ``--allow-plain-http``)."""
    return {"address": args.address, "allow_plain_http": args.allow_plain_http}


def _cmd_submit(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs
    from raytune_hpo.plan.assemble import assemble

    spec = load_spec(args)
    with blamed_on_flags(args):
        plan = assemble(spec, local_data=False)  # the data is the cluster's
    announce(plan, verb="submitting")
    job_id = jobs.submit(spec, **_where(args))
    print(f"submitted sweep {spec.name!r} as job {job_id} to {jobs.address_of(args.address)}")
    if not args.wait:
        print(f"follow it with: raytune-hpo logs {job_id} --follow")
        return 0
    info = jobs.follow(job_id, **_where(args))
    print(f"\njob {job_id}: {info['status']} (exit code {info['exit_code']})")
    return 0 if info["status"] == "SUCCEEDED" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    info = jobs.status(args.job, **_where(args))
    print(json.dumps(info, indent=2))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    if args.follow:
        info = jobs.follow(args.job, **_where(args))
        print(f"\njob {args.job}: {info['status']} (exit code {info['exit_code']})")
        return 0
    sys.stdout.write(jobs.logs(args.job, **_where(args)))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    stopped = jobs.stop(args.job, **_where(args))
    print(f"job {args.job}: {'stopping' if stopped else 'already finished'}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    rows = jobs.list_jobs(**_where(args))
    import pandas as pd

    print(format_table(pd.DataFrame(rows)) if rows else "(no jobs)")
    return 0


def _address(parser: argparse.ArgumentParser) -> None:
    """``--address`` and ``--allow-plain-http`` (every job command talks to the cluster)."""
    parser.add_argument("--address", help=ADDRESS_HELP)
    parser.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="send the cluster's auth token over plain http to a host other than this "
        "machine (unencrypted; the documented way is a tunnel to 127.0.0.1)",
    )


def job_commands(sub) -> None:
    """submit, status, logs, stop, list: sweeps as Ray jobs on a cluster."""
    smt = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray job")
    smt.add_argument("sweep", nargs="?", help="sweep YAML file (no file: the quickstart)")
    _address(smt)
    smt.add_argument("--wait", action="store_true", help="follow the logs until the job ends")
    overrides(smt, "override storage_path (shared: NFS, s3://, gs://)")
    smt.set_defaults(func=_cmd_submit)
    for name, func, text in (
        ("status", _cmd_status, "a submitted sweep's status"),
        ("logs", _cmd_logs, "a submitted sweep's logs"),
        ("stop", _cmd_stop, "stop a submitted sweep"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("job", help="the job id printed by submit")
        _address(p)
        if name == "logs":
            p.add_argument("--follow", action="store_true", help="stream until the job ends")
        p.set_defaults(func=func)
    lst = sub.add_parser("list", help="jobs submitted to the cluster")
    _address(lst)
    lst.set_defaults(func=_cmd_list)


__all__ = ["job_commands"]
