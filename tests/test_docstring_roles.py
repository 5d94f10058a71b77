"""Docstrings use mkdocstrings cross-references (``[`Solution`][advdyn.Solution]``), which
the site renders as links and the strict build checks, never Sphinx roles
(``:class:`...```), which the site shows as raw text."""

from __future__ import annotations

import re
from pathlib import Path

import advdyn

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`")


def test_no_sphinx_roles_in_the_package():
    root = Path(advdyn.__file__).parent
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not found, f"Sphinx roles (not rendered by the docs site) at: {found}"
