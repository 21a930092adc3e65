"""The KubeRay manifests of cluster/ validate against KubeRay's own CRD schemas (v1.7.0, vendored
in tests/data/kuberay-1.7.0 with their provenance), strictly: an unknown field is an error, as
`kubectl apply` reports it. Token authentication is on in both (``authOptions: {mode: token}``,
KubeRay 1.5.1 and newer, Ray 2.52 and newer). No cluster, no network: jsonschema only."""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
KUBERAY_VERSION = "1.7.0"
DATA = Path(__file__).resolve().parent / "data" / f"kuberay-{KUBERAY_VERSION}"
FILES = {  # kind: (the schema's file, its digest; tests/data/kuberay-1.7.0/README.md)
    "RayCluster": (
        "ray.io_rayclusters.v1.schema.json.gz",
        "d89bddc296dbd61d51f23787a1e58502419f7844c4bdb145140bca6d41abd27b",
    ),
    "RayJob": (
        "ray.io_rayjobs.v1.schema.json.gz",
        "59a7f922ef11bcf7333eef8ad515a2cc40a8ecc88f2b1472a435e87a686f4957",
    ),
}
MANIFESTS = {"kuberay-raycluster.yaml": "RayCluster", "kuberay-rayjob.yaml": "RayJob"}


@functools.cache
def schema(kind: str) -> dict:
    """KubeRay's ``ray.io/v1`` ``openAPIV3Schema`` of ``kind``."""
    name, digest = FILES[kind]
    raw = gzip.decompress((DATA / name).read_bytes())
    assert hashlib.sha256(raw).hexdigest() == digest, f"{name}: not the vendored schema"
    return json.loads(raw)


def strict(schema: dict) -> dict:
    """A Kubernetes structural schema that also rejects unknown fields: every object with
    ``properties`` and no ``additionalProperties`` / ``x-kubernetes-preserve-unknown-fields``
    gets ``additionalProperties: false`` (the API server prunes unknown fields; kubectl's
    default field validation reports them)."""
    out = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


@functools.cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(schema(kind)))


def problems(doc: dict) -> list[str]:
    assert doc["apiVersion"] == "ray.io/v1", doc["apiVersion"]  # the version vendored
    found = validator(doc["kind"]).iter_errors(doc)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def manifest(name: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((ROOT / "cluster" / name).read_text()) if d]
    return doc


def cluster_spec(doc: dict) -> dict:
    return doc["spec"].get("rayClusterSpec", doc["spec"])


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_validates_against_kuberays_crd(name):
    doc = manifest(name)
    assert doc["kind"] == MANIFESTS[name]
    assert problems(doc) == [], f"{name}: {problems(doc)}"


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_turns_token_authentication_on(name):
    spec = cluster_spec(manifest(name))
    assert spec.get("authOptions") == {"mode": "token"}, f"{name}: {spec.get('authOptions')}"
    # KubeRay's authOptions needs Ray 2.52 or newer in the pods.
    assert Version(spec["rayVersion"]) >= Version("2.52.0")
    # The operator makes the token and sets RAY_AUTH_MODE / RAY_AUTH_TOKEN itself: no
    # container may switch it off or bring a token of its own.
    containers = [
        c
        for group in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
        for c in group["template"]["spec"]["containers"]
    ]
    assert containers
    for c in containers:
        names = {e["name"] for e in c.get("env", [])}
        assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}, c["name"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update(authOptions={"mode": "tokens"}), "is not one of"),
        (lambda s: s.update(authOption={"mode": "token"}), "Additional properties"),
        (lambda s: s["authOptions"].update(secret="x"), "Additional properties"),
        (lambda s: s.update(rayVersion=2.6), "is not of type 'string'"),
    ],
    ids=["unknown-mode", "misspelt-field", "unknown-auth-option", "version-not-a-string"],
)
def test_the_validation_catches_what_kubernetes_would_refuse(change, expected):
    for name in MANIFESTS:
        doc = manifest(name)
        change(cluster_spec(doc))
        found = problems(doc)
        assert any(expected in p for p in found), (name, found)
