"""YAML -> typed, validated Config. Every mistake is reported, each as
`FILE: key.path: expected ..., got ...`, all at once."""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from dcctl.config.recovery import recovery_plan_problems
from dcctl.config.schema import AgentConfig, Config, ServiceConfig, SiteConfig, SshTransportConfig
from dcctl.errors import ConfigError

DEFAULT_PATH = "/etc/dcctl/dcctl.yaml"


def default_config_path() -> str:
    return os.environ.get("DCCTL_CONFIG") or DEFAULT_PATH


def load_config(path: str | os.PathLike) -> Config:
    source = str(path)
    try:
        text = decode_utf8(Path(path).read_bytes(), source)
    except FileNotFoundError:
        raise ConfigError([f"{source}: config file not found"],
                          hint="pass -c PATH, set DCCTL_CONFIG, or create /etc/dcctl/dcctl.yaml "
                               "(see config/dcctl.example.yaml)") from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read config: {exc.strerror}"]) from None
    return parse_config(text, source)


def decode_utf8(data: bytes, source: str) -> str:
    """The text of a config or playbook file; a byte that is not UTF-8 is a ConfigError naming its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = data[:exc.start]
        line, column = head.count(b"\n") + 1, exc.start - head.rfind(b"\n")
        raise ConfigError([f"{source}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                           f"save the file as UTF-8"]) from None


def safe_load_yaml(text: str) -> Any:
    """yaml.safe_load, with a nesting too deep for the parser's recursion turned into a YAMLError."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None


def parse_config(text: str, source: str = "<memory>") -> Config:
    try:
        raw = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if raw is None:
        raise ConfigError([f"{source}: the file is empty; expected a mapping with a 'services' key"])
    builder = _Builder(source)
    config = builder.build(Config, raw, "")
    if not builder.problems:
        builder.problems.extend(_cross_checks(config, source))
    if builder.problems:
        raise ConfigError(builder.problems)
    return dataclasses.replace(config, source=source)


def _cross_checks(config: Config, source: str) -> list[str]:
    problems = []
    if not config.services:
        problems.append(f"{source}: services: expected at least one service, got none")
    for name, service in config.services.items():
        path = f"services.{name}.sites"
        if len(service.sites) != 2:
            problems.append(f"{source}: {path}: expected exactly two sites, got {len(service.sites)}"
                            f" ({', '.join(service.sites) or 'none'})")
        for site_name, site in service.sites.items():
            problems.extend(_site_checks(site, f"{path}.{site_name}", source))
        targets = set(service.sites) | {"old_primary", "new_primary"}
        for point, hooks in service.hooks.items():
            for index, hook in enumerate(hooks):
                if hook.site not in targets:
                    problems.append(f"{source}: services.{name}.hooks.{point}[{index}].site: expected one of "
                                    f"{', '.join(sorted(targets))}, got {json.dumps(hook.site)}")
                problems.extend(_mask_checks(hook.mask, f"services.{name}.hooks.{point}[{index}].mask", source))
        problems.extend(_pooler_checks(service, f"services.{name}.poolers", source))
        stores = sorted({store for site in service.sites.values() for store in site.file_stores})
        for store in service.filesync.stores:
            if store not in stores:
                problems.append(f"{source}: services.{name}.filesync.stores.{store}: expected a store of the "
                                f"sites' file_stores ({', '.join(stores) or 'none'}), got {json.dumps(store)}")
    problems.extend(_shared_agent_checks(config, source))
    problems.extend(recovery_plan_problems(config, source))
    return problems


def _pooler_checks(service: ServiceConfig, path: str, source: str) -> list[str]:
    problems, seen = [], set()
    for index, pooler in enumerate(service.poolers):
        where = f"{source}: {path}[{index}]"
        if pooler.name in seen:
            problems.append(f"{where}.name: expected a name no other pooler has, got {json.dumps(pooler.name)}")
        seen.add(pooler.name)
        if pooler.site is not None and pooler.site not in service.sites:
            problems.append(f"{where}.site: expected one of {', '.join(sorted(service.sites))} or nothing, got "
                            f"{json.dumps(pooler.site)}")
        if not pooler.console_only and not pooler.databases_file:
            problems.append(f"{where}.databases_file: expected a path (or console_only: true), got nothing")
        if not pooler.databases and not service.database:
            problems.append(f"{where}.databases: expected the PgBouncer database names (the service sets no "
                            f"database), got none")
    return problems


