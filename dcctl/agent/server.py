"""The agent's HTTP(S) endpoints: /metrics (prometheus-client) and /healthz, with optional TLS
and basic auth. One thread per request; the TLS handshake happens in that thread, so a client
that connects and says nothing cannot hold up the others."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from dcctl.agent.auth import BasicAuth
from dcctl.agent.collector import Health
from dcctl.config.load import listen_port
from dcctl.errors import ConfigError, DcctlError

log = logging.getLogger("dcctl.agent")
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request (and the TLS handshake)

INDEX = """<html><head><title>dcctl agent</title></head><body>
<h1>dcctl agent</h1><p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a></p>
</body></html>
"""


class AgentApp:
    """The WSGI application: routing, basic auth, /healthz."""

    def __init__(self, registry: CollectorRegistry, health: Callable[[], list[Health]], auth: BasicAuth | None):
        self.metrics = make_wsgi_app(registry)
        self.health = health
        self.auth = auth

    def __call__(self, environ, start_response):
        if self.auth is not None and not self.auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return _reply(start_response, "401 Unauthorized", "authentication required\n",
                          [("WWW-Authenticate", 'Basic realm="dcctl agent", charset="UTF-8"')])
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return self.metrics(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", "use GET\n", [("Allow", "GET, HEAD")])
        if path == "/healthz":
            healths = self.health()
            ok = all(h.ok for h in healths)
            body = ("ok\n" if ok else "unhealthy\n") + "".join(f"{h.detail}\n" for h in healths)
            return _reply(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        if path == "/":
            return _reply(start_response, "200 OK", INDEX, content_type="text/html; charset=utf-8")
        return _reply(start_response, "404 Not Found", "not found; try /metrics or /healthz\n")


def _reply(start_response, status: str, body: str, headers: list[tuple[str, str]] | None = None,
           content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), *(headers or [])])
    return [data]


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args) -> None:
        """A scrape is not an event: nothing is logged per request."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up, times out, or speaks plain HTTP to the TLS port: its problem, not ours."""
        log.debug("request from %s failed", client_address[0], exc_info=True)


@dataclass(frozen=True)
class Tls:
    cert_file: str
    key_file: str


class AgentServer:
    def __init__(self, httpd: _Server, url: str):
        self.httpd = httpd
        self.url = url
        self.thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                       name="dcctl-agent-http")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def parse_listen(listen: str) -> tuple[str, int]:
    """
    >>> parse_listen("127.0.0.1:9640"), parse_listen("[::1]:9640"), parse_listen(":9640")
    (('127.0.0.1', 9640), ('::1', 9640), ('', 9640))
    """
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def bind(listen: str, app: AgentApp, tls: Tls | None, source: str, key_path: str) -> AgentServer:
    """Listen on `listen` (host:port). `source` and `key_path` (the config file and the key path of
    the agent settings) make the errors point at what to change."""
    if listen_port(listen) is None:
        raise ConfigError([f"{source}: {key_path}.listen: expected host:port with a port 1-65535, "
                           f"got {listen!r}"])
    host, port = parse_listen(listen)
    server_class = type("AgentHTTPServer", (_Server,), {"address_family": socket.AF_INET6 if ":" in host
                                                        else socket.AF_INET})
    context = _tls_context(tls, source, key_path) if tls else None
    try:
        httpd = server_class((host, port), _Handler)
    except OSError as exc:
        raise DcctlError(f"cannot listen on {listen}: {exc.strerror or exc}",
                         hint=f"is another agent running there? or change {key_path}.listen in {source}") from None
    httpd.set_app(app)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host or "0.0.0.0"
    return AgentServer(httpd, f"{scheme}://{shown}:{port}")


def _tls_context(tls: Tls, source: str, key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=tls.cert_file, keyfile=tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError([f"{source}: {key_path}.tls_cert_file: cannot load the certificate {tls.cert_file} with the key "
                           f"{tls.key_file}: {reason}"],
                          hint="both must be PEM files readable by the agent's user, and the key must match") from None
    return context
