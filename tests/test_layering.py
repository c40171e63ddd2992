"""The package's shape: no import circle between modules, and each floor imports only from
the floors below it (blocks < scoring < flows < deployments). Imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOORS = ("blocks", "scoring", "flows", "deployments")


def _modules() -> dict[str, Path]:
    found = {}
    for floor in FLOORS:
        for path in sorted((REPO / floor).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """First-party modules that ``path`` imports (``from pkg import mod`` names the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out.update(subs or ({node.module} & known))
    return out


GRAPH = {name: _imports(path, set(_modules())) for name, path in _modules().items()}


def test_no_import_circle():
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name] - {name}):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("floor", FLOORS)
def test_floors_import_only_downwards(floor):
    above = set(FLOORS[FLOORS.index(floor) + 1 :])
    wrong = sorted(f"{name} imports {target}" for name, targets in GRAPH.items()
                   if name.split(".")[0] == floor for target in targets
                   if target.split(".")[0] in above)  # fmt: skip
    assert not wrong, wrong
