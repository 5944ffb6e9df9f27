"""The backend's layout rules, checked on the source: every import (at the top, inside a function
or under TYPE_CHECKING) counts, because a lazy import hides a circle rather than breaking it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
MAX_TOP_LEVEL_FILES = 12


def _modules() -> dict[str, Path]:
    out = {}
    for path in BACKEND.rglob("*.py"):
        if "migrations" in path.relative_to(BACKEND).parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imported(module: str, path: Path) -> set[str]:
    """Every name an import statement of `path` reaches, resolved to absolute dotted names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


IMPORTS = {m: _imported(m, p) for m, p in MODULES.items()}
EDGES = {m: {n for n in names if n in MODULES and n != m} for m, names in IMPORTS.items()}


def _package(module: str) -> str:
    """backend.engine.stages -> backend.engine; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def _circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as a path, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_graph_has_no_circle() -> None:
    assert _circle(EDGES) is None, " -> ".join(_circle(EDGES) or [])


def test_the_package_graph_has_no_circle() -> None:
    """Packages (engine, ledger, ...) and top-level modules depend on each other in one direction."""
    packages: dict[str, set[str]] = {}
    for module, targets in EDGES.items():
        src = _package(module)
        packages.setdefault(src, set()).update(_package(t) for t in targets if _package(t) != src)
    assert _circle(packages) is None, " -> ".join(_circle(packages) or [])


def test_backend_imports_neither_streamlit_nor_the_console() -> None:
    upward = {m: sorted(n for n in names if n.split(".")[0] in ("console", "pages", "streamlit"))
              for m, names in IMPORTS.items()}
    assert not {m: n for m, n in upward.items() if n}


def test_few_modules_sit_directly_in_backend() -> None:
    top = sorted(p.name for p in BACKEND.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_FILES, top


def _layout_table() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("| `backend/"))


def test_the_readme_layout_table_names_every_package_and_top_level_module() -> None:
    table = _layout_table()
    for path in sorted(BACKEND.iterdir()):
        if path.name.startswith(("_", ".")) or path.name == "migrations" or path.suffix not in (".py", ""):
            continue
        name = f"`backend/{path.name}/`" if path.is_dir() else path.name
        assert name in table, f"README's layout table does not name {name}"


@pytest.mark.parametrize("row", _layout_table().splitlines(), ids=lambda r: r.split("|")[1].strip())
def test_every_path_the_readme_layout_table_names_exists(row: str) -> None:
    """`backend/x/` names a package; a bare `name.py` in the same row is a file of that package
    (or of backend/ for the top-level rows)."""
    first = row.split("|")[1]
    folder = ROOT / re.findall(r"`(backend/[\w/]*)`", first)[0] if first.strip().endswith("/`") else BACKEND
    for name in re.findall(r"`([\w/]+\.py)`", row):
        where = ROOT / name if "/" in name else folder / name
        assert where.is_file(), f"README names {name}, which is not {where.relative_to(ROOT)}"
