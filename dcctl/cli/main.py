"""The dcctl command line: global options, the command groups, and the ONE place where an
expected failure becomes a line on stderr and an exit code."""
from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from dcctl.cli.context import ALL_FORMATS, Context, output_option
from dcctl.cli.version import version_option
from dcctl.errors import ConfigError, DcctlError, ExitCode

__all__ = ["Context", "cli", "main", "output_option"]  # Context and output_option: re-exported from cli/context.py


# Every command, by the module that defines it. A command's module is imported only when that
# command runs (or --help lists them all): a failover at 3 a.m. does not wait for the imports of
# `check`, `report` or the lab.
COMMANDS = {
    "status": "dcctl.cli.status_cmd:status", "check": "dcctl.cli.check_cmd:check",
    "switchover": "dcctl.cli.ops_cmd:switchover", "failover": "dcctl.cli.ops_cmd:failover",
    "rejoin": "dcctl.cli.ops_cmd:rejoin", "resume": "dcctl.cli.ops_cmd:resume",
    "history": "dcctl.cli.ops_cmd:history", "node": "dcctl.cli.ops_cmd:node", "drill": "dcctl.cli.drill_cmd:drill",
    "report": "dcctl.cli.report_cmd:report", "filesync": "dcctl.cli.filesync_cmd:filesync",
    "replication": "dcctl.cli.replication_cmd:replication", "agent": "dcctl.cli.agent_cmd:agent",
    "config": "dcctl.cli.config_cmd:config", "install-units": "dcctl.cli.install_cmd:install_units",
    "lab": "dcctl.cli.lab_cmd:lab", "site": "dcctl.cli.site_cmd:site",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", metavar="PATH", envvar="DCCTL_CONFIG",
              help="Config file [default: $DCCTL_CONFIG, then /etc/dcctl/dcctl.yaml].")
@click.option("-o", "--output", type=click.Choice(list(ALL_FORMATS)), default="table", show_default=True,
              help="Output format of commands that print results (nagios, tsv: `dcctl check` only).")
@click.option("-v", "--verbose", count=True, help="More logging; with an error, its full detail.")
@click.option("--yes", "assume_yes", is_flag=True, envvar="DCCTL_ASSUME_YES",
              help="Answer yes to confirmations (also DCCTL_ASSUME_YES=1).")
@version_option
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, output: str, verbose: int, assume_yes: bool) -> None:
    """Keep a backup datacenter ready to take over: replication, checks, switchover, failover.

    \b
    Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 config error, 4 site or server
    unreachable, 5 refused (the message says why), 6 an external tool failed, 130 interrupted.
    `dcctl check` uses the monitoring-plugin codes 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.
    """
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        # paramiko logs a traceback at ERROR for a dead peer; dcctl reports that itself in one line.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    ctx.obj = Context(config_path, output, verbose, assume_yes)


def main(argv: list[str] | None = None) -> None:
    verbose = verbosity(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=argv, prog_name="dcctl", standalone_mode=False)
    except DcctlError as exc:
        report_error(exc, verbose)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            click.echo("dcctl: interrupted (Ctrl-C)", err=True)
            sys.exit(int(ExitCode.INTERRUPTED))
        click.echo("Aborted.", err=True)
        sys.exit(int(ExitCode.FAILED))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("dcctl: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # the last resort: unforeseen, yet still one line (-vv: the traceback)
        report_unexpected(exc, verbose)
        sys.exit(int(ExitCode.FAILED))
    sys.exit(0)


def verbosity(args: list[str]) -> int:
    """How many -v the command line carries (-v, -vv, --verbose), read before click parses it."""
    count = 0
    for arg in args:
        if arg == "--":
            break
        if arg == "--verbose":
            count += 1
        elif len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def report_unexpected(exc: Exception, verbose: int) -> None:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    click.echo(f"dcctl: error: unexpected {type(exc).__name__}" + (f": {first}" if first else ""), err=True)
    click.echo("  hint: dcctl did not expect this failure; run again with -vv for the traceback and report it",
               err=True)
    if verbose == 1 and text != first:
        click.echo(text, err=True)
    if verbose >= 2:
        traceback.print_exception(exc, file=sys.stderr)


def report_error(exc: DcctlError, verbose: int) -> None:
    if isinstance(exc, ConfigError):
        click.echo("dcctl: config error:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
    else:
        click.echo(f"dcctl: error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"  hint: {exc.hint}", err=True)
    if verbose and exc.detail:
        click.echo(exc.detail.rstrip(), err=True)
    if verbose >= 2:
        traceback.print_exception(exc, file=sys.stderr)