def _mask_checks(patterns: list[str], path: str, source: str) -> list[str]:
    problems = []
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            problems.append(f"{source}: {path}[{index}]: expected a regular expression, got {json.dumps(pattern)} "
                            f"({exc})")
    return problems


def _site_checks(site: SiteConfig, path: str, source: str) -> list[str]:
    problems = []
    transport = site.transport
    if isinstance(transport, SshTransportConfig) and not transport.key_file and not transport.use_agent:
        problems.append(f"{source}: {path}.transport.key_file: expected a path (or use_agent: true), got nothing")
    control = site.postgres.control
    if control.method == "systemd" and not control.unit:
        problems.append(f"{source}: {path}.postgres.control.unit: expected a systemd unit name "
                        f"when method is systemd, got nothing")
    if listen_port(site.agent.listen) is None:
        port = site.agent.listen.rpartition(":")[2]
        expected = "host:port with a port 1-65535" if port.isascii() and port.isdigit() and ":" in site.agent.listen \
            else "host:port"
        problems.append(f"{source}: {path}.agent.listen: expected {expected}, got {json.dumps(site.agent.listen)}")
    problems.extend(_agent_checks(site.agent, f"{path}.agent", source))
    return problems


def listen_port(listen: str) -> int | None:
    """The port of a host:port address, or None when it is not one (missing, not digits, out of range).

    >>> listen_port("127.0.0.1:9640"), listen_port("[::1]:9640"), listen_port("127.0.0.1:99999")
    (9640, 9640, None)
    """
    _, colon, port = listen.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit():
        return None
    return int(port) if 1 <= int(port) <= 65535 else None


BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


def _agent_checks(agent: AgentConfig, path: str, source: str) -> list[str]:
    problems = []
    for present, missing in (("tls_cert_file", "tls_key_file"), ("tls_key_file", "tls_cert_file"),
                             ("basic_auth_username", "basic_auth_password_hash"),
                             ("basic_auth_password_hash", "basic_auth_username")):
        if getattr(agent, present) and not getattr(agent, missing):
            problems.append(f"{source}: {path}.{missing}: expected a value when {present} is set, got nothing")
    hashed = agent.basic_auth_password_hash
    if hashed and not BCRYPT_HASH.fullmatch(hashed):
        problems.append(f"{source}: {path}.basic_auth_password_hash: expected a bcrypt hash ($2b$12$ followed by "
                        f"53 characters; make one with `dcctl agent hash-password`), got a string of "
                        f"{len(hashed)} characters")
    return problems


def _shared_agent_checks(config: Config, source: str) -> list[str]:
    """Sites of several services that name the same agent address are served by one agent process,
    so they must agree on its settings."""
    problems = []
    seen: dict[tuple[str, str], tuple[str, AgentConfig]] = {}
    for name, service in config.services.items():
        for site_name, site in service.sites.items():
            path = f"services.{name}.sites.{site_name}.agent"
            first = seen.setdefault((site_name, site.agent.listen), (path, site.agent))
            if first[1] != site.agent:
                problems.append(f"{source}: {path}: expected the same agent settings as {first[0]} (both listen on "
                                f"{site.agent.listen}), got different ones")
    return problems


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return json.dumps(value, ensure_ascii=False, default=str)


