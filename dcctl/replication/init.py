"""`dcctl replication init`: build the standby at a site from the primary.

pg_basebackup streams the primary into `<data_dir>.dcctl-partial` at the standby site; only a
complete, configured copy is moved into place. So an init that fails or is interrupted leaves
nothing half-configured: the next init removes the partial copy and starts over. An existing
data directory is never deleted: with --force it is moved aside, named with the date.
"""
from __future__ import annotations

import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from dcctl.config.schema import Config, PostgresConfig, ServiceConfig
from dcctl.errors import DcctlError, RefusedError, ToolError
from dcctl.model import Role, ServiceView
from dcctl.pg import control, queries, standby_conf, tools
from dcctl.pg.probe import probe_node
from dcctl.pg.session import connect
from dcctl.plan.step import Reporter, Step, run_steps
from dcctl.transport import Transport, open_transport

PARTIAL_SUFFIX = ".dcctl-partial"
ASIDE_SUFFIX = ".dcctl-aside-"
SPACE_MARGIN = 1.10  # the copy plus WAL written while it runs


@dataclass(frozen=True)
class TargetState:
    """What the standby site's data directory looks like before init."""

    data_dir_exists: bool
    data_dir_empty: bool
    partial_exists: bool
    running: bool
    free_bytes: int | None


@dataclass(frozen=True)
class InitRequest:
    service: str
    primary_site: str
    standby_site: str
    primary: PostgresConfig
    standby: PostgresConfig
    force: bool


@dataclass(frozen=True)
class InitPlan:
    request: InitRequest
    slot: str
    partial_dir: str
    aside_dir: str | None
    stop_first: bool
    remove_partial: bool
    nothing_to_do: str | None = None


def aside_name(data_dir: str, now: datetime) -> str:
    """
    >>> aside_name("/pg/main/", datetime(2026, 11, 24, 5, 30, 1, tzinfo=timezone.utc))
    '/pg/main.dcctl-aside-20261124T053001Z'
    """
    return data_dir.rstrip("/") + ASIDE_SUFFIX + now.strftime("%Y%m%dT%H%M%SZ")


def choose_sites(view: ServiceView, source: str | None, target: str | None) -> tuple[str, str]:
    names = [s.site for s in view.sites]
    for given in (source, target):
        if given is not None and given not in names:
            raise RefusedError(f"no site named {given!r} in service {view.service}; sites: {', '.join(names)}")
    if source and target and source == target:
        raise RefusedError("--from and --to name the same site")
    if source is None:
        primaries = [s.site for s in view.primaries() if s.site != target]
        if len(primaries) != 1:
            why = "; ".join(f"{s.site}: {s.postgres_error or s.role.value}" for s in view.sites)
            raise RefusedError(f"cannot tell which site is the primary ({why})",
                               hint="name it with --from SITE once its PostgreSQL answers as a primary")
        source = primaries[0]
    if target is None:
        target = next(name for name in names if name != source)
    return source, target


def plan_init(request: InitRequest, view: ServiceView, target: TargetState, primary_size: int,
              now: datetime) -> InitPlan:
    """Every reason to refuse, listed at once; else the plan. Pure."""
    reasons = []
    primary_status = view.site(request.primary_site)
    standby_status = view.site(request.standby_site)
    data_dir = request.standby.data_dir.rstrip("/")
    slot = standby_conf.slot_name(request.standby_site, request.standby)
    if primary_status.role is not Role.PRIMARY:
        reasons.append(f"site {request.primary_site} is not a reachable primary "
                       f"({primary_status.postgres_error or primary_status.role.value})")
    if standby_status.role is Role.PRIMARY:
        reasons.append(f"site {request.standby_site} runs a PRIMARY (not in recovery) at {standby_status.postgres}: "
                       f"dcctl will not overwrite a primary; if it is a stale old primary, fence it and use "
                       f"`dcctl rejoin`, or stop it yourself first")
    elif standby_status.node and standby_status.node.receiver_status == "streaming" and not request.force:
        return InitPlan(request, slot, data_dir + PARTIAL_SUFFIX, None, False, False,
                        nothing_to_do=f"site {request.standby_site} already streams from "
                                      f"{standby_status.node.upstream}; use --force to rebuild it")
    if target.data_dir_exists and not target.data_dir_empty and not request.force:
        reasons.append(f"data directory {data_dir} at site {request.standby_site} is not empty; --force moves it "
                       f"aside to {aside_name(data_dir, now)} (nothing is deleted)")
    if target.running and not request.force:
        reasons.append(f"PostgreSQL is running at site {request.standby_site}; --force stops it first")
    needed = int(primary_size * SPACE_MARGIN)
    if target.free_bytes is not None and target.free_bytes < needed:
        reasons.append(f"site {request.standby_site} has {target.free_bytes} bytes free near {data_dir}; the copy "
                       f"needs about {needed} (database size {primary_size} + 10 %)")
    if reasons:
        raise RefusedError("replication init refused:\n  - " + "\n  - ".join(reasons))
    aside = aside_name(data_dir, now) if target.data_dir_exists and not target.data_dir_empty else None
    return InitPlan(request, slot, data_dir + PARTIAL_SUFFIX, aside, target.running, target.partial_exists)


