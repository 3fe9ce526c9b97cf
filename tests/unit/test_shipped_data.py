"""What dcctl reads at run time ships inside the package, in one copy: the repository's playbooks/
and systemd/ are symlinks to dcctl/data/, and the code finds them through importlib.resources,
never relative to the checkout."""
import os
from pathlib import Path

import pytest

from dcctl.install.units import UNITS, dcctl_command, shipped_templates
from dcctl.ops.playbook import BUILTIN_STEPS, load_playbook, shipped_playbooks

REPO = Path(__file__).parents[2]


@pytest.mark.parametrize("name", ["playbooks", "systemd"])
def test_the_top_level_directories_are_links_into_the_package(name):
    top = REPO / name
    assert top.is_symlink() and top.resolve() == (REPO / "dcctl" / "data" / name).resolve()


def test_the_package_holds_every_playbook_and_unit_template():
    assert {f"{op}.yaml" for op in BUILTIN_STEPS} <= {p.name for p in shipped_playbooks().iterdir()}
    assert set(UNITS) <= {p.name for p in shipped_templates().iterdir()}


@pytest.mark.parametrize("operation", sorted(BUILTIN_STEPS))
def test_the_default_playbook_is_the_packaged_one(operation):
    playbook = load_playbook(operation)
    assert Path(playbook.source) == Path(str(shipped_playbooks() / f"{operation}.yaml"))
    assert "/dcctl/data/playbooks/" in playbook.source


def test_exec_start_is_the_executable_console_script_beside_the_interpreter(tmp_path):
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.touch()
    script = tmp_path / "bin" / "dcctl"
    script.touch()
    assert dcctl_command(str(python)) == f"{python} -m dcctl"  # not executable: never ExecStart=
    script.chmod(0o755)
    assert dcctl_command(str(python)) == str(script)


def test_without_a_console_script_exec_start_runs_the_interpreter_with_m(tmp_path):
    python = tmp_path / "my env" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.touch()
    assert dcctl_command(str(python)) == f'"{python}" -m dcctl'  # quoted for systemd: a space in the path
    (python.parent / "dcctl").mkdir(mode=0o755)  # a directory is not a script
    assert os.access(python.parent / "dcctl", os.X_OK)
    assert dcctl_command(str(python)) == f'"{python}" -m dcctl'
