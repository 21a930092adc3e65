"""What a trial asks for against what this machine has, known before Ray starts.

Locally a sweep whose trials ask for more than the machine has (a GPU on a laptop without one,
more CPUs than its cores) would print Ray's progress table and wait forever (Ray logs only
"insufficient resources"). ``check_local`` refuses it in one line naming ``resources.<key>``
and what the machine has. GPUs are counted as Ray counts them (NVIDIA's management library,
honouring ``CUDA_VISIBLE_DEVICES``); a Ray already running here is asked directly. On a
cluster an autoscaler may add nodes, so there the sweep waits, bounded by
``pending_timeout_s`` (``raytune_hpo.watch``).
"""

from __future__ import annotations

import os

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
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        count = int(manager.get_current_node_num_accelerators()) if manager else 0
    except Exception:  # no NVIDIA library or driver: no GPU
        return 0
    if visible:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def _memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX machine: do not refuse
        return float("inf")


def check_local(resources, *, num_cpus: int | None = None) -> None:
    """UserError naming ``resources.<key>`` when one trial asks for more than is here."""
    have = local_capacity(num_cpus)
    asked = {"cpu": resources.cpu, "gpu": resources.gpu, "memory_gb": resources.memory_gb or 0}
    for key, unit in (("gpu", "GPU(s)"), ("cpu", "CPU(s)"), ("memory_gb", "GB of memory")):
        if asked[key] > have[key] + 1e-9:
            raise UserError(
                f"a trial asks for {asked[key]:g} {unit} but this machine has {have[key]:g} "
                f"(cpu {have['cpu']:g}, gpu {have['gpu']:g}, memory_gb {have['memory_gb']:.1f}); "
                "lower it, or run on a cluster with --address / submit",
                field=("resources", key),
            )


def cluster_shortfall(resources, pending_timeout_s: float) -> str | None:
    """On a running cluster: a warning when no node offers what one trial asks for now (an
    autoscaler may still add one; the sweep waits at most ``pending_timeout_s``)."""
    import ray

    asked = {"CPU": resources.cpu, "GPU": resources.gpu}
    if resources.memory_gb:
        asked["memory"] = resources.memory_gb * 1024**3
    for node in ray.nodes():
        have = node.get("Resources", {}) if node.get("Alive") else None
        if have is not None and all(have.get(k, 0) >= v for k, v in asked.items() if v):
            return None
    want = ", ".join(f"{k} {v:g}" for k, v in asked.items() if v and k != "memory")
    return (
        f"resources: no node of this cluster offers what a trial asks for ({want}) now; "
        f"trials wait for the autoscaler to add one, at most pending_timeout_s "
        f"{pending_timeout_s:g} s"
    )


__all__ = ["check_local", "cluster_shortfall", "local_capacity"]
