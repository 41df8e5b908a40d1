"""The layering of docs/architecture.md, enforced: a package imports only packages of lower layers.

Every import counts, at module level or inside a function (a function-local import must not hide a
cycle). The layer table lives in docs/architecture.md; this test reads it from there, so the
document and the check cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bitplan"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]+)\|")


def layers() -> dict[str, int]:
    """Package (or top-level module) -> layer number, from the table in docs/architecture.md."""
    table = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            for name in re.findall(r"`([\w.]+)`", match.group(2)):
                table[name] = int(match.group(1))
    return table


def unit_of(path: Path) -> str:
    """``bitplan/plan/io.py`` -> ``plan``; ``bitplan/spec.py`` -> ``spec``."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """Every bitplan package or module that ``path`` imports, wherever the import statement is."""
    units = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if node.module == "bitplan" else node.module for alias in node.names]
        else:
            continue
        units |= {name.split(".")[1] for name in names if name.startswith("bitplan.")}
    return units


def test_every_package_is_placed_in_a_layer() -> None:
    table = layers()
    units = {unit_of(path) for path in PACKAGE.rglob("*.py")}
    assert not units - set(table), f"add {sorted(units - set(table))} to the layer table in docs/architecture.md"
    assert not set(table) - units, f"docs/architecture.md lists packages that do not exist: {sorted(set(table) - units)}"


def test_packages_import_only_lower_layers() -> None:
    table = layers()
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = unit_of(path)
        for imported in imported_units(path) - {unit}:
            if imported in table and table[imported] >= table[unit]:
                violations.append(f"{path.relative_to(ROOT)} (layer {table[unit]}) imports `{imported}` (layer {table[imported]})")
    assert not violations, "imports against the layering of docs/architecture.md:\n" + "\n".join(violations)


def test_the_layer_table_is_read() -> None:
    """The parser sees the table: the leaves and the command line are where the document puts them."""
    table = layers()
    assert table["errors"] == 0 and table["choices"] == 0
    assert table["cli"] == table["__init__"] == max(table.values()) - 1 == table["__main__"] - 1
