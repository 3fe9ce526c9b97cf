"""Shell completion of site and service names from the config; any problem completes to nothing."""
import yaml

from dcctl.cli.complete import service_names, site_names
from tests.unit.test_config import GOOD


def write_config(tmp_path, data) -> str:
    path = tmp_path / "dcctl.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def two_services():
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    other = yaml.safe_load(yaml.safe_dump(GOOD["services"]["massar"]))
    other["sites"] = {"casa": other["sites"]["rabat"], "dr": other["sites"]["backup"]}
    data["services"]["etat_civil"] = other
    return data


def test_services_complete_by_prefix(tmp_path):
    config = write_config(tmp_path, two_services())
    assert service_names(config, "") == ["etat_civil", "massar"]
    assert service_names(config, "m") == ["massar"]
    assert service_names(config, "x") == []


def test_sites_of_every_service_or_of_the_one_named(tmp_path):
    config = write_config(tmp_path, two_services())
    assert site_names(config, None, "") == ["backup", "casa", "dr", "rabat"]
    assert site_names(config, "massar", "") == ["backup", "rabat"]
    assert site_names(config, "etat_civil", "c") == ["casa"]
    assert site_names(config, "no-such-service", "r") == ["rabat"]


def test_a_missing_or_broken_config_completes_to_nothing(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("services: [unclosed\n")
    invalid = write_config(tmp_path, {"services": {"massar": {"sites": "rabat"}}})
    for config in (str(tmp_path / "missing.yaml"), str(broken), invalid):
        assert service_names(config, "") == []
        assert site_names(config, None, "") == []
    assert capsys.readouterr() == ("", "")


def test_the_default_config_path_is_used_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("DCCTL_CONFIG", write_config(tmp_path, GOOD))
    assert service_names(None, "") == ["massar"]
    assert site_names(None, None, "b") == ["backup"]
