"""The packages of the code base and their order, written down once and enforced: a
module imports only from its own package or the packages below it, the simulator stays
the client's independent counterpart, and the README's layers table names the same
packages in the same order."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. Within a package, modules may import each other (no cycle is allowed
# anyway: Python would fail at import).
PACKAGES = [
    "runner.core",
    "jobs",
    "runner.simulator",
    "runner.media",
    "runner.ledger",
    "runner.manifest",
    "runner.api",
    "runner.engine",
    "runner.reports",
    "runner.run",
    "runner.review",
    "runner.cli",
]
# The simulator speaks the documented protocol on its own: it shares the job contract
# and core's records, never the client's, the engine's or the ledger's code.
SIMULATOR_MAY_USE = ("jobs", "runner.simulator", "runner.core")
# Modules outside the packages: the package root and ``python -m runner``.
ENTRY = {"runner", "runner.__main__"}


def package_of(module: str) -> str:
    """The package a module belongs to (``runner.__main__`` is the command line)."""
    if module in ENTRY:
        return "runner.cli"
    found = [p for p in PACKAGES if module == p or module.startswith(p + ".")]
    assert found, f"{module} is in no package: put it in one of {PACKAGES}"
    return max(found, key=len)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in ("runner", "jobs"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name != "runner.assets":
                found[name] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known}


def test_every_module_is_in_a_package():
    for name in project_modules():
        package_of(name)


def test_no_module_imports_a_package_above_its_own():
    modules = project_modules()
    upward = []
    for name, path in modules.items():
        mine = PACKAGES.index(package_of(name))
        for imported in imports_of(path, set(modules)):
            theirs = PACKAGES.index(package_of(imported))
            if theirs > mine:
                upward.append(f"{name} imports {imported} ({PACKAGES[theirs]} is above)")
    assert not upward, "\n".join(upward)


def test_the_simulator_is_the_clients_independent_counterpart():
    modules = project_modules()
    for name, path in modules.items():
        if package_of(name) == "runner.simulator":
            for imported in imports_of(path, set(modules)):
                assert imported.startswith(SIMULATOR_MAY_USE), f"{name} imports {imported}"


def test_core_and_records_import_nothing_above_core():
    modules = project_modules()
    for name, path in modules.items():
        if package_of(name) == "runner.core":
            above = {i for i in imports_of(path, set(modules)) if package_of(i) != "runner.core"}
            assert not above, f"{name} imports {above}"
    assert imports_of(modules["runner.core.records"], set(modules)) == set()


def test_the_readme_names_the_packages_in_their_order():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("### Layout") :]
    named = re.findall(r"^\| `([a-z_.]+)/?` \|", table, re.MULTILINE)
    shown = ["jobs" if n == "jobs" else f"runner.{n}" for n in named]
    assert shown == PACKAGES
