"""The layers of the code base, written down once and enforced: a module imports only
from its own layer or the ones below it, and the simulator stays the client's
independent counterpart. The README's layout section shows the same list."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. Within a layer, modules may import each other (no cycle is allowed
# anyway: Python would fail at import).
LAYERS: list[tuple[str, list[str]]] = [
    ("records", ["runner.records", "runner.errors", "runner.clock", "jobs.problems", "jobs.forms"]),
    ("contract", ["jobs.contract", "jobs.images", "jobs.pictures"]),
    (
        "jobs",
        [
            "jobs.kling_v26",
            "jobs.kling_v21",
            "jobs.kling_o1",
            "jobs.kling_v30",
            "jobs",
        ],
    ),
    (
        "basics",
        [
            "runner.retry",
            "runner.atomic",
            "runner.logs",
            "runner.crash",
            "runner.lock",
            "runner.exits",
            "runner.mp4",
            "runner.picture_pool",
            "runner.causes",
            "runner.streak",
            "runner.notify",
            "runner.links",
            "runner.formats",
            "runner.answers",
            "runner.user_cache",
            "runner.api_identity",
            "runner.redact",
        ],
    ),
    (
        "rates",
        ["runner.rates", "runner.limits", "runner.options", "runner.stopping", "runner.schedule"],
    ),
    ("inputs", ["runner.ledger", "runner.manifest"]),
    ("ledger and plan", ["runner.state", "runner.manifest_files", "runner.plan", "runner.learned"]),
    (
        "simulator",
        [
            "runner.simulator.readings",
            "runner.simulator.state",
            "runner.simulator.wire",
            "runner.simulator.faults",
            "runner.simulator.video",
            "runner.simulator.server",
            "runner.simulator.hosting",
            "runner.simulator",
        ],
    ),
    ("client", ["runner.client", "runner.wire_forms", "runner.credentials"]),
    (
        "stages",
        [
            "runner.account",
            "runner.submit",
            "runner.poll",
            "runner.video_files",
            "runner.fetch",
            "runner.recheck",
            "runner.canary",
            "runner.submit_queue",
            "runner.doctor",
        ],
    ),
    (
        "engine and reports",
        [
            "runner.engine",
            "runner.status",
            "runner.progress",
            "runner.failed",
            "runner.sheet",
            "runner.report",
        ],
    ),
    ("run folder", ["runner.folder", "runner.rehearsal"]),
    ("flow", ["runner.flow"]),
    ("console", ["runner.console", "runner.status_console"]),
    (
        "command line",
        ["runner.doctor_cli", "runner.arguments", "runner.cli", "runner.__main__", "runner"],
    ),
]
# The simulator speaks the documented protocol on its own: it shares the job's limits,
# never the client's, the engine's or the ledger's code.
SIMULATOR_MAY_USE = ("jobs", "runner.simulator", "runner.rates", "runner.errors", "runner.clock")


def layer_of() -> dict[str, int]:
    return {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}


def project_modules() -> dict[str, Path]:
    found = {}
    for package in ("runner", "jobs"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
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


def test_every_module_has_a_layer():
    missing = sorted(set(project_modules()) - set(layer_of()))
    assert not missing, f"write these down in LAYERS (and the README): {missing}"


def test_no_module_imports_a_layer_above_its_own():
    ranks, modules = layer_of(), project_modules()
    upward = []
    for name, path in modules.items():
        for imported in imports_of(path, set(modules)):
            if ranks[imported] > ranks[name]:
                upward.append(
                    f"{name} ({LAYERS[ranks[name]][0]}) imports {imported} "
                    f"({LAYERS[ranks[imported]][0]})"
                )
    assert not upward, "\n".join(upward)


def test_the_simulator_is_the_clients_independent_counterpart():
    modules = project_modules()
    for name, path in modules.items():
        if name == "runner.simulator" or name.startswith("runner.simulator."):
            for imported in imports_of(path, set(modules)):
                assert imported.startswith(SIMULATOR_MAY_USE), f"{name} imports {imported}"


def test_records_import_nothing_of_the_project():
    modules = project_modules()
    assert imports_of(modules["runner.records"], set(modules)) == set()
