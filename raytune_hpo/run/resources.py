"""What a trial asks for against what this machine has, known before Ray starts.

Locally a sweep whose trials ask for more than the machine has (a GPU on a laptop without one,
more CPUs than its cores) would print Ray's progress table and wait forever (Ray logs only
"insufficient resources"). ``check_local`` refuses it in one line naming ``resources.<key>``
and what the machine has. GPUs are counted as Ray counts them (NVIDIA's management library,
honouring ``CUDA_VISIBLE_DEVICES``); a Ray already running here is asked directly.

On a cluster an autoscaler may add nodes, so a trial nothing offers now waits (a warning says
so), bounded by ``pending_timeout_s`` (``raytune_hpo.run.watch``). What it can never get is
refused before the sweep starts (``check_cluster``) when the cluster's node types are known:
its autoscaler's config, read on the head (where a submitted sweep's driver runs), lists what
each node type offers (``resources`` of ``available_node_types``; ``cluster/*.yaml`` declare
them for their GPU types).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from raytune_hpo import ray_compat
from raytune_hpo.errors import UserError


def local_capacity(num_cpus: int | None = None) -> dict[str, float]:
    """CPU, GPU and memory (GB) a local Ray gets here: the running one's, or this machine's."""
    import ray

    if ray.is_initialized():
        have = ray.cluster_resources()
        return {
            "cpu": float(have.get("CPU", 0)),
            "gpu": float(have.get("GPU", 0)),
            "memory_gb": float(have.get("memory", 0)) / 1024**3,
        }
    return {
        "cpu": float(num_cpus or os.cpu_count() or 1),
        "gpu": float(_gpus()),
        "memory_gb": _memory_bytes() / 1024**3,
    }


def _gpus() -> int:
    """GPUs Ray would see here (its NVIDIA accelerator manager)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return 0
    count = ray_compat.gpus_here()
    if visible:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def _memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX machine: do not refuse
        return float("inf")


@dataclass(frozen=True)
class Demand:
    """What one trial asks for: ``ranks`` processes of ``cpu``, ``gpu`` and ``memory_gb`` each
    (``workers:``; else the one process of ``resources:``), and the field that says so."""

    cpu: float
    gpu: float
    memory_gb: float | None = None
    ranks: int = 1
    placement: str = "PACK"
    field: str = "resources"
    own_cpu: float = 0.0  # with workers: the trial's own process beside its ranks (0.01)

    @property
    def total(self) -> Demand:
        """The whole trial as one bundle (on one machine, or one node under STRICT_PACK)."""
        memory = self.memory_gb * self.ranks if self.memory_gb else None
        return replace(
            self, cpu=self.cpu * self.ranks, gpu=self.gpu * self.ranks, memory_gb=memory, ranks=1
        )


def demand(spec) -> Demand:
    """One trial's demand in ``spec``: its ``workers:`` ranks, else its ``resources:``."""
    w = spec.workers
    if w is None:
        r = spec.resources
        return Demand(cpu=r.cpu, gpu=r.gpu, memory_gb=r.memory_gb)
    from raytune_hpo.train.distributed import TRIAL_RESOURCES

    return Demand(
        w.cpu,
        w.gpu,
        w.memory_gb,
        ranks=w.count,
        placement=w.placement,
        field="workers",
        own_cpu=TRIAL_RESOURCES["cpu"],
    )


def _as_demand(resources) -> Demand:
    if isinstance(resources, Demand):
        return resources
    return Demand(cpu=resources.cpu, gpu=resources.gpu, memory_gb=resources.memory_gb)


def check_local(resources, *, num_cpus: int | None = None) -> None:
    """UserError naming ``resources.<key>`` (``workers.<key>``) when one trial (all of its
    ranks: here they share one machine) asks for more than is here."""
    have = local_capacity(num_cpus)
    asked_by = _as_demand(resources)
    whole = asked_by.total
    # All of it on this machine, the trial's own process too: 2 ranks of 1 CPU on 2 CPUs
    # would pass without it, and their start would wait for a CPU that never frees.
    asked = {"cpu": whole.cpu + whole.own_cpu, "gpu": whole.gpu, "memory_gb": whole.memory_gb or 0}
    who = f"a trial of {asked_by.ranks} ranks" if asked_by.ranks > 1 else "a trial"
    for key, unit in (("gpu", "GPU(s)"), ("cpu", "CPU(s)"), ("memory_gb", "GB of memory")):
        if asked[key] > have[key] + 1e-9:
            raise UserError(
                f"{who} asks for {asked[key]:g} {unit} but this machine has {have[key]:g} "
                f"(cpu {have['cpu']:g}, gpu {have['gpu']:g}, memory_gb {have['memory_gb']:.1f}); "
                "lower it, or run on a cluster with --address / submit",
                field=(asked_by.field, key),
            )


def _asked(resources) -> dict[str, float]:
    """One trial's resources under Ray's names (memory in bytes); what it does not ask, left out."""
    asked = {"CPU": resources.cpu, "GPU": resources.gpu}
    if resources.memory_gb:
        asked["memory"] = resources.memory_gb * 1024**3
    return {k: v for k, v in asked.items() if v}


_FIELDS = {"GPU": "gpu", "CPU": "cpu", "memory": "memory_gb"}  # Ray's name: ours


def _amount(key: str, value: float) -> str:
    return f"{value / 1024**3:.1f} GB" if key == "memory" else f"{value:g}"


def _offer(have: dict[str, float]) -> str:
    """``CPU 4, GPU 1, memory 11.2 GB``: what one node offers, in the message's terms."""
    return ", ".join(f"{k} {_amount(k, have[k])}" for k in ("CPU", "GPU", "memory") if k in have)


