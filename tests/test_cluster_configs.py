"""Every config under cluster/ parses, and none opens Ray's dashboard (8265), GCS (6379) or
client (10001) ports to the world (Ray's docs: a cluster must not face untrusted networks)."""

import os
import re

import pytest
import yaml

CLUSTER = os.path.join(os.path.dirname(__file__), "..", "cluster")
CONFIGS = sorted(f for f in os.listdir(CLUSTER) if f.endswith(".yaml"))
RAY_PORTS = {8265, 6379, 10001}
WORLD = ("0.0.0.0/0", "::/0")


def docs(name):
    with open(os.path.join(CLUSTER, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def walk(node, path=()):
    """(path, value) for every leaf of a YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, (*path, str(i)))
    else:
        yield path, node


def test_there_are_configs_for_aws_gcp_and_kuberay():
    kinds = {d.get("provider", {}).get("type") or d.get("kind") for n in CONFIGS for d in docs(n)}
    assert {"aws", "gcp", "RayCluster", "RayJob"} <= kinds


@pytest.mark.parametrize("name", CONFIGS)
def test_no_config_opens_ray_ports_to_the_world(name):
    for doc in docs(name):
        leaves = list(walk(doc))
        for path, value in leaves:
            text = str(value)
            assert not any(w in text for w in WORLD), f"{name}: {'.'.join(path)} = {text}"
            if "dashboard-host" in text or (path and path[-1] == "dashboard-host"):
                host = re.search(r"dashboard-host[= ]?\"?([\d.]+)", text)
                host = host.group(1) if host else text
                # On a VM the dashboard stays on loopback (reach it through `ray dashboard`);
                # inside a pod it may bind the pod, which only a ClusterIP service reaches.
                assert host == "127.0.0.1" or doc.get("kind") in ("RayCluster", "RayJob"), (
                    f"{name}: dashboard bound to {host}"
                )
        for path, value in leaves:
            if path and path[-1] in ("serviceType", "type") and "Spec" in ".".join(path):
                assert value == "ClusterIP", f"{name}: {'.'.join(path)} = {value}"
        assert doc.get("kind") not in ("Ingress",), f"{name}: exposes Ray through an Ingress"
        if doc.get("kind") == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP"
        for key in ("IpPermissions", "firewall", "sourceRanges", "loadBalancerSourceRanges"):
            assert not any(key in p for p, _ in leaves), f"{name}: opens {key}"


@pytest.mark.parametrize("name", [n for n in CONFIGS if "kuberay" in n])
def test_kuberay_head_service_is_cluster_internal(name):
    for doc in docs(name):
        spec = doc.get("spec", {})
        head = spec.get("headGroupSpec") or spec.get("rayClusterSpec", {}).get("headGroupSpec")
        if head is not None:
            assert head.get("serviceType") == "ClusterIP"


def test_launcher_workers_autoscale_with_gpus():
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml"):
        (doc,) = docs(name)
        workers = {
            k: v for k, v in doc["available_node_types"].items() if k != doc["head_node_type"]
        }
        assert workers and all(w["min_workers"] == 0 < w["max_workers"] for w in workers.values())
        assert doc["available_node_types"][doc["head_node_type"]]["resources"] == {"CPU": 0}
