"""The type checker is part of the suite: mypy, configured in pyproject.toml ([tool.mypy]: strict on
dcctl/ except where noted), must find nothing, and the pure layer is checked strictly."""
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.unit.test_pure_layer import PACKAGE, PURE, module_name

ROOT = Path(__file__).parents[2]
# Pure modules whose owners are reworking them in issue 15; they join the strict list when done.
PURE_NOT_YET_STRICT = {"dcctl.config.schema", "dcctl.config.load", "dcctl.filesync.state", "dcctl.ops.preflight",
                       "dcctl.ops.resume_check"}


def test_mypy_finds_no_errors():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mypy (exit {result.returncode}):\n{result.stdout}{result.stderr}"


def test_the_pure_layer_is_checked_strictly():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = set().union(*(set(o["module"]) for o in config["overrides"] if o.get("disallow_untyped_defs") is True))
    pure = {module_name(PACKAGE / relative) for relative in PURE}
    assert not pure - strict - PURE_NOT_YET_STRICT, "add to the strict list in pyproject.toml"
    assert not PURE_NOT_YET_STRICT & strict, "strict now: remove from PURE_NOT_YET_STRICT"
