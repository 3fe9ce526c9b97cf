"""Property tests: whatever a config file, a playbook or a journal holds, reading it either works
or raises a DcctlError (one `dcctl: error:` line and its exit code), never another exception."""
import json
import random
import string
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcctl.cli.main import cli
from dcctl.config import load_config, parse_config
from dcctl.drill.html import render_html
from dcctl.errors import DcctlError
from dcctl.ops.journal import Journal, JournalError, scan_operations
from dcctl.ops.playbook import load_playbook, parse_playbook
from dcctl.ops.report import build_report, markdown
from tests.unit.test_config import GOOD

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts | st.sampled_from(
    ["local", "ssh", "pg_ctl", "systemd", "abort", "127.0.0.1:99999", "127.0.0.1:0", ":9640", "preflight",
     "switchover", "old_primary", "[", "(", "*"])
keys = texts | st.integers() | st.sampled_from(["type", "services", "sites", "hooks", "steps", "operation", "hook",
                                                "listen", "agent", "transport", "postgres", "mask", "run", "site"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=25)


def nested(depth: int, opening: str, closing: str, leaf: str = "1") -> str:
    return opening * depth + leaf + closing * depth


deep_texts = st.builds(nested, st.integers(1, 3000), st.sampled_from(["[", "{a: ", "- "]),
                       st.sampled_from(["]", "}", ""]))


def expect_success_or_dcctl_error(call) -> None:
    try:
        call()
    except DcctlError:
        pass


@st.composite
def mutated_good(draw) -> dict:
    """GOOD with one value somewhere inside it replaced (or a key added), so that the loader goes deep."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    node = data
    while isinstance(node, dict) and node and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(node)))
        if not isinstance(node[name], dict):
            break
        node = node[name]
    node[draw(keys)] = draw(values)
    return data


def dump(value) -> str:
    return yaml.safe_dump(value, allow_unicode=True)


@SETTINGS
@given(st.one_of(values.map(dump), mutated_good().map(dump), deep_texts, texts))
def test_the_config_loader_never_raises_anything_but_a_config_error(text):
    expect_success_or_dcctl_error(lambda: parse_config(text, "dcctl.yaml"))


@SETTINGS
@given(st.binary(max_size=200) | st.builds(lambda v, byte: dump(v).encode() + bytes([byte]), values,
                                           st.integers(128, 255)))
def test_any_bytes_in_a_config_file_are_a_config_error_at_worst(data):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "dcctl.yaml"
        path.write_bytes(data)
        expect_success_or_dcctl_error(lambda: load_config(path))


playbook_texts = st.one_of(
    values.map(dump), deep_texts,
    st.builds(lambda steps, extra: dump({"operation": "switchover", "steps": steps, **extra}),
              st.lists(values | st.sampled_from(["preflight", "promote"]), max_size=6),
              st.dictionaries(keys, values, max_size=2)))


@SETTINGS
@given(playbook_texts, st.binary(max_size=60))
def test_the_playbook_loader_never_raises_anything_but_a_config_error(text, data):
    expect_success_or_dcctl_error(lambda: parse_playbook("switchover", text, "switchover.yaml"))
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "switchover.yaml").write_bytes(data)
        expect_success_or_dcctl_error(lambda: load_playbook("switchover", directory))


HEADER = {"ts": 1.7e9, "event": "operation", "op": "20260101T000000Z-switchover-abcdef", "kind": "switchover",
          "service": "nosuch", "old_primary": "rabat", "new_primary": "backup", "args": {}}
ENTRIES = [HEADER, {"ts": 1.7e9 + 1, "event": "step_start", "step": "preflight"},
           {"ts": 1.7e9 + 2, "event": "step_end", "step": "preflight", "seconds": 1.0, "observed": {"x": 1}},
           {"ts": 1.7e9 + 3, "event": "step_fail", "step": "promote", "error": "boom"},
           {"ts": 1.7e9 + 4, "event": "finish", "outcome": "rolled_back"}]


@st.composite
def journal_lines(draw) -> bytes:
    """A journal dcctl could have written, then damaged: entries changed, dropped, replaced by other
    JSON or by bytes, and a last line torn anywhere, even inside a UTF-8 character."""
    lines = []
    for entry in ENTRIES[:draw(st.integers(0, len(ENTRIES)))]:
        entry = dict(entry)
        choice = draw(st.integers(0, 5))
        if choice == 0:
            entry[draw(st.sampled_from(sorted(entry) + ["x"]))] = draw(values)
        elif choice == 1:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        elif choice == 2:
            entry = draw(values)
        elif choice == 3:
            entry["observed"] = {"name": "é" * draw(st.integers(0, 3)), "checks": draw(values),
                                 "writable_at": draw(values), "rto_seconds": draw(values)}
        line = json.dumps(entry, ensure_ascii=False).encode() if choice != 4 else draw(st.binary(max_size=30))
        lines.append(line)
    data = b"\n".join(lines) + (b"\n" if lines and draw(st.booleans()) else b"")
    if data and draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]  # torn by a crash
    return data


def read_everything(journal: Journal) -> None:
    entries = journal.entries()
    journal.torn_note()
    state = journal.state()
    report = build_report(entries)
    markdown(report)
    render_html(report)
    assert state.header == entries[0]


@SETTINGS
@given(journal_lines())
def test_reading_any_journal_works_or_is_a_journal_error(data):
    with tempfile.TemporaryDirectory() as directory:
        journal_dir = Path(directory) / "operations" / HEADER["op"]
        journal_dir.mkdir(parents=True)
        (journal_dir / "journal.jsonl").write_bytes(data)
        journal = Journal.open(directory, HEADER["op"])
        try:
            read_everything(journal)
        except JournalError:
            pass
        operations, notes = scan_operations(directory)
        assert len(operations) + sum("skipped" in note for note in notes) == 1  # listed, or named as skipped


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journal_lines())
def test_history_and_resume_end_in_success_or_a_dcctl_error(data):
    with tempfile.TemporaryDirectory() as directory:
        journal_dir = Path(directory) / "operations" / HEADER["op"]
        journal_dir.mkdir(parents=True)
        (journal_dir / "journal.jsonl").write_bytes(data)
        config = yaml.safe_load(yaml.safe_dump(GOOD))
        config["state_dir"] = directory
        config_path = Path(directory) / "dcctl.yaml"
        config_path.write_text(yaml.safe_dump(config))
        for args in (["history"], ["-o", "json", "history"], ["resume", HEADER["op"]]):
            expect_success_or_dcctl_error(
                lambda: cli.main(args=["-c", str(config_path), *args], prog_name="dcctl", standalone_mode=False))


def test_a_deeply_nested_config_is_one_config_error():
    expect_success_or_dcctl_error(lambda: parse_config(nested(5000, "[", "]")))
    expect_success_or_dcctl_error(lambda: parse_config("services: " + nested(300, "{a: ", "}")))


def test_a_random_walk_of_printable_yaml_never_crashes():
    rng = random.Random(8)
    alphabet = string.printable + "é\u00ff"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60)))
        expect_success_or_dcctl_error(lambda: parse_config(text))
        expect_success_or_dcctl_error(lambda: parse_playbook("rejoin", text, "rejoin.yaml"))
