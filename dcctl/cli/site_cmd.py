"""dcctl site switchover | failover | rejoin | drill: every service moved by the recovery plan
(groups in order, the services of a group at once), under one journal and one report."""
from __future__ import annotations

from typing import Any

import click

from dcctl.cli.complete import complete_sites
from dcctl.cli.context import Context, output_option
from dcctl.cli.output import escape, print_json, show_table
from dcctl.errors import DcctlError, RefusedError

dry_run_option = click.option("--dry-run", is_flag=True, help="Print the whole plan (groups, services, steps, and "
                                                              "the refusals of every service) and change nothing.")
break_lock_option = click.option("--break-lock", is_flag=True, help="Take over a lock left by a crashed site "
                                                                    "operation (asks for confirmation).")


def say(text: str) -> None:
    click.echo(text, err=True)


@click.group()
def site() -> None:
    """Move every service of a site by the recovery plan, with one report."""


@site.command("switchover")
@click.option("--to", "to_site", shell_complete=complete_sites, required=True, metavar="SITE",
              help="The site every service moves to.")
@dry_run_option
@break_lock_option
@output_option
@click.pass_obj
def site_switchover(cli: Context, to_site: str, dry_run: bool, break_lock: bool) -> None:
    """Planned move of every service to SITE: zero committed transactions lost on each."""
    site_plan = plan_of(cli, "switchover", to_site, {})
    carry_out(cli, site_plan, dry_run=dry_run, break_lock=break_lock,
              question=f"Switch every service over to {to_site} by the recovery plan?")


@site.command("failover")
@click.option("--to", "to_site", shell_complete=complete_sites, required=True, metavar="SITE",
              help="The site whose standbys are promoted.")
@click.option("--primary-is-down", is_flag=True, help="Declare the old primary site down when dcctl can neither "
                                                      "reach nor fence it (asks you to type its name).")
@click.option("--confirm-site", metavar="SITE", help="With --primary-is-down: the old primary site's name, for "
                                                     "scripts.")
@dry_run_option
@break_lock_option
@output_option
@click.pass_obj
def site_failover(cli: Context, to_site: str, primary_is_down: bool, confirm_site: str | None, dry_run: bool,
                  break_lock: bool) -> None:
    """Promote every service's standby at SITE after the primary site is lost: fence first."""
    site_plan = plan_of(cli, "failover", to_site, {"primary_is_down": primary_is_down, "confirm_site": confirm_site})
    old = next((p.plan.ctx.old_primary for p in site_plan.parts.values() if p.plan), None)
    carry_out(cli, site_plan, dry_run=dry_run, break_lock=break_lock,
              question=f"Fence {old} and promote every service at {to_site}?",
              typed=old if primary_is_down else None)


@site.command("rejoin")
@click.option("--site", "rejoin_site", shell_complete=complete_sites, required=True, metavar="SITE",
              help="The old primary site to turn into standbys.")
@click.option("--keep-diverged", is_flag=True, help="Copy each data directory aside before its rewind.")
@click.option("--allow-reclone", is_flag=True, help="Re-clone when pg_rewind cannot be used (old data kept aside).")
@click.option("--force", is_flag=True, help="Rejoin even the services that already stream.")
@dry_run_option
@break_lock_option
@output_option
@click.pass_obj
def site_rejoin(cli: Context, rejoin_site: str, keep_diverged: bool, allow_reclone: bool, force: bool,
                dry_run: bool, break_lock: bool) -> None:
    """Turn every service's node at SITE into a standby of its current primary (pg_rewind)."""
    args = {"keep_diverged": keep_diverged, "allow_reclone": allow_reclone, "force": force}
    site_plan = plan_of(cli, "rejoin", rejoin_site, args)
    carry_out(cli, site_plan, dry_run=dry_run, break_lock=break_lock,
              question=f"Rewind every service's node at {rejoin_site} onto its primary? Commits only {rejoin_site} "
                       f"has are discarded (they are counted first).")


@site.command("drill")
@click.option("--mode", type=click.Choice(["non-disruptive", "full"]), default="non-disruptive", show_default=True,
              help="non-disruptive: a throwaway copy of each service; full: each service switched over and back.")
@dry_run_option
@output_option
@click.pass_obj
def site_drill(cli: Context, mode: str, dry_run: bool) -> None:
    """Drill every service by the recovery plan, with one report."""
    site_plan = plan_of(cli, "drill", None, {"mode": mode})
    carry_out(cli, site_plan, dry_run=dry_run, break_lock=False,
              question=f"Run a {mode} drill of every service by the recovery plan?")


def plan_of(cli: Context, kind: str, target: str | None, args: dict[str, Any]):
    from dcctl.site.planning import gather_views, plan_site

    config = cli.config
    if target is not None:
        config.require_site(target)
    connections: dict[str, dict] = {}
    views = gather_views(config, kind, args, connections)
    return plan_site(config, kind, views, target=target, args=args, say=say, connections=connections)


