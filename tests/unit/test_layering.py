"""How the package is laid out: declared contracts (import-linter), no import cycle, and
the few rules an import graph cannot express."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

import jobset

PACKAGE = Path(jobset.__file__).parent
ROOT = PACKAGE.parent


def test_the_import_contracts_in_pyproject_hold():
    """Layers, "the producer never imports the worker code", "pure modules import no Celery
    or Redis", "job sets know executors by their interface": ``[tool.importlinter]``."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command, "import-linter is part of the test extra"
    done = subprocess.run(
        [command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _cycles(graph: grimp.ImportGraph, prefix: str) -> list[tuple[str, str]]:
    """Each direct import a -> b of ours from which a chain leads back to a."""
    ours = sorted(m for m in graph.modules if m.split(".")[0] == prefix)
    found = []
    for a in ours:
        for b in sorted(graph.find_modules_directly_imported_by(a)):
            ours_too = b != a and b.split(".")[0] == prefix
            if ours_too and graph.find_shortest_chain(importer=b, imported=a):
                found.append((a, b))
    return found


def test_no_module_of_the_package_imports_itself_back():
    """No cycle, at run time or under TYPE_CHECKING (grimp reads both)."""
    graph = grimp.build_graph("jobset", "workers", cache_dir=None)
    assert _cycles(graph, "jobset") == []
    assert _cycles(graph, "workers") == []


def test_a_cycle_is_found_where_there_is_one():
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert _cycles(graph, "p") == []
    graph.add_import(importer="p.c", imported="p.a")
    assert len(_cycles(graph, "p")) == 3


def test_the_top_of_the_package_holds_at_most_15_modules():
    """The pure core and the API; executors, views and tools are packages of their own."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 15, modules
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} >= {
        "executors",
        "observe",
        "primitives",
        "local",
        "scaling",
        "cli",
    }


def test_no_lua_is_written_inline():
    """Lua lives in ``.lua`` files (jobset/executors/celery/lua), registered once per client."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "workers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and ("redis.call(" in text or "redis.pcall(" in text):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_only_the_local_cluster_package_starts_processes_and_nothing_else_imports_it():
    """jobset.local starts servers and workers; the library proper never imports it (the
    scale loop's backends run their own commands, sbatch and compose)."""
    graph = grimp.build_graph("jobset", cache_dir=None)
    importers = {
        m
        for m in graph.find_downstream_modules("jobset.local", as_package=True)
        if not m.startswith("jobset.local")
    }
    assert importers == set(), importers


EXECUTOR_KINDS = {"CeleryExecutor", "CeleryRun", "FuturesExecutor", "FuturesRun", "Executor"}


def test_only_as_executor_tells_executors_apart():
    """An ``isinstance`` on an executor type is written once, in ``jobset.executors.pools``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                named = {getattr(n, "id", getattr(n, "attr", None)) for n in ast.walk(node.args[1])}
                if named & EXECUTOR_KINDS:
                    found.append(path.relative_to(PACKAGE).as_posix())
    assert set(found) == {"executors/pools.py"}, found


def test_every_redis_key_of_a_set_is_built_in_the_protocol_module():
    """Keys (and SCAN patterns) come from ``jobset.protocol``, where each part is checked."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "workers").rglob("*.py")):
        if path == PACKAGE / "protocol.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = ast.unparse(node)
                if "KEY_PREFIX}" in text or "jobset:" in text:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
