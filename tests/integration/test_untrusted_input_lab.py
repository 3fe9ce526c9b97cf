"""On the lab: a PostgreSQL error in the middle of a step is one line naming the step, with the
journal written; hook secrets never reach the plan, the journal or the reports, which are 0600
like the journal; a file whose name is not UTF-8, written on the fenced old primary, is
quarantined and reported by the rejoin (escaped), never left for the resync to purge."""
import json
import os
import stat
from pathlib import Path

import pytest

from tests.integration.conftest import config_variant, dcctl, lab, lab_fixture  # noqa: F401 (fixtures)
from tests.integration.filesync_helpers import owner, store, write

pytestmark = pytest.mark.lab

untrusted_lab = lab_fixture("local")

SECRET = "s3cr3t-hook-token"
PSQL = "/usr/lib/postgresql/15/bin/psql"


def superuser_password(lab) -> str:
    return next(entry.split(":")[4] for entry in lab.spec.pgpass.read_text().splitlines()
                if entry.split(":")[3] == "postgres")


def killer_hook(port: int, password: str) -> dict:
    """A before_switch hook that ends dcctl's own sessions at the old primary, so that the next
    step's query (checkpoint_primary) meets a psycopg error; it carries secrets to be masked."""
    return {"site": "old_primary", "mask": [r"massar-secret-\w+"],
            "run": (f"PGPASSWORD={password} {PSQL} -h 127.0.0.1 -p {port} -U postgres -d postgres -Atc "
                    f"\"SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity "
                    f"WHERE application_name LIKE 'dcctl%' AND pid <> pg_catalog.pg_backend_pid()\" "
                    f"# massar-secret-abc --token={SECRET}")}


def with_killer_hook(lab) -> str:
    def edit(data):
        service = data["services"]["massar"]
        port = service["sites"]["rabat"]["postgres"]["port"]
        service["hooks"] = {"before_switch": [killer_hook(port, superuser_password(lab))]}

    return config_variant(lab, "killer-hook", edit)


def test_a_psycopg_error_inside_a_step_is_one_line_naming_the_step(untrusted_lab):
    lab = untrusted_lab
    config = with_killer_hook(lab)

    password = superuser_password(lab)
    plan = dcctl("switchover", "--dry-run", config=config)
    assert "PGPASSWORD=***" in plan.stdout and "--token=***" in plan.stdout and "massar-secret" not in plan.stdout
    assert SECRET not in plan.stdout and password not in plan.stdout

    result = dcctl("--yes", "switchover", config=config, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("dcctl: error:")]
    assert len(errors) == 1 and "'checkpoint_primary' failed" in errors[0], result.stderr
    assert "OperationalError" in errors[0] or "AdminShutdown" in errors[0]

    op_dir = latest_operation(config)
    journal = [json.loads(line) for line in (op_dir / "journal.jsonl").read_text().splitlines()]
    failed = [e for e in journal if e["event"] == "step_fail"]
    assert failed and failed[0]["step"] == "checkpoint_primary"
    assert journal[-1]["event"] == "finish" and journal[-1]["outcome"] == "rolled_back"

    for name in ("journal.jsonl", "report.json", "report.md"):
        path = op_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        text = path.read_text()
        assert SECRET not in text and password not in text and "massar-secret-abc" not in text, name
    assert "PGPASSWORD=***" in (op_dir / "report.json").read_text()

    # The cluster is untouched: a plain switchover still works and reports the same way.
    history = json.loads(dcctl("-o", "json", "history", config=config).stdout)
    assert history[0]["outcome"] == "rolled_back"


def latest_operation(config: str) -> Path:
    import yaml

    state_dir = Path(yaml.safe_load(Path(config).read_text())["state_dir"])
    return max((state_dir / "operations").iterdir(), key=lambda p: p.stat().st_mtime)


def test_rejoin_quarantines_and_reports_a_name_that_is_not_utf8(lab):
    config = str(lab.spec.config_path)
    write(lab, "rabat", "u/synced.txt", "on both sites")
    dcctl("--yes", "filesync", "run", config=config)

    failover = json.loads(dcctl("--yes", "-o", "json", "failover", config=config).stdout)
    assert failover["outcome"] == "success" and failover["new_primary"] == "backup"

    # The fenced old primary's application writes a file whose name is Latin-1, not UTF-8.
    bad = os.fsencode(store(lab, "rabat") / "u") + b"/r\xe9sum\xe9-\\.txt"
    with open(bad, "wb") as handle:
        handle.write(b"written at rabat after the failover")
    os.chown(bad, *owner(lab))

    rejoin = json.loads(dcctl("--yes", "-o", "json", "rejoin", "--site", "rabat", config=config).stdout)
    assert rejoin["outcome"] == "success"
    quarantined = rejoin["observed"]["quarantined_files"]["documents"]
    assert quarantined["count"] == 1 and quarantined["files"] == ["u/r\\xe9sum\\xe9-\\\\.txt"]
    folder = os.fsencode(quarantined["directory"].split(":", 1)[1])
    with open(folder + b"/u/r\xe9sum\xe9-\\.txt", "rb") as handle:
        assert handle.read() == b"written at rabat after the failover"
    assert not os.path.exists(bad)  # the old primary's store now follows the new primary
    assert json.dumps("u/r\\xe9sum\\xe9-\\\\.txt") in (latest_operation(config) / "report.md").read_text()
