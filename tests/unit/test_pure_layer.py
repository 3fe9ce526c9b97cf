"""The shape of the package, drawn from its own imports (read with ast, nothing imported):

- the pure layer (config, model, decisions, parsers, argv builders) does no I/O of its own: it
  imports neither subprocess, socket, psycopg, paramiko nor threading, not even through another
  dcctl module, and from dcctl it imports only other pure modules;
- imports point down LAYERS, and no module comes back to itself through its imports;
- production code never imports the lab or the CLI.

An import inside a function counts (it runs when the function does); one under
`if TYPE_CHECKING:` does not (it never runs). Doctests run here too."""
from __future__ import annotations

import ast
import doctest
import importlib
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "dcctl"
PURE = ["model.py", "generation_rules.py", "errors.py", "status_report.py", "config/schema.py", "config/load.py",
        "pg/lsn.py", "pg/tools.py", "pg/queries.py", "lab/layout.py", "lab/config_gen.py", "units.py",
        "checks/result.py", "checks/catalog.py", "checks/disk.py", "pg/controldata.py", "pg/timeline.py",
        "pg/standby_conf.py", "ops/playbook.py", "ops/preflight.py", "filesync/layout.py", "filesync/rsync.py",
        "filesync/decide.py", "filesync/state.py", "checks/filesync.py", "ops/resume_check.py", "pooler/decide.py",
        "checks/poolers.py", "config/recovery.py", "site/decide.py",
        "checks/site_split.py", "flock.py"]
FORBIDDEN = {"subprocess", "socket", "psycopg", "paramiko", "threading"}
LIBRARIES_FOR_PURE = {"yaml"}  # besides the standard library: parsing only, no I/O of its own

# Bottom first. A module imports from its own layer and the layers below, never from above.
# dcctl/lab/ is the test and demo harness: it may import anything, and only the CLI imports it.
LAYERS = [
    {"dcctl", "errors", "units", "model", "generation_rules", "config", "procs", "parallel", "flock"},
    {"transport", "pg", "install", "pooler"},
    {"topology", "status_report", "checks", "replication", "plan", "filesync", "report"},
    {"drill"},  # the drill's pure verdicts and its report page; its steps are in ops/steps/drill.py
    {"ops"},
    {"site"},  # site operations: each service's part is a whole operation of ops/
    {"agent"},
    {"cli", "__main__"},
]

# Known arrows that point up or close a circle, all in the operation code being reworked in
# issue 15 (dcctl/ops/, cli/ops_cmd.py, cli/drill_cmd.py). Their owner empties this list as each
# one goes; test_known_exceptions_still_exist says when an entry is no longer needed.
ISSUE_15_TO_UNTANGLE: set[tuple[str, str]] = set()  # emptied: every arrow points down now


def imported_modules(path: Path) -> set[str]:
    """Top-level names of everything `path` imports, wherever the import stands."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skip


def _resolve(name: str) -> str:
    """`dcctl.ops.generation.record` -> the module that defines it, `dcctl.ops.generation`."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


@cache
def dcctl_imports(module: str, *, type_checking: bool = False) -> frozenset[str]:
    """The dcctl modules `module` imports (and with type_checking=True also those it names only
    for the type checker)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = set() if type_checking else _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(_resolve(name) for name in found if name.split(".")[0] == "dcctl") - {module}


def _with_parents(module: str) -> set[str]:
    """Importing a.b.c runs a and a.b first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


