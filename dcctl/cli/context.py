"""What every command module shares: the global options (Context, on click's ctx.obj) and the
subcommand -o/--output option. It sits below every command module, and cli/main.py above them all,
so no command module needs to import main."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

if TYPE_CHECKING:
    from dcctl.config.schema import Config

Command = TypeVar("Command", bound=Callable[..., Any])


class Context:
    def __init__(self, config_path: str | None, output: str, verbose: int, assume_yes: bool):
        self.config_path = config_path
        self.output = output
        self.verbose = verbose
        self.assume_yes = assume_yes
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from dcctl.config import default_config_path, load_config

            self._config = load_config(self.config_path or default_config_path())
        return self._config


FORMATS = ("table", "json")  # what every command that prints results can print
ALL_FORMATS = (*FORMATS, "nagios", "tsv")  # the global -o accepts them all; each command checks its own


def output_option(command: Command | None = None, *, formats: tuple[str, ...] = FORMATS) -> Any:
    """-o/--output on a subcommand too, so `dcctl status -o json` works as well as `dcctl -o json status`.

    `formats`: what this command prints; a format given to the global -o that the command does not
    print is refused as a usage error (exit 2) naming the ones it does.
    """
    if command is None:
        return lambda decorated: output_option(decorated, formats=formats)

    def store(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        shared = ctx.find_object(Context)
        if shared is None:
            return value
        chosen = value or shared.output
        if chosen not in formats:
            raise click.BadParameter(f"{chosen!r}: `{ctx.command_path}` prints {', '.join(formats)}", ctx=ctx,
                                     param=param)
        shared.output = chosen
        return value

    return click.option("-o", "--output", type=click.Choice(list(formats)), default=None, expose_value=False,
                        callback=store, help=f"Output format: {', '.join(formats)} [default: table].")(command)
