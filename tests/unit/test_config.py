"""Config validation: every mistake names the file, the key path and what was expected."""
from pathlib import Path

import pytest
import yaml

from dcctl.config import load_config, parse_config
from dcctl.config.schema import LocalTransportConfig, SshTransportConfig
from dcctl.errors import ConfigError, UsageError

EXAMPLE = Path(__file__).parents[2] / "config" / "dcctl.example.yaml"

GOOD = {
    "services": {
        "massar": {
            "sites": {
                "rabat": {"transport": {"type": "local"}, "postgres": {"data_dir": "/pg/rabat"}},
                "backup": {
                    "transport": {"type": "ssh", "host": "db.backup", "user": "postgres",
                                  "known_hosts": "/etc/dcctl/known_hosts", "key_file": "/etc/dcctl/id"},
                    "postgres": {"data_dir": "/pg/backup", "port": 5433},
                },
            }
        }
    }
}


def with_change(path: str, value) -> str:
    """GOOD with one key (dotted path) set to value; value DELETE removes it."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return yaml.safe_dump(data)


DELETE = object()
BACKUP = "services.massar.sites.backup"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "dcctl.yaml")
    return caught.value.problems


def test_the_example_config_is_valid_and_typed():
    config = load_config(EXAMPLE)
    service = config.services["massar"]
    assert set(service.sites) == {"rabat", "backup"}
    assert isinstance(service.sites["rabat"].transport, SshTransportConfig)
    assert service.sites["rabat"].postgres.control.unit == "postgresql@15-main"
    assert config.source == str(EXAMPLE)


def test_defaults_fill_what_is_left_out():
    config = parse_config(yaml.safe_dump(GOOD), "dcctl.yaml")
    rabat = config.services["massar"].sites["rabat"]
    assert isinstance(rabat.transport, LocalTransportConfig)
    assert rabat.postgres.port == 5432 and rabat.postgres.bin_dir == "/usr/lib/postgresql/15/bin"
    assert config.site_timeout == 5.0 and config.services["massar"].thresholds.lag_bytes_warn == 16 * 1024 * 1024
    assert config.services["massar"].sites["backup"].transport.port == 22


@pytest.mark.parametrize("path, value, expected", [
    (f"{BACKUP}.postgres.port", "abc",
     f'dcctl.yaml: {BACKUP}.postgres.port: expected an integer 1-65535, got "abc"'),
    (f"{BACKUP}.postgres.port", 70000, f"dcctl.yaml: {BACKUP}.postgres.port: expected an integer 1-65535, got 70000"),
    (f"{BACKUP}.postgres.port", True, f"dcctl.yaml: {BACKUP}.postgres.port: expected an integer 1-65535, got true"),
    (f"{BACKUP}.postgres.port", 5.5, f"dcctl.yaml: {BACKUP}.postgres.port: expected an integer 1-65535, got 5.5"),
    (f"{BACKUP}.transport.port", 0, f"dcctl.yaml: {BACKUP}.transport.port: expected an integer 1-65535, got 0"),
    (f"{BACKUP}.postgres.data_dir", DELETE,
     f"dcctl.yaml: {BACKUP}.postgres.data_dir: required key is missing (expected a path)"),
    (f"{BACKUP}.postgres.data_dir", "", f'dcctl.yaml: {BACKUP}.postgres.data_dir: expected a path, got ""'),
    (f"{BACKUP}.postgres.data_dir", ["/a"], f"dcctl.yaml: {BACKUP}.postgres.data_dir: expected a path, got a list"),
    (f"{BACKUP}.postgres.connect_timeout", 0.5,
     f"dcctl.yaml: {BACKUP}.postgres.connect_timeout: expected a number 1-300, got 0.5"),
    (f"{BACKUP}.transport.type", "telnet", f'dcctl.yaml: {BACKUP}.transport.type: expected one of local, ssh, got "telnet"'),
    (f"{BACKUP}.transport", "ssh", f'dcctl.yaml: {BACKUP}.transport: expected a mapping with type: local or ssh, got "ssh"'),
    (f"{BACKUP}.transport.known_hosts", DELETE,
     f"dcctl.yaml: {BACKUP}.transport.known_hosts: required key is missing (expected a path)"),
    (f"{BACKUP}.transport.key_file", DELETE,
     f"dcctl.yaml: {BACKUP}.transport.key_file: expected a path (or use_agent: true), got nothing"),
    (f"{BACKUP}.transport.use_agent", "yes", f'dcctl.yaml: {BACKUP}.transport.use_agent: expected true or false, got "yes"'),
    (f"{BACKUP}.postgres.control", {"method": "systemd"},
     f"dcctl.yaml: {BACKUP}.postgres.control.unit: expected a systemd unit name when method is systemd, got nothing"),
    (f"{BACKUP}.postgres.control", {"method": "service"},
     f'dcctl.yaml: {BACKUP}.postgres.control.method: expected one of pg_ctl, systemd, got "service"'),
    (f"{BACKUP}.agent", {"listen": "9640"}, f'dcctl.yaml: {BACKUP}.agent.listen: expected host:port, got "9640"'),
    (f"{BACKUP}.file_stores", ["/srv/docs"], f"dcctl.yaml: {BACKUP}.file_stores: expected a mapping of names, got a list"),
    (f"{BACKUP}.file_stores", {"documents": 3}, f"dcctl.yaml: {BACKUP}.file_stores.documents: expected a path, got 3"),
    ("services.massar.thresholds", {"lag_bytes_warn": -1},
     "dcctl.yaml: services.massar.thresholds.lag_bytes_warn: expected an integer >= 0, got -1"),
    ("site_timeout", "fast", 'dcctl.yaml: site_timeout: expected a number 0.5-600, got "fast"'),
    ("version", 2, "dcctl.yaml: version: expected an integer 1-1, got 2"),
    (f"{BACKUP}.postgres", None, f"dcctl.yaml: {BACKUP}.postgres: expected a mapping, got nothing (null)"),
])
def test_each_mistake_names_key_path_and_expectation(path, value, expected):
    assert expected in problems(with_change(path, value))


@pytest.mark.parametrize("typo, suggestion", [
    ("prot", "port"), ("data_dri", "data_dir"), ("passfle", "passfile"), ("replication_usr", "replication_user"),
])
def test_unknown_keys_suggest_the_close_one(typo, suggestion):
    text = with_change(f"{BACKUP}.postgres.{typo}", 1)
    assert f"dcctl.yaml: {BACKUP}.postgres.{typo}: unknown key; did you mean '{suggestion}'?" in problems(text)


def test_unknown_key_without_a_close_match_lists_the_known_ones():
    [problem] = problems(with_change("colour", "blue"))
    assert problem.startswith("dcctl.yaml: colour: unknown key; known keys: services, version, state_dir")


def test_all_mistakes_are_reported_at_once():
    data = yaml.safe_load(with_change(f"{BACKUP}.postgres.port", "abc"))
    data["services"]["massar"]["sites"]["rabat"]["postgres"]["bin_dri"] = "/x"
    found = problems(yaml.safe_dump(data))
    assert len(found) == 2


def test_a_service_needs_exactly_two_sites():
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    del data["services"]["massar"]["sites"]["backup"]
    assert problems(yaml.safe_dump(data)) == [
        "dcctl.yaml: services.massar.sites: expected exactly two sites, got 1 (rabat)"]


def test_invalid_yaml_names_line_and_column():
    [problem] = problems("services:\n  massar: [unclosed\n")
    assert problem.startswith("dcctl.yaml:3:1: invalid YAML") or problem.startswith("dcctl.yaml:")
    assert "invalid YAML" in problem


def test_empty_and_non_mapping_files():
    assert problems("") == ["dcctl.yaml: the file is empty; expected a mapping with a 'services' key"]
    assert problems("- a\n- b\n") == ["dcctl.yaml: (top level): expected a mapping, got a list"]
    assert problems("services: {}\n") == ["dcctl.yaml: services: expected at least one service, got none"]


def test_missing_file_says_where_to_put_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: config file not found"]
    assert "DCCTL_CONFIG" in caught.value.hint


def test_choosing_a_service():
    config = parse_config(yaml.safe_dump(GOOD), "dcctl.yaml")
    assert config.service(None)[0] == "massar"
    with pytest.raises(UsageError, match="no service named 'other' in dcctl.yaml; configured: massar"):
        config.service("other")
