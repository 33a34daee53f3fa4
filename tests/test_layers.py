"""The package layering the README states: a package of src/compstream
imports only packages listed below it (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "compstream"
# Top to bottom, as in the README's layout table. Packages not listed (root
# modules such as publish.py and config.py, packages added later) are not checked.
LAYERS = ["cli", "hr", "ops", "ingest", "reports", "replay", "worker", "history", "codec", "domain", "broker"]


def _imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "compstream" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_packages_import_only_downwards() -> None:
    upward = []
    for i, package in enumerate(LAYERS):
        allowed = set(LAYERS[i:])
        for path in sorted((SRC / package).rglob("*.py")):
            for imported in _imported_packages(path) & set(LAYERS):
                if imported not in allowed:
                    upward.append(f"{path.relative_to(SRC)} imports compstream.{imported}")
    assert upward == []


def test_readme_lists_the_same_order() -> None:
    readme = (SRC.parents[1] / "README.md").read_text()
    positions = [readme.index(f"| `{p}/` |") for p in LAYERS]
    assert positions == sorted(positions)
