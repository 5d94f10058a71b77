"""Every dotted ``advdyn.`` path that a docstring or a page of ``docs/`` names exists: it
imports, and each further part is an attribute (or a dataclass field of an equinox module).
A module moved or renamed without its references fails here."""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import advdyn

SRC = Path(advdyn.__file__).parent
DOCS = SRC.parents[1] / "docs"
#: ``advdyn.x.y`` not inside a file path (``src/advdyn/x.py``) or a longer word
PATH = re.compile(r"(?<![\w./-])advdyn(?:\.[A-Za-z_]\w*)+")


def _defined(tree: ast.AST) -> set[str]:
    """Names bound at the top of a module or class body (defs, classes, assignments,
    annotations, imports)."""
    names: set[str] = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


@functools.cache
def _parse(file: Path) -> ast.Module:
    return ast.parse(file.read_text())


def _resolves_statically(path: str) -> bool:
    """The cheap check, without importing: a module file, then names its source binds."""
    parts = path.split(".")[1:]
    base = SRC
    while parts and ((base / parts[0]).is_dir() or (base / f"{parts[0]}.py").is_file()):
        base = base / parts.pop(0)
    file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if not parts:
        return True
    if file == SRC / "__init__.py" and parts[0] in advdyn._EXPORTS:  # the lazy names
        return _resolves_statically(".".join([advdyn._EXPORTS[parts[0]], *parts]))
    node: ast.AST = _parse(file)
    for i, name in enumerate(parts):
        if name not in _defined(node):
            return False
        for imp in getattr(node, "body", []):  # a re-export: follow it to its module
            if isinstance(imp, ast.ImportFrom) and (imp.module or "").startswith("advdyn"):
                for a in imp.names:
                    if (a.asname or a.name) == name:
                        return _resolves_statically(
                            ".".join([imp.module or "", a.name, *parts[i + 1:]]))
        found = [n for n in getattr(node, "body", [])
                 if isinstance(n, ast.ClassDef) and n.name == name]
        if not found:  # a function, a value or an import: its attributes need the object
            return i == len(parts) - 1
        node = found[0]
    return True


def _resolves(path: str) -> bool:
    return _resolves_statically(path) or _imports_and_resolves(path)


def _imports_and_resolves(path: str) -> bool:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if hasattr(obj, name):
                obj = getattr(obj, name)
            else:  # a field of an equinox module or dataclass is not a class attribute
                return name in getattr(obj, "__dataclass_fields__", {})
        return True
    return False


def _texts() -> list[tuple[str, str]]:
    texts = []
    for path in sorted(SRC.rglob("*.py")):
        tree = _parse(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    texts.append((str(path.relative_to(SRC)), doc))
    texts += [(f"docs/{p.name}", p.read_text()) for p in sorted(DOCS.glob("*.md"))]
    return texts


def test_every_dotted_advdyn_path_in_docstrings_and_docs_resolves():
    stale: dict[str, set[str]] = {}
    for where, text in _texts():
        for match in PATH.finditer(text):
            name = match.group(0)
            if not _resolves(name):
                stale.setdefault(name, set()).add(where)
    assert not stale, f"paths that do not exist: {stale}"


def test_a_stale_path_is_caught():
    assert _resolves("advdyn.theory.drift.flow")
    assert _resolves("advdyn.problem.instance.ProblemInstance.eigenvalues")
    assert not _resolves("advdyn.drift.flow")  # rename29: keep (a stale path on purpose)
    assert not _resolves("advdyn.theory.no_such_name")
