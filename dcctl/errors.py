"""Every failure dcctl expects, each with its message, a hint and an exit code.

The CLI turns a DcctlError into one line on stderr (plus the hint) and its exit code;
anything else is a bug and gets a traceback.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # an operation ran and failed
    USAGE = 2  # bad command-line arguments (click's own code)
    CONFIG = 3  # the config file is missing or invalid
    UNREACHABLE = 4  # a site, a host or a server could not be reached
    REFUSED = 5  # dcctl refused to act; the message says why
    TOOL = 6  # an external tool (pg_ctl, initdb, ssh ...) failed
    INTERRUPTED = 130


class DcctlError(Exception):
    exit_code = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class UsageError(DcctlError):
    """A command-line argument names something that does not exist (a site, a service ...)."""

    exit_code = ExitCode.USAGE


class ConfigError(DcctlError):
    """One or more mistakes in a config file; each problem is a full sentence."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), hint=hint)


class UnreachableError(DcctlError):
    exit_code = ExitCode.UNREACHABLE


class HostKeyError(UnreachableError):
    """The SSH host key is unknown or changed: we refuse to talk to the host."""


class CommandTimeout(DcctlError):
    exit_code = ExitCode.TOOL


class ToolError(DcctlError):
    """An external command failed; its stderr travels with it."""

    exit_code = ExitCode.TOOL

    def __init__(self, message: str, *, rc: int | None = None, stderr: str = "", hint: str | None = None):
        self.rc = rc
        self.stderr = stderr
        tail = _last_lines(stderr)
        super().__init__(f"{message}: {tail}" if tail else message, hint=hint, detail=stderr or None)


class RefusedError(DcctlError):
    exit_code = ExitCode.REFUSED


class Interrupted(DcctlError):
    """Ctrl-C (SIGINT): the journal says where the operation stopped; `dcctl resume` finishes it."""

    exit_code = ExitCode.INTERRUPTED


class LabError(DcctlError):
    exit_code = ExitCode.FAILED


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:])
