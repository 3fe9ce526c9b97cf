"""dcctl drill: prove the backup site can take over.

non-disruptive (default): a throwaway copy of the standby is promoted and verified, then removed.
full: a real switchover to the backup site, verification, an optional dwell, and a switchover back
(a composite operation: each switchover has its own journal, all under one drill record).
"""
from __future__ import annotations

import click

from dcctl.cli.context import Context, output_option
from dcctl.cli.ops_cmd import carry_out, plan_of, service_option


@click.command()
@service_option
@click.option("--mode", type=click.Choice(["non-disruptive", "full"]), default="non-disruptive", show_default=True)
@click.option("--cleanup", "cleanup_only", is_flag=True, help="Only remove copies left by interrupted drills.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@output_option
@click.pass_obj
def drill(cli: Context, service_name, mode, cleanup_only, dry_run) -> None:
    """Run a drill and leave a report (JSON and HTML) in the state directory."""
    if cleanup_only:
        from dcctl.ops.steps.drill import DRILL_SLOT, cleanup_leftovers

        plan = plan_of(cli, "drill", service_name, args={"mode": "cleanup"})
        try:
            cleaned = cleanup_leftovers(plan.ctx)
        finally:
            plan.ctx.close()
        removed = cleaned["leftovers_removed"]
        click.echo(f"removed {len(removed)} leftover drill cop{'y' if len(removed) == 1 else 'ies'}"
                   + "".join(f"\n  {path}" for path in removed))
        if cleaned["drill_slot_dropped"]:
            click.echo(f"dropped the replication slot {DRILL_SLOT} that a killed drill left on the standby "
                       f"(it kept WAL there)")
        return
    plan = plan_of(cli, "drill", service_name, args={"mode": mode})
    ctx = plan.ctx
    if mode == "full":
        question = f"Full drill: switch {ctx.service_name} over to {ctx.new_primary} and back?"
    else:
        question = f"Run a non-disruptive drill at {ctx.drill_site}?"
    carry_out(cli, plan, dry_run=dry_run, break_lock=False, question=question)