def node_types_of(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    """What one node of each type in a Ray autoscaling config (cluster launcher or Ray's fake
    multi-node provider) offers: its declared ``resources``, for the head's type and every
    type the autoscaler may add (``max_workers`` above 0). CPU and GPU a type does not declare
    are 0, as the autoscaler plans; memory it does not declare is unknown and left out."""
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    out = {}
    for name, node_type in types.items():
        if name == head or node_type.get("max_workers", config.get("max_workers", 0)) > 0:
            declared = {k: float(v) for k, v in (node_type.get("resources") or {}).items()}
            out[str(name)] = {"CPU": 0.0, "GPU": 0.0, **declared}
    return out


def _monitor_config(gcs_address: str) -> Path | None:
    """The autoscaling config the autoscaler of the cluster at ``gcs_address`` runs with, read
    from its monitor's command line (``ray start --head --autoscaling-config=FILE``; the
    cluster launcher's head passes ``~/ray_bootstrap_config.yaml``). Only on the head, where
    the monitor runs (a submitted sweep's driver runs there); None elsewhere. The monitor is
    told by its GCS port: it runs on the GCS's machine, under whichever of its addresses."""
    port = gcs_address.rsplit(":", 1)[-1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = [a.decode(errors="replace") for a in cmdline.read_bytes().split(b"\0") if a]
        except OSError:  # gone, or not ours to read
            continue
        if not any("autoscaler" in a and a.endswith("monitor.py") for a in args):
            continue
        opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        same = opts.get("gcs-address", "").rsplit(":", 1)[-1] == port
        if same and opts.get("autoscaling-config"):
            return Path(opts["autoscaling-config"]).expanduser()
    return None


def cluster_node_types() -> dict[str, dict[str, float]] | None:
    """The node types of the running cluster (see ``node_types_of``), from its autoscaler's
    config; None when it cannot be known here (no autoscaler, KubeRay, a driver off the head)."""
    import ray
    import yaml

    ctx = ray.get_runtime_context()
    head = [
        n["NodeID"] for n in ray.nodes() if ray_compat.HEAD_NODE_RESOURCE in n.get("Resources", {})
    ]
    path = _monitor_config(ctx.gcs_address) if ctx.get_node_id() in head else None
    if path is None:
        return None
    try:
        return node_types_of(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return None  # unreadable: say nothing rather than refuse on a guess


def check_node_types(
    resources, types: dict[str, dict[str, float]], alive: Iterable[dict[str, float]] = ()
) -> None:
    """UserError naming ``resources.<key>`` when no node type in ``types`` and no node
    ``alive`` now can hold one trial: the sweep would wait for a node that never comes. A
    data-parallel trial's ranks may spread over nodes: one rank must fit a node (under
    ``STRICT_PACK`` the whole trial)."""
    asked_by = _as_demand(resources)
    if asked_by.placement == "STRICT_PACK":
        asked_by = asked_by.total
    asked = _asked(asked_by)
    alive = list(alive)

    def fits(have: dict[str, float], key: str) -> bool:
        if key == "memory" and key not in have:
            return True  # undeclared: not judged
        return have.get(key, 0.0) + 1e-9 >= asked[key]

    missing = {name: [k for k in asked if not fits(have, k)] for name, have in types.items()}
    if not all(missing.values()) or any(all(fits(have, k) for k in asked) for have in alive):
        return
    # The type that lacks the fewest of them, and of those the one nearest in what it lacks.
    nearest = min(missing, key=lambda n: (len(missing[n]), -types[n].get(missing[n][0], 0.0)))
    key = missing[nearest][0]
    want = ", ".join(f"{k} {_amount(k, v)}" for k, v in asked.items())
    listed = "; ".join(f"{name} {_offer(have)}" for name, have in types.items())
    what = "one trial" if asked_by.ranks == 1 else f"one rank of a {asked_by.ranks}-rank trial"
    raise UserError(
        f"no node of this cluster offers what {what} asks for ({want}), now or "
        f"after the autoscaler adds nodes: the nearest node type, {nearest}, lacks {key} "
        f"(node types: {listed}); lower it, or add a node type that has it to the cluster config",
        field=(asked_by.field, _FIELDS[key]),
    )


def check_cluster(resources, pending_timeout_s: float) -> str | None:
    """On a running cluster, before the sweep starts: UserError when neither a node alive now
    nor any node type its autoscaler can add holds one trial (``check_node_types``);
    otherwise ``cluster_shortfall``'s warning, or None."""
    import ray

    types = cluster_node_types()
    if types is not None:
        alive = [
            {k: float(v) for k, v in n.get("Resources", {}).items()}
            for n in ray.nodes()
            if n.get("Alive")
        ]
        check_node_types(resources, types, alive)
    return cluster_shortfall(resources, pending_timeout_s)


def cluster_shortfall(resources, pending_timeout_s: float) -> str | None:
    """On a running cluster: a warning when no node offers what one trial asks for now (an
    autoscaler may still add one; the sweep waits at most ``pending_timeout_s``)."""
    import ray

    asked = _asked(_as_demand(resources))
    for node in ray.nodes():
        have = node.get("Resources", {}) if node.get("Alive") else None
        if have is not None and all(have.get(k, 0) >= v for k, v in asked.items()):
            return None
    want = ", ".join(f"{k} {v:g}" for k, v in asked.items() if k != "memory")
    return (
        f"resources: no node of this cluster offers what a trial asks for ({want}) now; "
        f"trials wait for the autoscaler to add one, at most pending_timeout_s "
        f"{pending_timeout_s:g} s"
    )


__all__ = [
    "Demand",
    "check_cluster",
    "check_local",
    "check_node_types",
    "cluster_node_types",
    "cluster_shortfall",
    "demand",
    "local_capacity",
    "node_types_of",
]