class StandbyBuilder:
    """Executes an InitPlan over the two sites' transports."""

    def __init__(self, plan: InitPlan, primary_transport: Transport, standby_transport: Transport,
                 streaming_timeout: float = 120.0):
        self.plan = plan
        self.req = plan.request
        self.primary_transport = primary_transport
        self.standby = standby_transport
        self.streaming_timeout = streaming_timeout
        self.source = standby_conf.primary_conninfo(self.req.primary, self.req.standby_site, self.req.standby)

    def steps(self) -> list[Step]:
        p, r = self.plan, self.req
        data_dir = r.standby.data_dir.rstrip("/")
        basebackup = tools.pg_basebackup(r.standby.bin_dir, p.partial_dir, self.source, p.slot)
        steps = [Step("create_slot", r.primary_site, f"create physical slot {p.slot} on {r.primary_site} if missing",
                      self.create_slot, queries.shown(queries.CREATE_PHYSICAL_SLOT, p.slot, p.slot))]
        if p.stop_first:
            steps.append(Step("stop_standby", r.standby_site, f"stop PostgreSQL at {r.standby_site} (fast)",
                              lambda rep: control.stop(self.standby, r.standby),
                              shlex.join(control.stop_argv(r.standby))))
        if p.aside_dir:
            steps.append(Step("move_aside", r.standby_site, f"move {data_dir} aside to {p.aside_dir}",
                              lambda rep: self.sh(["mv", "-T", data_dir, p.aside_dir], "moving the old data aside"),
                              shlex.join(["mv", "-T", data_dir, p.aside_dir])))
        if p.remove_partial:
            steps.append(Step("remove_partial", r.standby_site, f"remove {p.partial_dir}, the partial copy of an "
                              f"earlier init that did not finish", self.remove_partial,
                              shlex.join(["rm", "-rf", "--", p.partial_dir])))
        steps += [
            Step("basebackup", r.standby_site, f"copy {r.primary_site} ({r.primary.host}:{r.primary.port}) into "
                 f"{p.partial_dir} with pg_basebackup (slot {p.slot}, WAL streamed)", self.basebackup,
                 shlex.join(basebackup)),
            Step("configure_standby", r.standby_site, "write primary_conninfo, primary_slot_name and port to "
                 "postgresql.auto.conf, and standby.signal", self.configure),
            Step("move_into_place", r.standby_site, f"move {p.partial_dir} to {data_dir}",
                 lambda rep: self.sh(["mv", "-T", p.partial_dir, data_dir], "moving the copy into place"),
                 shlex.join(["mv", "-T", p.partial_dir, data_dir])),
            Step("start_standby", r.standby_site, f"start PostgreSQL at {r.standby_site} "
                 f"({r.standby.control.method})", lambda rep: control.start(self.standby, r.standby),
                 shlex.join(control.start_argv(r.standby))),
            Step("wait_streaming", r.standby_site, f"wait until {r.standby_site} streams from {r.primary_site}",
                 self.wait_streaming),
        ]
        return steps

    def run(self, reporter: Reporter) -> list[tuple[str, float]]:
        return run_steps(self.steps(), reporter,
                         on_failure_hint="fix the cause and run `dcctl replication init` again: it removes the "
                                         "partial copy and starts over; no existing data directory was deleted")

    def sh(self, argv: list[str], what: str) -> None:
        self.standby.run(argv, timeout=600).check(what)

    def create_slot(self, reporter: Reporter) -> None:
        with connect(self.req.primary, "replication init", self.req.primary_site) as conn:
            conn.execute(queries.CREATE_PHYSICAL_SLOT, (self.plan.slot, self.plan.slot))

    def remove_partial(self, reporter: Reporter) -> None:
        partial = self.plan.partial_dir
        assert partial.endswith(PARTIAL_SUFFIX)  # never remove anything but our own partial copy
        self.sh(["rm", "-rf", "--", partial], "removing the partial copy")

    def basebackup(self, reporter: Reporter) -> None:
        p, r = self.plan, self.req
        parent = posixpath.dirname(p.partial_dir) or "/"
        self.sh(["mkdir", "-p", parent], f"creating {parent}")
        parser = BasebackupProgress(reporter)
        self.standby.run(tools.pg_basebackup(r.standby.bin_dir, p.partial_dir, self.source, p.slot),
                         timeout=7 * 86400, on_stderr=parser.feed).check("pg_basebackup")

    def configure(self, reporter: Reporter) -> None:
        p, r = self.plan, self.req
        auto_conf = posixpath.join(p.partial_dir, "postgresql.auto.conf")
        try:
            current = self.standby.read_file(auto_conf).decode()
        except DcctlError:
            current = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n"
        settings = standby_conf.standby_settings(r.primary, r.standby_site, r.standby)
        self.standby.write_file(auto_conf, standby_conf.update_auto_conf(current, settings).encode(), mode=0o600)
        self.standby.write_file(posixpath.join(p.partial_dir, "standby.signal"), b"", mode=0o600)

    def wait_streaming(self, reporter: Reporter) -> None:
        deadline = time.monotonic() + self.streaming_timeout
        last = "not answering yet"
        while time.monotonic() < deadline:
            try:
                node = probe_node(self.req.standby, self.req.standby_site, purpose="replication init")
                if node.receiver_status == "streaming":
                    return
                last = f"in recovery, WAL receiver {node.receiver_status or 'not started'}"
            except DcctlError as exc:
                last = exc.message
            time.sleep(0.2)
        raise ToolError(f"the standby did not start streaming within {self.streaming_timeout:g} s ({last})",
                        hint=f"see the PostgreSQL log at site {self.req.standby_site} "
                             f"({control.log_file(self.req.standby)})")


