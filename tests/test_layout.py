"""The package's layout as its import graph: stages import only earlier stages, no module
imports itself back through others (function-level imports included), and 0.1's flat module
paths still load their modules. Read from the source with ``ast``; nothing is imported to
draw the graph."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "raytune_hpo"

# Lowest first: a module may import its own package and what stands on an earlier line.
LAYERS = (
    ("errors", "names", "storage", "_registry", "_moved", "_lazy", "ray_compat", "secret_env"),
    ("objectives",),
    ("sweep",),  # 1. the sweep file and its space
    ("searchers", "schedulers", "train"),  # the algorithms (they never import each other)
    ("plan",),  # 2. turned into a plan
    ("results",),  # 3. the sweep directory read back and drawn
    ("run",),  # 4. running and guarding it
    ("study",),  # 5. studies of searchers
    ("jobs",),  # 6. sweeps as Ray jobs
    ("cli",),  # 7. the commands
    ("__init__", "session", "testing"),  # the public face: may import anything
)


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its text."""
    mods = _modules()

    def target(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges = graph.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # ``from pkg import mod`` imports the module; ``from mod import name`` the module
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            for name in names:
                if name.split(".")[0] == "raytune_hpo" and (t := target(name)) and t != mod:
                    edges.add(t)
    return graph


def _layer(mod: str) -> tuple[int, str]:
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i, top
    raise AssertionError(f"{mod}: in no layer of tests/test_layout.py; add its package there")


def test_stages_import_only_earlier_stages():
    bad = []
    for mod, targets in sorted(import_graph().items()):
        level, top = _layer(mod)
        for t in sorted(targets):
            t_level, t_top = _layer(t)
            shared = level == t_level == 0  # the shared modules (cycles: the test below)
            if t_top != top and t_level >= level and not shared:
                bad.append(f"{mod} -> {t}")
    assert not bad, "imports against the stages' order: " + "; ".join(bad)


def test_no_import_cycle():
    graph = import_graph()
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(mod: str, path: list[str]) -> None:
        seen[mod] = 1
        for t in sorted(graph.get(mod, ())):
            if seen.get(t) == 1:
                cycle = [*path[path.index(t) :], t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in seen:
                visit(t, [*path, t])
        seen[mod] = 2

    for mod in sorted(graph):
        if mod not in seen:
            visit(mod, [mod])


def test_the_graph_sees_function_level_imports(tmp_path):
    """The checks above would pass on a blind graph: a function-level import is an edge."""
    graph = import_graph()
    # raytune_hpo.cli.commands imports the run stage inside its command functions only.
    assert "raytune_hpo.run.sweep" in graph["raytune_hpo.cli.commands"]
    assert "raytune_hpo.plan.assemble" in graph["raytune_hpo.cli.commands"]


def test_the_top_level_holds_only_shared_modules_and_the_public_face():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    shared = {m for names in (LAYERS[0], LAYERS[-1]) for m in names}
    assert top <= shared, f"modules at the top level outside the shared ones: {top - shared}"


@pytest.mark.parametrize("old", sorted(importlib.import_module("raytune_hpo._moved").MOVED))
def test_a_flat_path_of_0_1_loads_the_moved_module(old):
    from raytune_hpo._moved import MOVED

    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]  # the module keeps its own identity
