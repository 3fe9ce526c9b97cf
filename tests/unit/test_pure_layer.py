"""The pure layer (config, model, decisions, parsers, argv builders) does no I/O of its own:
it imports neither subprocess, socket, psycopg nor paramiko. Doctests run here too."""
import ast
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "dcctl"
PURE = ["model.py", "errors.py", "status_report.py", "config/schema.py", "config/load.py", "pg/lsn.py",
        "pg/tools.py", "pg/queries.py", "lab/layout.py", "lab/config_gen.py", "units.py", "checks/result.py",
        "checks/catalog.py", "checks/disk.py", "pg/controldata.py", "pg/timeline.py", "pg/standby_conf.py",
        "ops/playbook.py", "ops/preflight.py", "ops/report.py", "ops/generation.py",
        "filesync/layout.py", "filesync/rsync.py", "filesync/decide.py", "filesync/state.py", "checks/filesync.py",
        "ops/resume_check.py"]
FORBIDDEN = {"subprocess", "socket", "psycopg", "paramiko", "threading"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("relative", PURE)
def test_pure_modules_do_no_io(relative):
    assert not imported_modules(PACKAGE / relative) & FORBIDDEN


@pytest.mark.parametrize("module", ["dcctl.pg.lsn", "dcctl.pg.tools", "dcctl.status_report", "dcctl.units",
                                    "dcctl.checks.disk", "dcctl.checks.catalog", "dcctl.pg.controldata",
                                    "dcctl.pg.timeline", "dcctl.pg.standby_conf", "dcctl.replication.prereqs",
                                    "dcctl.replication.init", "dcctl.filesync.rsync", "dcctl.filesync.layout",
                                    "dcctl.filesync.decide", "dcctl.filesync.state", "dcctl.filesync.manifest",
                                    "dcctl.filesync.holding", "dcctl.filesync.watch", "dcctl.filesync.engine"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
