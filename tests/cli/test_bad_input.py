"""Bad input of every kind: one `dcctl: error:` line and the documented exit code, never a
traceback (reliability items 8 and 9)."""
import json
from pathlib import Path

import yaml

from tests.cli.test_errors import assert_clean_failure, run
from tests.unit.test_config import GOOD

OP = "20260101T000000Z-switchover-abcdef"
HEADER = {"ts": 1.7e9, "event": "operation", "op": OP, "kind": "switchover", "service": "massar",
          "old_primary": "rabat", "new_primary": "backup", "args": {}}


def local_config(tmp_path: Path, **changes) -> Path:
    """GOOD with both sites local and every state directory under tmp_path."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["state_dir"] = str(tmp_path / "state")
    for name, site in data["services"]["massar"]["sites"].items():
        site["transport"] = {"type": "local"}
        site["state_dir"] = str(tmp_path / f"state-{name}")
    data.update(changes)
    path = tmp_path / "dcctl.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_change(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    edit(data)
    path = tmp_path / "dcctl.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def write_journal(tmp_path: Path, data: bytes, op: str = OP) -> None:
    directory = tmp_path / "state" / "operations" / op
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "journal.jsonl").write_bytes(data)


def line(entry) -> bytes:
    return json.dumps(entry, ensure_ascii=False).encode() + b"\n"


def one_error_line(result) -> str:
    errors = [text for text in result.stderr.splitlines() if text.startswith("dcctl: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# ---- item 8: config, playbook, arguments ---------------------------------------------------------

def test_node_stop_of_an_unknown_site_is_a_usage_error_listing_the_sites(tmp_path):
    config = local_config(tmp_path)
    for command in (["node", "stop", "--site", "typo", "--dry-run"], ["node", "stop", "--site", "typo"],
                    ["node", "start", "--site", "typo"]):
        result = run("-c", str(config), "--yes", *command)
        assert_clean_failure(result, 2, "no site named 'typo' in service massar; known sites: backup, rabat")


def test_a_config_that_is_not_utf8_is_a_config_error_naming_the_line(tmp_path):
    path = tmp_path / "dcctl.yaml"
    path.write_bytes(yaml.safe_dump(GOOD).encode() + b"# caf\xe9\n")
    lines = yaml.safe_dump(GOOD).count("\n") + 1
    assert_clean_failure(run("-c", str(path), "status"), 3, f"{path}:{lines}:6: not UTF-8 text (byte 0xe9)")
    assert_clean_failure(run("config", "check", str(path)), 3, "not UTF-8")


def test_a_playbook_that_is_not_utf8_is_a_config_error(tmp_path):
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shipped = Path(__file__).parents[2] / "dcctl" / "data" / "playbooks"
    for source in shipped.glob("*.yaml"):
        (playbooks / source.name).write_bytes(source.read_bytes())
    (playbooks / "switchover.yaml").write_bytes(b"operation: switchover # \xff\nsteps: [preflight]\n")
    config = local_config(tmp_path, playbooks_dir=str(playbooks))
    result = run("-c", str(config), "switchover", "--to", "backup", "--dry-run")
    assert_clean_failure(result, 3, f"{playbooks / 'switchover.yaml'}:1:25: not UTF-8 text (byte 0xff)")


def test_an_agent_port_out_of_range_fails_config_check_not_agent_run(tmp_path):
    def edit(data):
        data["services"]["massar"]["sites"]["backup"]["agent"] = {"listen": "127.0.0.1:99999"}

    config = with_change(tmp_path, edit)
    expected = 'services.massar.sites.backup.agent.listen: expected host:port with a port 1-65535, got "127.0.0.1:99999"'
    assert_clean_failure(run("config", "check", str(config)), 3, expected)
    assert_clean_failure(run("-c", str(config), "agent", "run", "--site", "backup"), 3, expected)


def test_a_transport_type_that_is_a_list_is_a_config_error(tmp_path):
    def edit(data):
        data["services"]["massar"]["sites"]["backup"]["transport"] = {"type": ["ssh"]}

    result = run("config", "check", str(with_change(tmp_path, edit)))
    assert_clean_failure(result, 3, "services.massar.sites.backup.transport.type: expected one of local, ssh, got a list")


def test_deep_nesting_is_a_config_error(tmp_path):
    path = tmp_path / "dcctl.yaml"
    path.write_text("services: " + "[" * 3000 + "]" * 3000 + "\n")
    assert_clean_failure(run("config", "check", str(path)), 3, "invalid YAML: the document is nested too deeply")


def test_verbose_flags_are_counted():
    from dcctl.cli.main import verbosity

    assert verbosity(["-v", "status"]) == 1
    assert verbosity(["-vv", "status"]) == 2 and verbosity(["--verbose", "-v", "x"]) == 2
    assert verbosity(["-c", "x.yaml", "status"]) == 0 and verbosity(["--", "-vv"]) == 0


# ---- items 8 and 9: journals ------------------------------------------------------------------------

BAD_JOURNALS = {
    "a number": b"42\n",
    "a list": b"[1, 2]\n" + line({"ts": 1.7e9 + 1, "event": "finish", "outcome": "success"}),
    "no kind": line({k: v for k, v in HEADER.items() if k != "kind"}),
    "bad UTF-8": b'{"ts": 1700000000.0, "event": "operation", "op": "\xff\xfe"}\n',
}


def test_a_damaged_journal_is_one_line_for_resume_and_a_warning_in_history(tmp_path):
    config = local_config(tmp_path)
    for index, (what, data) in enumerate(BAD_JOURNALS.items()):
        op = f"20260101T00000{index + 1}Z-switchover-abcdef"
        write_journal(tmp_path, data, op)
        result = run("-c", str(config), "resume", op)
        assert result.returncode == 5, (what, result.stderr)
        assert "Traceback" not in result.stderr
        assert op in one_error_line(result), what
    write_journal(tmp_path, line(HEADER) + line({"ts": 1.7e9 + 1, "event": "finish", "outcome": "success"}))
    history = run("-c", str(config), "-o", "json", "history")
    assert history.returncode == 0 and "Traceback" not in history.stderr
    assert [row["operation"] for row in json.loads(history.stdout)] == [OP]
    warnings = [text for text in history.stderr.splitlines() if text.startswith("dcctl: warning:")]
    assert len(warnings) == len(BAD_JOURNALS), history.stderr


def test_an_operation_id_is_a_name_not_a_path(tmp_path):
    config = local_config(tmp_path)
    assert_clean_failure(run("-c", str(config), "resume", "../../etc"), 2, "is not an operation id")


def test_a_line_torn_inside_a_utf8_character_is_ignored_and_reported(tmp_path):
    config = local_config(tmp_path)
    torn = line({"ts": 1.7e9 + 2, "event": "step_start", "step": "préflight"})
    cut = torn.index("é".encode()) + 1  # between the two bytes of é
    write_journal(tmp_path, line(HEADER) + line({"ts": 1.7e9 + 1, "event": "finish", "outcome": "success"})
                  + torn[:cut])

    history = run("-c", str(config), "-o", "json", "history")
    assert history.returncode == 0, history.stderr
    assert [row["operation"] for row in json.loads(history.stdout)] == [OP]
    assert f"operation {OP}: ignored 1 torn journal line(s) (line 3" in history.stderr

    resume = run("-c", str(config), "resume", OP)
    assert resume.returncode == 0 and "Traceback" not in resume.stderr, resume.stderr
    assert f"nothing to resume: {OP} ended with outcome success" in resume.stdout
    assert "ignored 1 torn journal line(s)" in resume.stderr


def test_an_entry_appended_after_a_torn_line_stays_readable(tmp_path):
    from dcctl.ops.journal import Journal

    write_journal(tmp_path, line(HEADER) + '{"ts": 1700000001.0, "event": "step_start", "step": "pr'.encode() + b"\xc3")
    journal = Journal.open(tmp_path / "state", OP)
    journal.append("resume", pid=1)
    entries = journal.entries()
    assert [e["event"] for e in entries] == ["operation", "resume"] and journal.torn_lines == [2]


# ---- item 8: a malformed known_hosts line ------------------------------------------------------------

def test_a_malformed_known_hosts_line_is_one_line_naming_the_file(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("# the site's keys\n\n[db]:22 ssh-ed25519 AAAAB\n")
    data = yaml.safe_load(local_config(tmp_path).read_text())
    data["services"]["massar"]["sites"]["backup"]["transport"] = {
        "type": "ssh", "host": "127.0.0.1", "port": 1, "user": "postgres", "known_hosts": str(known_hosts),
        "key_file": str(tmp_path / "id")}
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(data))

    expected = f"site backup: known_hosts file {known_hosts} has a malformed line (line 3): [db]:22 ssh-ed25519"
    switchover = run("-c", str(config), "--yes", "switchover", "--to", "backup")
    assert_clean_failure(switchover, 5, f"site backup is unreachable: {expected}")
    assert "switchover refused" in one_error_line(switchover)

    status = run("-c", str(config), "-o", "json", "status")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    backup = next(s for s in json.loads(status.stdout)["services"][0]["sites"] if s["site"] == "backup")
    assert expected in backup["transport_error"] and "InvalidHostKey" not in backup["transport_error"]
