"""PeriodicCollector, the exposition and the HTTP app, with fake sources (no server, no socket)."""
import base64
import io
import logging
import threading
import time

import bcrypt
import pytest
from prometheus_client import generate_latest

from dcctl.agent.auth import BasicAuth
from dcctl.agent.collector import Health, PeriodicCollector
from dcctl.agent.exposition import make_registry
from dcctl.agent.metrics import sample
from dcctl.agent.server import AgentApp, Tls, _tls_context
from dcctl.errors import ConfigError, UnreachableError


class FakeSource:
    collector = "status"
    service = "massar"

    def __init__(self, outcomes, interval=10.0, timeout=5.0):
        self.outcomes = list(outcomes)  # values to return, or exceptions to raise, in turn
        self.interval = interval
        self.timeout = timeout
        self.calls = 0
        self.changes_seen = []

    def collect(self):
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def samples(self, snapshot):
        return [sample("dcctl_pg_up", snapshot, service="massar", site="rabat")]

    def changes(self, old, new):
        self.changes_seen.append((old, new))
        return [f"up {old} -> {new}"] if old != new else []


def by_name(samples):
    return {s.name: s.value for s in samples}


def test_before_the_first_collection_only_the_collector_series_exist():
    collector = PeriodicCollector(FakeSource([1]))
    got = by_name(collector.samples(time.time()))
    assert got["dcctl_collector_last_success_timestamp_seconds"] == 0
    assert got["dcctl_collector_up"] == 0 and got["dcctl_collector_runs_total"] == 0
    assert "dcctl_pg_up" not in got
    assert collector.health(time.time()) == Health(False, "status massar: no successful collection yet")


def test_a_success_is_cached_and_logged_as_events(caplog):
    source = FakeSource([1, 0])
    collector = PeriodicCollector(source)
    with caplog.at_level(logging.INFO, logger="dcctl.agent"):
        assert collector.run_once() and collector.run_once()
    got = by_name(collector.samples(time.time()))
    assert got["dcctl_pg_up"] == 0 and got["dcctl_collector_runs_total"] == 2 and got["dcctl_collector_up"] == 1
    assert time.time() - got["dcctl_collector_last_success_timestamp_seconds"] < 60
    assert got["dcctl_collector_stale_after_seconds"] == 2 * 10 + 5
    assert [r.getMessage() for r in caplog.records] == ["up None -> 1", "up 1 -> 0"]
    assert collector.health(time.time()).ok


def test_a_failure_keeps_the_last_values_until_they_are_stale(caplog):
    source = FakeSource([1, UnreachableError("boom"), UnreachableError("boom"), 1])
    collector = PeriodicCollector(source)
    collector.run_once()
    success = by_name(collector.samples(time.time()))["dcctl_collector_last_success_timestamp_seconds"]
    with caplog.at_level(logging.INFO, logger="dcctl.agent"):
        assert not collector.run_once() and not collector.run_once()
    got = by_name(collector.samples(success + 1))
    assert got["dcctl_collector_up"] == 0 and got["dcctl_collector_failures_total"] == 2
    assert got["dcctl_pg_up"] == 1  # still fresh: kept
    assert collector.health(success + 1).ok and "boom" in collector.health(success + 1).detail
    stale = by_name(collector.samples(success + 26))  # past 2 x 10 + 5 s
    assert "dcctl_pg_up" not in stale and stale["dcctl_collector_last_success_timestamp_seconds"] == success
    health = collector.health(success + 26)
    assert not health.ok and "stale" in health.detail and "boom" in health.detail
    assert [r.getMessage() for r in caplog.records] == ["collector status massar failed: boom"]  # once, not twice
    with caplog.at_level(logging.INFO, logger="dcctl.agent"):
        assert collector.run_once()
    assert "collector status massar succeeds again" in caplog.text


