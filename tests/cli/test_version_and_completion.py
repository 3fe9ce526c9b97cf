"""`dcctl --version` reports what dcctl stands on, "not found" for what is missing; shell completion
(click's own protocol) offers the config's site and service names."""
import os
import subprocess
import sys

import yaml

from tests.unit.test_config import GOOD


def dcctl(*args, env):
    return subprocess.run([sys.executable, "-m", "dcctl", *args], capture_output=True, text=True, timeout=60,
                          env={"HOME": "/nonexistent", **env})


def test_version_lists_python_libraries_and_tools():
    result = dcctl("--version", env={"PATH": "/usr/bin:/bin", "DCCTL_CONFIG": "/nonexistent/dcctl.yaml"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    from dcctl import __version__

    assert lines[0] == f"dcctl {__version__}"
    labels = [line.split(":")[0] for line in lines[1:]]
    assert labels == ["Python", "psycopg", "paramiko", "rsync", "PostgreSQL client"]
    assert "libpq " in lines[2]


def test_version_says_not_found_and_exits_0_without_the_tools():
    result = dcctl("--version", env={"PATH": "/nonexistent", "DCCTL_CONFIG": "/nonexistent/dcctl.yaml"})
    assert result.returncode == 0 and result.stderr == ""
    assert "rsync: not found" in result.stdout and "PostgreSQL client: not found" in result.stdout


def test_version_reports_the_bin_dir_of_the_config(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    bin_dir = os.environ.get("DCCTL_PG_BIN", "/usr/lib/postgresql/15/bin")
    for site in data["services"]["massar"]["sites"].values():
        site["postgres"]["bin_dir"] = bin_dir
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(data))
    result = dcctl("--version", env={"PATH": "/nonexistent", "DCCTL_CONFIG": str(config)})
    assert f"PostgreSQL bin_dir {bin_dir}: pg_dump (PostgreSQL) 15." in result.stdout


def complete(words: str, config: str) -> list[str]:
    result = dcctl(env={"PATH": "/usr/bin:/bin", "DCCTL_CONFIG": config, "_DCCTL_COMPLETE": "bash_complete",
                        "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_of_sites_and_services(tmp_path):
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    assert complete("dcctl switchover --to ", str(config)) == ["backup", "rabat"]
    assert complete("dcctl rejoin --site r", str(config)) == ["rabat"]
    assert complete("dcctl install-units --site b", str(config)) == ["backup"]
    assert complete("dcctl status --service ", str(config)) == ["massar"]
    assert complete(f"dcctl -c {config} drill -s m", "/nonexistent/dcctl.yaml") == ["massar"]
    assert complete("dcctl switchover --to ", "/nonexistent/dcctl.yaml") == []


def test_the_bash_completion_script_is_click_s():
    result = dcctl(env={"PATH": "/usr/bin:/bin", "_DCCTL_COMPLETE": "bash_source"})
    assert result.returncode == 0 and "_DCCTL_COMPLETE=bash_complete" in result.stdout
