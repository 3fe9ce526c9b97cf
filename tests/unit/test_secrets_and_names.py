"""Reliability items 10 and 12, pure parts: hook secrets masked by a documented rule, reports
written 0600, quarantined names shown escaped and reversibly."""
import codecs
import doctest
import importlib
import json
import stat

import pytest
import yaml

from dcctl.config import parse_config
from dcctl.errors import ConfigError
from dcctl.ops.filesync_actions import shown_name
from dcctl.ops.journal import Journal
from dcctl.ops.redact import mask_secrets
from dcctl.ops.report import write_report
from tests.unit.test_config import GOOD


@pytest.mark.parametrize("module", ["dcctl.ops.redact", "dcctl.ops.filesync_actions", "dcctl.config.load"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("command, shown", [
    ("systemctl stop massar-app", "systemctl stop massar-app"),
    ("notify --token=abc123 --to ops", "notify --token=*** --to ops"),
    ("notify --token abc123", "notify --token ***"),
    ("SLACK_TOKEN=xoxb-1 notify", "SLACK_TOKEN=*** notify"),
    ("PGPASSWORD='a b' psql -c 'select 1'", "PGPASSWORD=*** psql -c 'select 1'"),
    ("curl -H 'X-Auth-Token: t0k' https://vip", "curl -H 'X-Auth-Token: ***' https://vip"),
    ("curl -H 'Authorization: Bearer eyJ.x' https://vip", "curl -H 'Authorization: Bearer ***' https://vip"),
    ("move-vip https://admin:pa55@lb.example/api", "move-vip https://admin:***@lb.example/api"),
    ("api --api-key=K --client-secret S", "api --api-key=*** --client-secret ***"),
])
def test_hook_secrets_are_masked_by_the_default_rule(command, shown):
    assert mask_secrets(command) == shown


def test_a_hook_may_name_more_secrets_with_mask_patterns():
    assert mask_secrets("dns-switch --zone massar ABCDEF-123", [r"[A-Z]{6}-\d+"]) == "dns-switch --zone massar ***"


def config_with_hook(**hook) -> str:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["services"]["massar"]["hooks"] = {"before_switch": [{"site": "old_primary", "run": "true", **hook}]}
    return yaml.safe_dump(data)


def test_the_mask_key_takes_regular_expressions():
    config = parse_config(config_with_hook(mask=[r"tok-\w+"]), "dcctl.yaml")
    assert config.services["massar"].hooks["before_switch"][0].mask == [r"tok-\w+"]
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with_hook(mask=["(unclosed"]), "dcctl.yaml")
    assert caught.value.problems[0].startswith('dcctl.yaml: services.massar.hooks.before_switch[0].mask[0]: '
                                               'expected a regular expression, got "(unclosed"')


def test_reports_are_readable_by_their_owner_only_like_the_journal(tmp_path):
    journal = Journal.create(tmp_path, "20260101T000000Z-switchover-abcdef",
                             {"kind": "switchover", "service": "massar", "old_primary": "rabat",
                              "new_primary": "backup", "args": {}})
    journal.append("finish", outcome="success")
    (journal.directory / "report.md").write_text("an older report")
    (journal.directory / "report.md").chmod(0o644)
    json_path, md_path = write_report(journal)
    for path in (journal.path, json_path, md_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert json.loads(json_path.read_text())["outcome"] == "success"

    drill = Journal.create(tmp_path, "20260101T000000Z-drill-abcdef",
                           {"kind": "drill", "service": "massar", "old_primary": "rabat", "new_primary": "backup",
                            "args": {}})
    drill.append("finish", outcome="success")
    _, html_path = write_report(drill)
    assert html_path.name == "report.html" and stat.S_IMODE(html_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("raw", [b"q/plain.txt", b"q/r\xe9sum\xe9.txt", "q/résumé.txt".encode(), b"a\\xff\\b",
                                 b"new\nline\x7f", b"\xff\xfe\\\\x41"])
def test_every_quarantined_name_is_shown_as_text_that_gives_back_its_bytes(raw):
    shown = shown_name(raw.decode("utf-8", "surrogateescape"))
    shown.encode("utf-8")  # always writable in a journal and a report
    assert codecs.escape_decode(shown.encode("utf-8"))[0] == raw
    if raw.isascii() and raw.isalnum():
        assert shown == raw.decode()