def test_an_unexpected_exception_is_a_failed_run_not_a_dead_agent():
    collector = PeriodicCollector(FakeSource([ZeroDivisionError("division by zero")]))
    assert collector.run_once() is False
    assert "ZeroDivisionError: division by zero" in collector.health(time.time()).detail


def test_the_thread_collects_every_interval_and_stops():
    source = FakeSource([1], interval=0.01, timeout=0.01)
    collector = PeriodicCollector(source)
    collector.start()
    deadline = time.monotonic() + 10
    while source.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    collector.stop(5)
    assert source.calls >= 3 and not collector._thread.is_alive()


def test_a_scrape_does_not_wait_for_a_collection_in_progress():
    release = threading.Event()

    class Slow(FakeSource):
        def collect(self):
            release.wait(30)
            return 1

    collector = PeriodicCollector(Slow([1]))
    worker = threading.Thread(target=collector.run_once)
    worker.start()
    try:
        text = generate_latest(make_registry([collector])).decode()  # while collect() blocks
        assert 'dcctl_collector_runs_total{collector="status",service="massar"} 0.0' in text
        assert "process_resident_memory_bytes" in text
    finally:
        release.set()
        worker.join(5)


# ---- the HTTP app -------------------------------------------------------------------------

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def call(app, path="/metrics", method="GET", user=None, password=None):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": "", "wsgi.input": io.BytesIO()}
    if user is not None:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    seen = {}

    def start_response(status, headers):
        seen.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body.decode()


def app_with(healths, auth=None):
    collector = PeriodicCollector(FakeSource([1]))
    collector.run_once()
    return AgentApp(make_registry([collector]), lambda: healths, auth)


def test_routes():
    app = app_with([Health(True, "status massar: ok")])
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK" and 'dcctl_pg_up{service="massar",site="rabat"} 1.0' in body
    assert call(app, "/healthz")[0] == "200 OK" and call(app, "/healthz")[2] == "ok\nstatus massar: ok\n"
    assert call(app, "/")[0] == "200 OK"
    assert call(app, "/nope")[0] == "404 Not Found"
    assert call(app, "/healthz", method="POST")[0] == "405 Method Not Allowed"


def test_healthz_is_503_when_a_task_is_unhealthy():
    status, _, body = call(app_with([Health(True, "a: ok"), Health(False, "b: stale")]), "/healthz")
    assert status == "503 Service Unavailable" and body == "unhealthy\na: ok\nb: stale\n"


def test_basic_auth():
    app = app_with([Health(True, "ok")], BasicAuth("prometheus", HASH))
    for path in ("/metrics", "/healthz", "/"):
        status, headers, _ = call(app, path)
        assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert call(app, user="prometheus", password="wrong")[0] == "401 Unauthorized"
    assert call(app, user="someone", password="s3cret")[0] == "401 Unauthorized"
    assert call(app, user="prometheus", password="s3cret")[0] == "200 OK"
    assert call(app, user="prometheus", password="s3cret")[0] == "200 OK"  # remembered: no bcrypt this time


def test_a_good_credential_is_remembered_but_never_a_bad_one(monkeypatch):
    auth = BasicAuth("prometheus", HASH)
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(pw) or real(pw, h))
    header = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"prometheus:guess").decode()
    assert auth.allows(header) and auth.allows(header) and auth.allows(header)
    assert not auth.allows(bad) and not auth.allows(bad)
    assert calls == [b"s3cret", b"guess", b"guess"]


def test_an_unreadable_certificate_is_a_config_error(tmp_path):
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    with pytest.raises(ConfigError) as caught:
        _tls_context(Tls(str(cert), str(key)), "dcctl.yaml", "services.massar.sites.rabat.agent")
    assert caught.value.problems[0].startswith(f"dcctl.yaml: services.massar.sites.rabat.agent.tls_cert_file: "
                                               f"cannot load the certificate {cert}")
    with pytest.raises(ConfigError, match="No such file"):
        _tls_context(Tls(str(tmp_path / "missing.crt"), str(key)), "dcctl.yaml", "x")