class _Builder:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{self.source}: {path or '(top level)'}: {text}")

    def build(self, cls: type, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping, got {_show(raw)}")
            return None
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        hints = typing.get_type_hints(cls)
        for unknown in sorted(set(map(str, raw)) - set(fields)):
            close = difflib.get_close_matches(unknown, fields, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
            self.problem(_join(path, unknown), f"unknown key{hint}")
        values = {}
        for name, fld in fields.items():
            sub = _join(path, name)
            if name not in raw:
                if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                    if _literal_value(hints[name]) is not None:
                        continue  # a tagged-union tag: the caller already checked it
                    self.problem(sub, f"required key is missing (expected {_expectation(hints[name], fld)})")
                continue
            values[name] = self.value(hints[name], fld, raw[name], sub)
        try:
            return cls(**values)
        except TypeError:
            return None  # a problem is already recorded

    def value(self, hint: Any, fld: dataclasses.Field, raw: Any, path: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            if raw is None and type(None) in args:
                return None
            if all(dataclasses.is_dataclass(o) for o in options):
                return self.tagged(options, raw, path)
            return self.value(options[0], fld, raw, path)
        if origin is dict:
            if raw is None:
                return {}
            if not isinstance(raw, dict):
                self.problem(path, f"expected a mapping of names, got {_show(raw)}")
                return {}
            return {str(k): self.value(args[1], fld, v, _join(path, str(k))) for k, v in raw.items()}
        if origin is list:
            if not isinstance(raw, list):
                self.problem(path, f"expected a list, got {_show(raw)}")
                return []
            return [self.value(args[0], fld, item, f"{path}[{index}]") for index, item in enumerate(raw)]
        if dataclasses.is_dataclass(hint):
            if isinstance(raw, list) and getattr(hint, "LIST_KEY", None):
                return self.listed(hint, raw, path)
            return self.build(hint, raw, path)
        if origin is Literal:
            if raw not in args:
                self.problem(path, f"expected one of {', '.join(map(str, args))}, got {_show(raw)}")
            return raw
        return self.scalar(hint, fld, raw, path)

    def listed(self, cls: Any, raw: list[Any], path: str) -> Any:
        """A plain list where a mapping is expected, for a class that says which key the list stands
        for (LIST_KEY; its other keys take their defaults): the items keep the list's key paths."""
        name = cls.LIST_KEY
        fld = next(f for f in dataclasses.fields(cls) if f.name == name)
        return cls(**{name: self.value(typing.get_type_hints(cls)[name], fld, raw, path)}, listed=True)

    def tagged(self, options: list[type], raw: Any, path: str) -> Any:
        tags = {_literal_value(typing.get_type_hints(o)["type"]): o for o in options}
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping with type: {' or '.join(tags)}, got {_show(raw)}")
            return None
        tag = raw.get("type")
        if not isinstance(tag, str) or tag not in tags:
            self.problem(_join(path, "type"), f"expected one of {', '.join(tags)}, got {_show(tag)}")
            return None
        return self.build(tags[tag], raw, path)

    def scalar(self, hint: Any, fld: dataclasses.Field, raw: Any, path: str) -> Any:
        expectation = _expectation(hint, fld)
        ok = {
            bool: isinstance(raw, bool),
            int: isinstance(raw, int) and not isinstance(raw, bool),
            float: isinstance(raw, (int, float)) and not isinstance(raw, bool),
            str: isinstance(raw, str) and raw != "",
        }[hint]
        if ok and hint in (int, float):
            low, high = fld.metadata.get("min"), fld.metadata.get("max")
            ok = (low is None or raw >= low) and (high is None or raw <= high)
        if not ok:
            self.problem(path, f"expected {expectation}, got {_show(raw)}")
            return raw
        return float(raw) if hint is float else raw


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _literal_value(hint: Any) -> Any:
    if typing.get_origin(hint) is Literal and len(typing.get_args(hint)) == 1:
        return typing.get_args(hint)[0]
    return None


def _expectation(hint: Any, fld: dataclasses.Field) -> str:
    if fld.metadata.get("expect"):
        return fld.metadata["expect"]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is dict:
        return "a mapping of names"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    low, high = fld.metadata.get("min"), fld.metadata.get("max")
    noun = {bool: "true or false", int: "an integer", float: "a number", str: "a non-empty string"}[hint]
    if low is not None and high is not None:
        return f"{noun} {low:g}-{high:g}" if hint is float else f"{noun} {low}-{high}"
    if low is not None:
        return f"{noun} >= {low}"
    return noun
