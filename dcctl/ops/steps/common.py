"""What every operation's steps share: reaching a node, stopping and starting it, polling
against a deadline, promoting, turning the old primary into a standby, recording the generation.
Each step observes before it acts, so that `dcctl resume` can run it twice without harm."""
from __future__ import annotations

import posixpath
import shlex
import time
from typing import Any

from dcctl.errors import DcctlError, RefusedError, ToolError
from dcctl.model import ServiceView
from dcctl.ops import generation
from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.pg.session import one_row
from dcctl.pg import control, queries, standby_conf, tools
from dcctl.pg.controldata import ControlData, parse_controldata

POLL = 0.005  # seconds between polls inside the write-unavailability window

def controldata(ctx: OpContext, site: str) -> ControlData:
    node = ctx.node(site)
    result = ctx.transport(site).run(tools.pg_controldata(node.bin_dir, node.data_dir), timeout=30,
                                     env={"LC_ALL": "C"})
    result.check(f"pg_controldata at site {site}")
    return parse_controldata(result.stdout)

def stop_node(ctx: OpContext, site: str, mode: str) -> str:
    node = ctx.node(site)
    ctx.drop_conn(site)
    if node.control.method == "systemd":
        control.stop(ctx.transport(site), node, mode)
        return "stopped"
    deadline = ctx.service.operation.stop_deadline
    result = ctx.transport(site).run(tools.signal_stop(node.data_dir, mode, deadline), timeout=deadline + 10)
    result.check(f"stopping PostgreSQL at site {site} ({mode})")
    return result.stdout.strip()

def start_node(ctx: OpContext, site: str) -> None:
    node = ctx.node(site)
    if node.control.method == "systemd":
        control.start(ctx.transport(site), node)
        return
    ctx.transport(site).run(tools.pg_ctl_start_nowait(node.bin_dir, node.data_dir, control.log_file(node)),
                            timeout=60).check(f"starting PostgreSQL at site {site}")

def node_running(ctx: OpContext, site: str) -> bool:
    node = ctx.node(site)
    return ctx.transport(site).exists(posixpath.join(node.data_dir, "postmaster.pid")) \
        and control.is_running(ctx.transport(site), node)

def poll(what: str, deadline: float, probe, interval: float = POLL, hint: str | None = None):
    """Call probe() until it returns something truthy; DcctlErrors from it count as 'not yet'."""
    end = time.monotonic() + deadline
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except OperationFailed:
            raise  # the probe knows that waiting cannot help
        except DcctlError as exc:
            last = exc.message
        except Exception as exc:  # psycopg errors while a server restarts
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if time.monotonic() >= end:
            raise ToolError(f"{what}: not reached within {deadline:g} s" + (f" (last: {last})" if last else ""),
                            hint=hint)
        time.sleep(interval)

def in_recovery(ctx: OpContext, site: str) -> bool:
    return one_row(ctx.conn(site).execute(queries.IN_RECOVERY))["in_recovery"]

def slot_for(ctx: OpContext, site: str) -> str:
    return standby_conf.slot_name(site, ctx.node(site))

def gather(ctx: OpContext) -> ServiceView:
    """The operation's one snapshot of both sites (taken when it was planned), or a new one when
    that is too old to decide on (a human took time to confirm, or this is a resume)."""
    return ctx.current_view()

def refuse(kind: str, reasons: list[str]) -> None:
    if reasons:
        raise RefusedError(f"{kind} refused:\n  - " + "\n  - ".join(reasons))

def promote(ctx: OpContext) -> dict[str, Any]:
    # Point of no return. From here the old primary must never run as a primary again: its data
    # directory is turned into a standby before it is started (configure_old_primary_as_standby).
    if not in_recovery(ctx, ctx.new_primary):
        return {"promote": "already promoted"}
    ctx.conn(ctx.new_primary).execute(queries.PROMOTE)
    return {"promoted_at": time.time()}

def wait_writable(ctx: OpContext) -> dict[str, Any]:
    poll(f"{ctx.new_primary} accepting writes", ctx.service.operation.promote_deadline,
         lambda: not in_recovery(ctx, ctx.new_primary))
    writable_at = time.time()
    row = one_row(ctx.conn(ctx.new_primary).execute(queries.TIMELINE_AND_LSN))
    return {"writable_at": writable_at, "timeline_after": row["tli"], "new_primary_lsn": row["lsn"]}

def configure_old_primary_as_standby(ctx: OpContext) -> dict[str, Any]:
    site, node = ctx.old_primary, ctx.node(ctx.old_primary)
    if node_running(ctx, site):
        stop_node(ctx, site, "fast")
    settings = standby_conf.standby_settings(ctx.node(ctx.new_primary), site, node)
    write_standby_files(ctx, site, settings)
    return {"old_primary_follows": ctx.new_primary, "old_primary_slot": settings["primary_slot_name"]}

