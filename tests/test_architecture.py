"""The shape of the house: no import circles in jaxdiff/, and no arrow pointing up.

Layers, bottom to top: the maths (processes, nets, objectives, solvers, data, eval, io, rng) ->
train (the trainer and its method protocol) -> methods -> build -> api -> report -> cli. A module
may import its own layer or lower ones; nothing in the maths imports methods, train or build.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "jaxdiff"
MATHS = ("processes", "nets", "objectives", "solvers", "data", "eval", "io", "rng")
RANK = {
    **{m: 0 for m in MATHS},
    "train": 1,
    "methods": 2,
    "build": 3,
    "api": 4,
    "report": 5,
    "cli": 6,
}


def _module(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """jaxdiff modules imported anywhere in the file (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("jaxdiff"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxdiff"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        graph[mod] = {m for m in _imports(path) if m in files and m != mod}
    return graph


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "jaxdiff"


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import circles: {cycles}"


def test_no_upward_imports():
    graph = _graph()
    upward = []
    for mod, deps in graph.items():
        layer = _layer(mod)
        if layer not in RANK:
            continue
        for dep in deps:
            dl = _layer(dep)
            if dl in RANK and RANK[dl] > RANK[layer]:
                upward.append(f"{mod} -> {dep}")
    assert not upward, "imports pointing up the layers: " + ", ".join(sorted(upward))


def test_the_checker_sees_imports():
    """The graph is not empty and knows the trainer imports the protocol (a sanity check)."""
    graph = _graph()
    assert "jaxdiff.train.protocol" in graph["jaxdiff.train.step"]
    assert "jaxdiff.build" in graph["jaxdiff.api"]
    assert len(graph) > 40
