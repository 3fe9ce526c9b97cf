"""Expected failures: one clear line on stderr, a documented exit code, never a traceback."""
import json
import socket
import subprocess
import sys

import yaml

from tests.unit.test_config import GOOD


def run(*args, env_config=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DCCTL_CONFIG": env_config or "/nonexistent/dcctl.yaml"}
    return subprocess.run([sys.executable, "-m", "dcctl", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def assert_clean_failure(result, code, *fragments):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_missing_config_exits_3_and_says_how_to_fix_it():
    result = run("status")
    assert_clean_failure(result, 3, "/nonexistent/dcctl.yaml: config file not found", "hint:")


def test_invalid_config_lists_every_problem(tmp_path):
    bad = tmp_path / "dcctl.yaml"
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["services"]["massar"]["sites"]["backup"]["postgres"]["port"] = "abc"
    bad.write_text(yaml.safe_dump(data))
    result = run("-c", str(bad), "status")
    assert_clean_failure(result, 3, f'{bad}: services.massar.sites.backup.postgres.port: '
                                    f'expected an integer 1-65535, got "abc"')
    assert_clean_failure(run("config", "check", str(bad)), 3, "postgres.port")


def test_config_check_accepts_the_example():
    result = run("config", "check", "config/dcctl.example.yaml")
    assert result.returncode == 0 and "OK (1 service(s), 2 sites)" in result.stdout


def test_usage_errors_exit_2():
    assert run("no-such-command").returncode == 2
    assert run("status", "-o", "xml").returncode == 2


def test_a_missing_lab_is_one_line():
    result = run("lab", "status", "--dir", "/nonexistent/lab")
    assert_clean_failure(result, 1, "dcctl: error: no lab in /nonexistent/lab", "dcctl lab up")


def test_unknown_service_is_a_usage_error_listing_the_services(tmp_path):
    good = tmp_path / "dcctl.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert_clean_failure(run("-c", str(good), "status", "--service", "nope"), 2,
                         "no service named 'nope'", "configured: massar")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_status_of_unreachable_sites_names_host_port_and_cause(tmp_path, open_tmp):
    port = closed_port()
    (open_tmp / "known_hosts").write_text("")
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    sites = data["services"]["massar"]["sites"]
    sites["backup"]["transport"] = {"type": "ssh", "host": "127.0.0.1", "port": port, "user": "postgres",
                                    "known_hosts": str(open_tmp / "known_hosts"), "key_file": str(open_tmp / "id")}
    sites["rabat"]["postgres"]["port"] = port
    sites["backup"]["postgres"]["port"] = port
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(data))
    result = run("-c", str(config), "-o", "json", "status")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["services"][0]
    backup = next(s for s in report["sites"] if s["site"] == "backup")
    assert backup["reachable"] is False
    assert f"127.0.0.1:{port}" in backup["transport_error"] and "refused" in backup["transport_error"]
    for site in report["sites"]:
        assert site["postgres"]["up"] is False and site["role"] == "unknown"
        assert f"127.0.0.1:{port}" in site["postgres"]["error"] and "refused" in site["postgres"]["error"]
    assert report["primary"] is None
    table = run("-c", str(config), "status")
    assert table.returncode == 0 and "refused" in table.stdout
