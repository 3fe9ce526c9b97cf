"""The full drill, a composite operation: two real switchovers (each a normal operation with its
own journal, lock and report) and a verification in between, under one drill record."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dcctl.errors import DcctlError, Interrupted
from dcctl.ops.engine import Action, FailedVerdict, OpContext, OperationFailed
from dcctl.ops.preflight import switchover_refusals
from dcctl.ops.steps.common import _on, gather, refuse


def preflight(ctx: OpContext) -> dict[str, Any]:
    # The receiver's last receipt is not judged here: an idle primary sends nothing for a while,
    # and the nested switchover's own preflight nudges the stream before it judges it.
    refuse("full drill", switchover_refusals(gather(ctx), ctx.service, ctx.old_primary, ctx.new_primary,
                                            check_receipt=False,
                                            min_free_ratio=ctx.service.thresholds.disk_free_crit_ratio))
    return {"drill_mode": "full"}


def switchover(ctx: OpContext, step: str, source: str, target: str) -> dict[str, Any]:
    """One nested switchover, observed first: a resumed drill does not move a role twice, and
    finishes the switchover it was stopped in before anything else."""
    assert ctx.nested is not None and ctx.finish_part is not None, "composites run through ops/operation.py"

    def say(text: str) -> None:
        ctx.say(f"  {step}: {text}")

    try:
        finished = ctx.finish_part("switchover", say)
        if finished is not None:
            ctx.view = None
            outcome, report, op_id, went_to = finished
            if went_to == target:
                return _switched(step, outcome, report, op_id)
        view = gather(ctx)
        if view.site(target).role.value == "primary" and view.site(source).role.value == "standby":
            return {f"{step}_outcome": "success", f"{step}_note": f"{target} was already the primary"}
        outcome, report, op_id = ctx.nested("switchover", target, {"drill": ctx.op_id}, say, view)
        ctx.view = None  # the roles moved: the next step looks again
    except Interrupted as exc:
        # Ctrl-C reached the switchover: the drill stops there too, and its resume finishes that
        # switchover first (a drill that went on would leave it behind, perhaps with no primary).
        ctx.journal.append("halt", reason=f"{step}: {exc.message}")
        raise Interrupted(f"full drill {ctx.op_id} stopped in {step}: {exc.message}",
                          hint=f"`dcctl resume {ctx.op_id}` finishes that switchover, then the drill") from exc
    except DcctlError as exc:
        if step == "switchover_back":
            raise OperationFailed(f"the switchover back to {target} failed: {exc.message}; the service runs at "
                                  f"{source}", hint=f"fix the cause, then `dcctl resume {ctx.op_id}` switches back "
                                                    f"(or `dcctl switchover --to {target}`)") from exc
        return {f"{step}_outcome": "failed", f"{step}_error": exc.message}
    return _switched(step, outcome, report, op_id)


def _switched(step: str, outcome: str, report: Mapping[str, Any], op_id: str) -> dict[str, Any]:
    return {f"{step}_outcome": outcome, f"{step}_operation": op_id,
            f"{step}_write_unavailability_seconds": report.get("write_unavailability_seconds")}


def switchover_there(ctx: OpContext) -> dict[str, Any]:
    # From here the drill always comes back: a crash after this step is resumed forward.
    observed = switchover(ctx, "switchover_there", ctx.old_primary, ctx.new_primary)
    if observed.get("switchover_there_outcome") == "success":
        observed["rto_seconds"] = observed.get("switchover_there_write_unavailability_seconds")
    return observed


def moved(ctx: OpContext) -> bool:
    return ctx.observed.get("switchover_there_outcome") == "success"


def verify(ctx: OpContext) -> dict[str, Any]:
    if not moved(ctx):
        return {"checks": [], "checks_failed": []}
    from dcctl.ops.steps.drill import sql_results
    from dcctl.pg.session import connect

    site = ctx.new_primary

    def connect_checks(dbname: str):
        # The operator's verification queries run without a statement timeout, as on the drill copy.
        return connect(ctx.node(site), "drill", site, dbname=dbname, statement_timeout=0)

    # The checks compare times with the primary's clock: the primary is the drill site now.
    here = OpContext(op_id=ctx.op_id, kind="drill", config=ctx.config, service_name=ctx.service_name,
                     service=ctx.service, old_primary=site, new_primary=site, args=ctx.args, journal=ctx.journal)
    try:
        checks = sql_results(here, connect_checks)
    finally:
        here.close()
    return {"checks": checks, "checks_failed": [c["name"] for c in checks if not c["passed"]]}


def dwell(ctx: OpContext) -> dict[str, Any]:
    if moved(ctx) and ctx.service.drill.dwell_seconds:
        time.sleep(ctx.service.drill.dwell_seconds)
    return {}


def switchover_back(ctx: OpContext) -> dict[str, Any]:
    if not moved(ctx):
        return {}
    return switchover(ctx, "switchover_back", ctx.new_primary, ctx.old_primary)


def verdict(ctx: OpContext) -> dict[str, Any]:
    if not moved(ctx):
        raise FailedVerdict(f"full drill failed: the switchover to {ctx.new_primary} did not happen "
                            f"({ctx.observed.get('switchover_there_error') or 'rolled back'}); nothing changed roles")
    failed = ctx.observed.get("checks_failed") or []
    if failed:
        raise FailedVerdict(f"full drill failed: check(s) {', '.join(failed)} failed on {ctx.new_primary}; the "
                            f"service is back at {ctx.old_primary}")
    return {"verdict": "passed"}


DRILL_FULL: dict[str, Action] = {
    "preflight": Action(preflight, lambda c: f"refuse unless a switchover {c.old_primary} -> {c.new_primary} "
                        "would be accepted (every reason at once)"),
    "switchover_there": Action(switchover_there, lambda c: f"switchover {c.old_primary} -> {c.new_primary} "
                               "(a normal operation, its own journal); from here the drill always comes back",
                               _on("new_primary"), irreversible=True),
    "verify": Action(verify, lambda c: f"{len(c.service.drill.sql_checks)} SQL check(s) of drill.sql_checks on "
                     f"{c.new_primary}", _on("new_primary")),
    "dwell": Action(dwell, lambda c: f"stay on {c.new_primary} for drill.dwell_seconds "
                    f"({c.service.drill.dwell_seconds:g} s)"),
    "switchover_back": Action(switchover_back, lambda c: f"switchover {c.new_primary} -> {c.old_primary}",
                              _on("old_primary")),
    "verdict": Action(verdict, lambda c: "passed only if both switchovers and every check passed"),
}
