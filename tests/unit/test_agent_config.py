"""The agent's settings in dcctl.yaml, and which services one agent serves."""
import bcrypt
import pytest
import yaml

from dcctl.agent.setup import resolve
from dcctl.config import load_config, parse_config
from dcctl.errors import ConfigError, UsageError
from tests.unit.test_config import BACKUP, EXAMPLE, GOOD, problems, with_change

AGENT = f"{BACKUP}.agent"
HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def test_defaults():
    agent = parse_config(yaml.safe_dump(GOOD)).services["massar"].sites["backup"].agent
    assert agent.listen == "127.0.0.1:9640" and agent.interval == 15.0
    assert agent.tls_cert_file is None and agent.basic_auth_username is None


def test_the_example_sets_every_agent_key():
    agent = load_config(EXAMPLE).services["massar"].sites["rabat"].agent
    assert agent.interval == 15 and agent.tls_cert_file and agent.tls_key_file
    assert agent.basic_auth_username == "prometheus" and agent.basic_auth_password_hash.startswith("$2b$12$")


@pytest.mark.parametrize("agent, expected", [
    ({"tls_cert_file": "/etc/dcctl/agent.crt"},
     f"dcctl.yaml: {AGENT}.tls_key_file: expected a value when tls_cert_file is set, got nothing"),
    ({"tls_key_file": "/etc/dcctl/agent.key"},
     f"dcctl.yaml: {AGENT}.tls_cert_file: expected a value when tls_key_file is set, got nothing"),
    ({"basic_auth_username": "prometheus"},
     f"dcctl.yaml: {AGENT}.basic_auth_password_hash: expected a value when basic_auth_username is set, got nothing"),
    ({"basic_auth_password_hash": HASH},
     f"dcctl.yaml: {AGENT}.basic_auth_username: expected a value when basic_auth_password_hash is set, got nothing"),
    ({"basic_auth_username": "prometheus", "basic_auth_password_hash": "s3cret"},
     f"dcctl.yaml: {AGENT}.basic_auth_password_hash: expected a bcrypt hash ($2b$12$ followed by 53 characters; "
     f"make one with `dcctl agent hash-password`), got a string of 6 characters"),
    ({"interval": 0.5}, f"dcctl.yaml: {AGENT}.interval: expected a number 1-3600, got 0.5"),
    ({"intervall": 5}, f"dcctl.yaml: {AGENT}.intervall: unknown key; did you mean 'interval'?"),
])
def test_agent_mistakes_name_the_key(agent, expected):
    assert problems(with_change(AGENT, {"listen": "127.0.0.1:9641", **agent})) == [expected]


def test_a_plaintext_password_is_never_echoed():
    found = problems(with_change(AGENT, {"basic_auth_username": "u", "basic_auth_password_hash": "hunter2hunter2"}))
    assert "hunter2" not in found[0]


def test_tls_and_auth_together_are_accepted():
    agent = {"tls_cert_file": "/c.pem", "tls_key_file": "/k.pem", "basic_auth_username": "prometheus",
             "basic_auth_password_hash": HASH}
    config = parse_config(with_change(AGENT, agent), "dcctl.yaml")
    assert config.services["massar"].sites["backup"].agent.basic_auth_password_hash == HASH


def two_services(second_agent: dict) -> str:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    etat = yaml.safe_load(yaml.safe_dump(data["services"]["massar"]))
    etat["sites"]["backup"]["agent"] = second_agent
    data["services"]["etat"] = etat
    return yaml.safe_dump(data, sort_keys=False)


def test_two_services_on_one_agent_address_must_agree():
    text = two_services({"listen": "127.0.0.1:9640", "interval": 5})
    assert problems(text) == ["dcctl.yaml: services.etat.sites.backup.agent: expected the same agent settings as "
                              "services.massar.sites.backup.agent (both listen on 127.0.0.1:9640), got different ones"]


def test_one_agent_serves_every_service_of_its_site():
    config = parse_config(two_services({"listen": "127.0.0.1:9640"}), "dcctl.yaml")
    setup = resolve(config, "backup")
    assert setup.services == ("massar", "etat") and setup.key_path == "services.massar.sites.backup.agent"
    assert resolve(config, "backup", "etat").services == ("etat",)


def test_services_with_different_agents_for_a_site_need_service():
    config = parse_config(two_services({"listen": "127.0.0.1:9641"}), "dcctl.yaml")
    with pytest.raises(ConfigError) as caught:
        resolve(config, "backup")
    assert "configure different agents for site backup (127.0.0.1:9640 and 127.0.0.1:9641)" in caught.value.message
    assert "--service" in caught.value.hint
    assert resolve(config, "backup", "etat").agent.listen == "127.0.0.1:9641"


def test_an_unknown_site_lists_the_known_ones():
    config = parse_config(yaml.safe_dump(GOOD), "dcctl.yaml")
    with pytest.raises(ConfigError, match="no site named 'casa' in any service; configured sites: backup, rabat"):
        resolve(config, "casa")
    with pytest.raises(UsageError, match="no service named 'nope'"):
        resolve(config, "rabat", "nope")