def write_standby_files(ctx: OpContext, site: str, settings: dict[str, str]) -> None:
    node, transport = ctx.node(site), ctx.transport(site)
    auto_conf = posixpath.join(node.data_dir, "postgresql.auto.conf")
    try:
        current = transport.read_file(auto_conf).decode()
    except DcctlError:
        current = ""
    transport.write_file(auto_conf, standby_conf.update_auto_conf(current, settings).encode(), mode=0o600)
    transport.write_file(posixpath.join(node.data_dir, "standby.signal"), b"", mode=0o600)

def start_old_primary(ctx: OpContext) -> dict[str, Any]:
    if not node_running(ctx, ctx.old_primary):
        start_node(ctx, ctx.old_primary)
    return {}

def wait_old_primary_streaming(ctx: OpContext) -> dict[str, Any]:
    site = ctx.old_primary

    def streaming():
        ctx.drop_conn(site) if ctx._conns.get(site) is not None and ctx._conns[site].broken else None
        row = ctx.conn(site).execute(queries.REPLICATION_STREAMING).fetchone()
        if row is None or row["status"] != "streaming":
            return False
        return ctx.conn(ctx.new_primary).execute(queries.SENDING_TO, (site,)).fetchone() is not None

    poll(f"{site} streaming from {ctx.new_primary}", ctx.service.operation.stream_deadline, streaming,
         hint=f"see the PostgreSQL log at site {site} ({control.log_file(ctx.node(site))})")
    return {"old_primary_streaming_at": time.time()}

def record_generation(ctx: OpContext) -> dict[str, Any]:
    row = one_row(ctx.conn(ctx.new_primary).execute(queries.TIMELINE_AND_LSN))
    fenced = [ctx.old_primary] if ctx.kind == "failover" else []
    record = generation.Generation(ctx.service_name, row["tli"], ctx.new_primary, fenced, ctx.op_id, time.time())
    written = generation.record(ctx, record)
    return {"generation": row["tli"], "generation_recorded_at": written}

def reserve_return_slot(ctx: OpContext) -> str:
    slot = slot_for(ctx, ctx.old_primary)
    ctx.conn(ctx.new_primary).execute(queries.CREATE_PHYSICAL_SLOT_RESERVED, (slot, slot))
    return slot


def prepare_new_primary(ctx: OpContext) -> dict[str, Any]:
    ctx.transport(ctx.new_primary).connect()
    ctx.connect_with_retries(ctx.new_primary)
    if ctx.kind == "failover":
        # Reserved before promotion, like switchover's return slot: the WAL from the fork on stays
        # on the new primary until the old one is rejoined, or a later rejoin cannot stream.
        return {"return_slot": reserve_return_slot(ctx)}
    return {}


def stop_command(ctx: OpContext, site: str, mode: str) -> str:
    node = ctx.node(site)
    if node.control.method == "systemd":
        return shlex.join(control.stop_argv(node, mode))
    return (f"kill -{tools.STOP_SIGNALS[mode]} <pid in {node.data_dir}/postmaster.pid, checked to be PostgreSQL>; "
            f"poll every 10 ms until postmaster.pid is gone")

def start_command(ctx: OpContext, site: str) -> str:
    node = ctx.node(site)
    if node.control.method == "systemd":
        return shlex.join(control.start_argv(node))
    return shlex.join(tools.pg_ctl_start_nowait(node.bin_dir, node.data_dir, control.log_file(node)))

def _on(role: str):
    return lambda ctx: getattr(ctx, role)

def _cmd(argv_of):
    return lambda ctx: shlex.join(argv_of(ctx))


# Steps several operations share, described once.
PROMOTE = Action(promote, lambda c: "promote (point of no return)", _on("new_primary"),
                 lambda c: queries.shown(queries.PROMOTE), irreversible=True)
WAIT_WRITABLE = Action(wait_writable, lambda c: "wait until it accepts writes", _on("new_primary"),
                       lambda c: queries.shown(queries.IN_RECOVERY))
START_OLD_PRIMARY = Action(start_old_primary, lambda c: "start it as a standby", _on("old_primary"),
                           lambda c: start_command(c, c.old_primary))
WAIT_OLD_PRIMARY_STREAMING = Action(wait_old_primary_streaming, lambda c: f"wait until it streams from "
                                    f"{c.new_primary}", _on("old_primary"))
RECORD_GENERATION = Action(record_generation, lambda c: "record the new generation (timeline) on both sites")
