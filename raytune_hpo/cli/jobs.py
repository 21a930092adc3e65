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


def _cmd_submit(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs
    from raytune_hpo.plan.assemble import assemble

    spec = load_spec(args)
    with blamed_on_flags(args):
        plan = assemble(spec, local_data=False)  # the data is the cluster's
    announce(plan, verb="submitting")
    job_id = jobs.submit(spec, address=args.address)
    print(f"submitted sweep {spec.name!r} as job {job_id} to {jobs.address_of(args.address)}")
    if not args.wait:
        print(f"follow it with: raytune-hpo logs {job_id} --follow")
        return 0
    info = jobs.follow(job_id, address=args.address)
    print(f"\njob {job_id}: {info['status']} (exit code {info['exit_code']})")
    return 0 if info["status"] == "SUCCEEDED" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    print(json.dumps(jobs.status(args.job, address=args.address), indent=2))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    if args.follow:
        info = jobs.follow(args.job, address=args.address)
        print(f"\njob {args.job}: {info['status']} (exit code {info['exit_code']})")
        return 0
    sys.stdout.write(jobs.logs(args.job, address=args.address))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    stopped = jobs.stop(args.job, address=args.address)
    print(f"job {args.job}: {'stopping' if stopped else 'already finished'}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    import raytune_hpo.jobs.client as jobs

    rows = jobs.list_jobs(address=args.address)
    import pandas as pd

    print(format_table(pd.DataFrame(rows)) if rows else "(no jobs)")
    return 0


def job_commands(sub) -> None:
    """submit, status, logs, stop, list: sweeps as Ray jobs on a cluster."""
    smt = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray job")
    smt.add_argument("sweep", nargs="?", help="sweep YAML file (no file: the quickstart)")
    smt.add_argument("--address", help=ADDRESS_HELP)
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
        p.add_argument("--address", help=ADDRESS_HELP)
        if name == "logs":
            p.add_argument("--follow", action="store_true", help="stream until the job ends")
        p.set_defaults(func=func)
    lst = sub.add_parser("list", help="jobs submitted to the cluster")
    lst.add_argument("--address", help=ADDRESS_HELP)
    lst.set_defaults(func=_cmd_list)


__all__ = ["job_commands"]