@cache
def runs_with(module: str) -> frozenset[str]:
    """Every dcctl module that may run once `module` is imported and used (transitively)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in _with_parents(current):
            if name not in seen:
                seen.add(name)
                todo.extend(dcctl_imports(name))
    return frozenset(seen - {module})


def layer(module: str) -> int:
    """The index in LAYERS; a package not listed there counts as the top (test_every_package_has_a_layer)."""
    return next((i for i, members in enumerate(LAYERS) if package_of(module) in members), len(LAYERS))


def package_of(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def is_lab(module: str) -> bool:
    return package_of(module) == "lab"


def production(module: str) -> bool:
    return package_of(module) not in ("lab", "cli", "__main__")


def edges() -> set[tuple[str, str]]:
    return {(module, target) for module in MODULES for target in dcctl_imports(module)}


def cycles(graph: set[tuple[str, str]]) -> list[list[str]]:
    """Circles of imports: the strongly connected components with more than one module (Tarjan)."""
    successors: dict[str, list[str]] = {}
    for a, b in graph:
        successors.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in successors.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(successors):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("relative", PURE)
def test_pure_modules_do_no_io(relative):
    assert not imported_modules(PACKAGE / relative) & FORBIDDEN


@pytest.mark.parametrize("relative", PURE)
def test_pure_modules_import_only_pure_modules(relative):
    module = module_name(PACKAGE / relative)
    pure = {module_name(PACKAGE / name) for name in PURE}
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    impure = {name for name in runs_with(module) if name not in pure
              and not (name in packages and not dcctl_imports(name) - pure)}
    assert not impure, f"{relative} imports modules outside the pure layer: {sorted(impure)}"
    reached = {module, *runs_with(module)}
    libraries = set().union(*(imported_modules(MODULES[name]) for name in reached)) - {"dcctl", "__future__"}
    forbidden = libraries & FORBIDDEN
    assert not forbidden, f"{relative} reaches {sorted(forbidden)} through {sorted(reached)}"
    unexpected = libraries - set(sys.stdlib_module_names) - LIBRARIES_FOR_PURE
    assert not unexpected, f"{relative} reaches libraries outside the pure layer's: {sorted(unexpected)}"


def test_production_code_never_imports_the_lab_or_the_cli():
    wrong = sorted((module, target) for module in MODULES if production(module)
                   for target in dcctl_imports(module, type_checking=True)
                   if package_of(target) in ("lab", "cli"))
    assert not wrong, "production code imports the lab or the CLI:\n" + "\n".join(f"  {a} -> {b}" for a, b in wrong)


def test_imports_point_down():
    up = sorted((a, b) for a, b in edges() - ISSUE_15_TO_UNTANGLE
                if not is_lab(a) and not is_lab(b) and layer(b) > layer(a))
    assert not up, "imports that point up (see LAYERS):\n" + "\n".join(f"  {a} -> {b}" for a, b in up)


def test_no_import_cycles():
    circles = cycles(edges() - ISSUE_15_TO_UNTANGLE)
    assert not circles, "modules that import themselves back:\n" + "\n".join(f"  {c}" for c in circles)


def test_every_package_has_a_layer():
    tops = {package_of(module) for module in MODULES if not is_lab(module)}
    assert tops <= set().union(*LAYERS), f"add to LAYERS: {sorted(tops - set().union(*LAYERS))}"


def test_known_exceptions_still_exist():
    gone = sorted(ISSUE_15_TO_UNTANGLE - edges())
    assert not gone, f"fixed, now remove from ISSUE_15_TO_UNTANGLE: {gone}"


def test_the_rules_see_a_violation():
    """The graph is read right: a known upward import is found, a type-only one is not."""
    assert "dcctl.model" in dcctl_imports("dcctl.checks.catalog")
    assert "dcctl.filesync.state" not in dcctl_imports("dcctl.model")
    assert "dcctl.filesync.state" in dcctl_imports("dcctl.model", type_checking=True)
    assert "dcctl.transport.ssh" in runs_with("dcctl.transport.local")
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", ["dcctl.pg.lsn", "dcctl.pg.tools", "dcctl.status_report", "dcctl.units",
                                    "dcctl.checks.disk", "dcctl.checks.catalog", "dcctl.pg.controldata",
                                    "dcctl.pg.timeline", "dcctl.pg.standby_conf", "dcctl.replication.prereqs",
                                    "dcctl.replication.init", "dcctl.filesync.rsync", "dcctl.filesync.layout",
                                    "dcctl.filesync.decide", "dcctl.filesync.state", "dcctl.filesync.manifest",
                                    "dcctl.filesync.holding", "dcctl.filesync.watch", "dcctl.filesync.engine",
                                    "dcctl.config.recovery", "dcctl.report.site"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