class BasebackupProgress:
    """Turns pg_basebackup --progress output ("1234/56789 kB (2%), 0/1 tablespace") into byte counts."""

    PATTERN = re.compile(r"(\d+)/(\d+) kB")

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.buffer = ""

    def feed(self, text: str) -> None:
        self.buffer += text
        *lines, self.buffer = re.split(r"[\r\n]", self.buffer)
        for line in lines:
            match = self.PATTERN.search(line)
            if match:
                self.reporter.progress(int(match.group(1)) * 1024, int(match.group(2)) * 1024)


def observe_target(transport: Transport, node: PostgresConfig) -> TargetState:
    data_dir = node.data_dir.rstrip("/")
    exists = transport.run(["test", "-d", data_dir], timeout=30).rc == 0
    empty = True
    if exists:
        listing = transport.run(["find", data_dir, "-mindepth", "1", "-maxdepth", "1", "-print", "-quit"], timeout=30)
        listing.check(f"listing {data_dir}")
        empty = not listing.stdout.strip()
    partial = transport.exists(data_dir + PARTIAL_SUFFIX)
    running = exists and not empty and control.is_running(transport, node)
    free = None
    probe_dir = data_dir
    while probe_dir not in ("", "/"):
        result = transport.run(["df", "-B1", "--output=avail", probe_dir], timeout=30)
        if result.ok:
            free = int(result.stdout.split()[-1])
            break
        probe_dir = posixpath.dirname(probe_dir)
    return TargetState(exists, empty, partial, running, free)


def primary_size(node: PostgresConfig, site: str) -> int:
    with connect(node, "replication init", site) as conn:
        row = conn.execute(queries.DATABASES_SIZE).fetchone()
    return int(row["size"] or 0)


def prepare_init(config: Config, service_name: str, service: ServiceConfig, *, source: str | None,
                 target: str | None, force: bool) -> tuple[InitPlan, StandbyBuilder]:
    from dcctl.topology import gather_view

    view = gather_view(config, service_name, service)
    primary_site, standby_site = choose_sites(view, source, target)
    request = InitRequest(service_name, primary_site, standby_site, service.sites[primary_site].postgres,
                          service.sites[standby_site].postgres, force)
    standby_transport = open_transport(standby_site, service.sites[standby_site])
    primary_transport = open_transport(primary_site, service.sites[primary_site])
    target_state = observe_target(standby_transport, request.standby)
    size = primary_size(request.primary, primary_site) if view.site(primary_site).role is Role.PRIMARY else 0
    plan = plan_init(request, view, target_state, size, datetime.now(timezone.utc))
    return plan, StandbyBuilder(plan, primary_transport, standby_transport,
                                streaming_timeout=request.standby.control.start_timeout)

