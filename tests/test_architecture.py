"""The layout's rules, checked: one-way imports, a cheap side-effect-free import, one version.

The mathematics (the rooms) must not reach back into the foundations: a room imports no
config schema, no file I/O, no progress bar, no plotting, no workflow and no CLI, not even
inside a function. The walk below reads every module's source (all ``import`` statements,
at any depth) so that a lazy import inside a function is caught too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "advdyn"

#: the rooms: pure mathematics
ROOMS = ("problem", "theory", "simulate", "adversarial", "critical", "posterior", "sme")
#: what a room may not import (advdyn subpackages, and third-party UI/plotting libraries)
FORBIDDEN_ADVDYN = ("config", "io", "plot", "workflows", "cli")
FORBIDDEN_THIRD_PARTY = ("rich", "matplotlib", "typer", "pydantic", "netCDF4")
#: start-up machinery (issue 24): the program store lives in the CLI (advdyn.cli._programs,
#: which wraps the rooms' filter_jit functions from outside), and no room starts processes,
#: thread pools or tunes the garbage collector
STARTUP_MACHINERY = ("advdyn.cli", "advdyn.executables", "advdyn.__main__", "multiprocessing",
                     "concurrent", "gc")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module name imported anywhere in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # "from advdyn import io" imports the subpackage advdyn.io
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return found


def _room_modules() -> list[Path]:
    rooms = [SRC / room for room in ROOMS if (SRC / room).is_dir()]
    return [p for room in rooms for p in sorted(room.rglob("*.py"))]


def test_rooms_exist():
    for room in ("problem", "theory", "simulate", "adversarial", "critical"):
        assert (SRC / room / "__init__.py").is_file(), room


@pytest.mark.parametrize("path", _room_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_mathematics_imports_no_foundation(path):
    bad = []
    for lineno, module in _imports(path):
        parts = module.split(".")
        if parts[0] == "advdyn" and len(parts) > 1 and parts[1] in FORBIDDEN_ADVDYN:
            bad.append(f"line {lineno}: {module}")
        if parts[0] in FORBIDDEN_THIRD_PARTY:
            bad.append(f"line {lineno}: {module}")
    assert not bad, f"{path.relative_to(SRC)} imports a foundation: {bad}"


@pytest.mark.parametrize("path", _room_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_rooms_import_no_startup_machinery(path):
    bad = [f"line {lineno}: {module}" for lineno, module in _imports(path)
           if any(module == m or module.startswith(m + ".") for m in STARTUP_MACHINERY)]
    source = path.read_text()
    bad += [name for name in ("cached_jit", "set_store", ".prepare(") if name in source]
    assert not bad, f"{path.relative_to(SRC)} uses start-up machinery: {bad}"


def test_foundations_do_not_import_the_cli():
    # arrows point one way: cli -> workflows -> maths; nothing below the CLI imports it
    for path in SRC.rglob("*.py"):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        for lineno, module in _imports(path):
            assert not module.startswith("advdyn.cli"), f"{path}:{lineno} imports {module}"


def test_version_has_one_source():
    meta = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    assert "version" not in meta["project"], "the version lives in advdyn/_version.py only"
    assert "version" in meta["project"]["dynamic"]
    from importlib.metadata import version

    import advdyn

    assert version("advdyn") == advdyn.__version__


_FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
import jax
t_jax = time.perf_counter() - t0
before = bool(jax.config.jax_enable_x64)
t0 = time.perf_counter()
import advdyn
t_advdyn = time.perf_counter() - t0
heavy = sorted(m for m in ("matplotlib", "xarray", "dask", "torch", "pandas", "rich", "typer")
               if m in sys.modules)
after_import = bool(jax.config.jax_enable_x64)
import numpy as np
cfg = advdyn.ProblemConfig(d=200, task={"kind": "regression", "noise": 0.0}, epsilon=0.0,
                           spectrum={"kind": "identity"})
inst = advdyn.instantiate(cfg)
sol = advdyn.solve_ode(inst, advdyn.Constant(0.5), np.linspace(0.0, 40.0, 5))
cli = sorted(m for m in sys.modules if m.startswith(("advdyn.cli", "advdyn.__main__")))
print(json.dumps({"before": before, "after_import": after_import, "cli": cli,
                  "after_solve": bool(jax.config.jax_enable_x64), "heavy": heavy,
                  "risk": sol["adv_risk"].tolist(), "dtype": str(sol["adv_risk"].dtype)}))
"""


def test_import_changes_no_global_state_and_the_theory_still_runs_in_float64():
    out = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True,
                         check=True, timeout=300)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info == {**info, "before": False, "after_import": False, "after_solve": False}
    assert info["heavy"] == [], f"import advdyn loaded {info['heavy']}"
    assert info["cli"] == [], f"a solve through the API loaded {info['cli']}"
    assert info["dtype"] == "float64"
    # noiseless isotropic least squares at eps = 0 decays exponentially; at t = 40 the risk is
    # ~1e-17 of its start, far below float32's resolution (1e-7): only float64 resolves it
    risk = info["risk"]
    assert 0 < risk[-1] < 1e-12 * risk[0]


def test_solver_libraries_are_imported_only_when_a_solve_is_traced():
    # a run that loads stored programs (advdyn.cli._programs) never traces the ODE or the
    # optimum, so importing the whole command-line stack must not import diffrax/optimistix
    code = ("import sys, advdyn.cli, advdyn.workflows, advdyn.theory, advdyn.config; "
            "print(sorted(m for m in ('diffrax', 'optimistix') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


#: (importing module, imported private name) pairs allowed (none)
PRIVATE_IMPORT_EXCEPTIONS: set[tuple[str, str]] = set()


def _private_imports(path: Path) -> list[str]:
    """``from advdyn.x import _name`` and ``module._name`` uses of another advdyn module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imported_modules: dict[str, str] = {}  # local name -> advdyn module
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("advdyn"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    bad.append(f"line {node.lineno}: {node.module}.{a.name}")
                imported_modules[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("advdyn"):
                    imported_modules[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return bad


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_name_crosses_a_module_boundary(path):
    # every module: the seven rooms and the foundations
    rel = str(path.relative_to(SRC))
    bad = [b for b in _private_imports(path)
           if (rel, b.rsplit(".", 1)[-1]) not in PRIVATE_IMPORT_EXCEPTIONS]
    assert not bad, f"{rel} uses another module's private names: {bad}"


def test_every_room_is_checked():
    assert ROOMS == ("problem", "theory", "simulate", "adversarial", "critical", "posterior",
                     "sme")
    assert {p.parent.name for p in _room_modules()} >= set(ROOMS)