def carry_out(cli: Context, site_plan, *, dry_run: bool, break_lock: bool, question: str,
              typed: str | None = None) -> None:
    """Show the plan; stop there for --dry-run; refuse before asking; ask; run; print the outcome."""
    from dcctl.cli.confirm import confirm, confirm_typed
    from dcctl.site import execute
    from dcctl.site.planning import lock_refusals, refuse_if_needed

    if dry_run:
        site_plan.lock_refusals = lock_refusals(site_plan)
        show_plan(cli, site_plan, dry_run=True)
        if site_plan.refusals():
            raise RefusedError(f"site {site_plan.kind} would be refused (dry run, nothing changed)")
        return
    show_plan(cli, site_plan, dry_run=False)
    refuse_if_needed(site_plan, break_lock=break_lock)
    if typed is not None:
        confirm_typed(typed, cli.assume_yes, site_plan.args.get("confirm_site"))
    else:
        confirm(question, cli.assume_yes)
    if break_lock:
        confirm("Break the lock of the other site operation?", cli.assume_yes)
    say(f"site {site_plan.kind} {site_plan.op_id}")
    print_outcome(cli, execute.run(site_plan, break_lock=break_lock, say=say))


def resume_site(cli: Context, journal, break_lock: bool) -> None:
    """`dcctl resume SITEOP`: every unfinished service driven forward, the groups left run."""
    from dcctl.site import execute
    from dcctl.site.decide import SiteState
    from dcctl.site.lock import SiteLock

    state = SiteState.read(journal.entries())
    op_id = state.header["op"]
    if state.finished:
        click.echo(f"nothing to resume: {op_id} ended with outcome {state.outcome}")
        SiteLock(cli.config.state_dir).release_if_finished(op_id, say)
        return
    if break_lock:
        from dcctl.cli.confirm import confirm

        confirm("Break the lock of the other site operation?", cli.assume_yes)
    say(f"resuming {state.header['kind']} {op_id}")
    print_outcome(cli, execute.resume(cli.config, journal, break_lock=break_lock, say=say))


def print_outcome(cli: Context, done) -> None:
    if cli.output == "json":
        print_json(done.report)
    else:
        show_report(done.report)
    if done.outcome != "success":
        raise DcctlError(f"site operation {done.report['operation']}: {done.outcome}"
                                   + (f": {done.reason}" if done.reason else ""), hint=done.hint)


def show_report(report: dict[str, Any]) -> None:
    from dcctl.report.history import seconds_text
    from dcctl.report.site import describe_site

    rows = [[s["service"], str(s["group"]), s["outcome"] + (f": {s['error']}" if s.get("error") else ""),
             s["primary_now"], seconds_text(s["write_unavailability_seconds"]), seconds_text(s["rto_seconds"]),
             s["data_loss"] or "-"] for s in report["services"]]
    show_table(f"{escape(describe_site(report))}: {report['outcome']} in {report['wall_seconds']:.2f} s",
               ["service", "group", "outcome", "primary now", "write window", "RTO", "data loss"],
               [[escape(cell) for cell in row] for row in rows])
    for group in report["groups"]:
        click.echo(f"group {group['group']} ({', '.join(group['services'])}): {group['outcome']}, "
                   f"{seconds_text(group['seconds'])}")
    if report.get("site_rto_seconds") is not None:
        click.echo(f"site-level RTO (plan start -> last service writable): {report['site_rto_seconds']:.3f} s")


def show_plan(cli: Context, site_plan, *, dry_run: bool) -> None:
    """The whole plan and every refusal of every service: --dry-run's output (stdout); before a
    real run, shown on stderr."""
    if dry_run and cli.output == "json":
        print_json({"operation": site_plan.op_id, "plan": site_plan.headline, "kind": f"site-{site_plan.kind}",
                    "target": site_plan.target, "groups": [{"services": g.services, "on_failure": g.on_failure}
                                                           for g in site_plan.groups],
                    "services": site_plan.summary(), "refusals": site_plan.refusals()})
        return
    err = not dry_run
    click.echo(site_plan.headline + (" (dry run: nothing is changed)" if dry_run else ""), err=err)
    for index, group in enumerate(site_plan.groups):
        click.echo(f"group {index + 1}/{len(site_plan.groups)} (services at once; on failure: {group.on_failure}): "
                   f"{', '.join(group.services)}", err=err)
        for part in site_plan.group_parts(index):
            if part.skipped:
                click.echo(f"  {part.service}: skipped, {part.skipped}", err=err)
            elif part.plan is None:
                click.echo(f"  {part.service}: cannot be planned: {part.error}", err=err)
            else:
                show_steps(part.service, part.plan, err)
    reasons = site_plan.refusals()
    if reasons:
        click.echo("refused, for these reasons (all of them):", err=err)
        for reason in reasons:
            click.echo(f"  - {reason}", err=err)


def show_steps(service: str, plan, err: bool) -> None:
    click.echo(f"  {service}: {plan.headline}", err=err)
    for index, step in enumerate(plan.steps, start=1):
        where = f"[{step.site}] " if step.site else ""
        mark = "  <- point of no return" if step.irreversible else ""
        click.echo(f"    {index:2}. {step.label}: {where}{step.describe}{mark}", err=err)
