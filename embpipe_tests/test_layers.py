"""The import graph flows one way: cli → definitions → defs → resources / orchestration / serving → core → llm
→ paths, text, locks; stage modules never import each other; no module imports itself back through others.

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import embpipe

PACKAGE = Path(embpipe.__file__).parent
# Lower ranks are the foundations; a module may import modules of its own rank or below.
RANKS = [
    ("embpipe.paths", 0),
    ("embpipe.text", 0),
    ("embpipe.locks", 0),
    ("embpipe.llm", 1),
    ("embpipe.core", 2),
    ("embpipe.resources", 3),
    ("embpipe.orchestration", 3),
    ("embpipe.serving", 3),
    ("embpipe.defs", 4),
    ("embpipe.definitions", 5),
    ("embpipe.cli_artifacts", 6),
    ("embpipe.cli_plan", 6),
    ("embpipe.cli_run", 6),
    ("embpipe.cli", 7),
]
SHARED_DEFS = {"embpipe.defs.metadata", "embpipe.defs.types"}
STAGE_MODULES = {
    f"embpipe.defs.{name}"
    for name in ("ingest", "synthesis", "lmar", "embgen", "mining", "training", "evaluation", "lineage", "deploy")
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    return max(r for prefix, r in RANKS if module == prefix or module.startswith(prefix + "."))


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embpipe"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("embpipe")}
    return names - {"embpipe"}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_higher_layer():
    upward = sorted(
        f"{module} (layer {rank(module)}) imports {target} (layer {rank(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if rank(target) > rank(module)
    )
    assert upward == []


def test_stage_modules_import_only_shared_definition_helpers():
    crossing = sorted(
        f"{module} imports {target}"
        for module in STAGE_MODULES
        for target in GRAPH[module]
        if target.startswith("embpipe.defs.") and target not in SHARED_DEFS
    )
    assert crossing == []


def test_the_import_graph_has_no_cycle():
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(t for t in GRAPH.get(module, ()) if t in GRAPH):
            if state.get(target) == "open":
                return [*trail, module, target]
            if target not in state and (cycle := visit(target, [*trail, module])):
                return cycle
        state[module] = "done"
        return None

    cycles = [cycle for module in sorted(GRAPH) if module not in state and (cycle := visit(module, []))]
    assert cycles == []
