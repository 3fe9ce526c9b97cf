"""Manifests of a store, built at each site with find(1) (and sha256sum for --checksum), and
their comparison: what `dcctl filesync verify` and the switchover's verify report.

Parsing and comparing are pure; `build*` run the commands through a site's transport.
What is compared: type, permissions, owner and group (unless the store says `owners: ignore`) of
every entry; size and mtime (to the
nanosecond) of files; the target of symbolic links; with checksums, the SHA-256 of files.
Directory mtimes are not compared: they change whenever an entry is added or removed, and mean
nothing for the data.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterable

from dcctl.errors import DcctlError
from dcctl.transport.base import Transport

FIELDS = 8
FORMAT = "%y\\0%s\\0%T@\\0%m\\0%U\\0%G\\0%l\\0%p\\0"
KINDS = {"f": "file", "d": "directory", "l": "symlink", "p": "fifo", "s": "socket", "b": "block device",
         "c": "char device"}


@dataclass(frozen=True)
class Entry:
    kind: str  # find's %y letter
    size: int
    mtime_ns: int
    mode: str  # octal permission bits, e.g. 644
    uid: int
    gid: int
    link: str = ""
    sha256: str | None = None


Manifest = dict[str, Entry]  # path relative to the store ("." is the store itself) -> entry


def find_argv(paths: Iterable[str] | None = None, *, store: str | None = None, maxdepth: int | None = None) -> list[str]:
    """find over a whole store, or over start points read from stdin (NUL-separated) when store is None.

    >>> find_argv(store="/srv/docs")
    ['find', '/srv/docs', '-printf', '%y\\\\0%s\\\\0%T@\\\\0%m\\\\0%U\\\\0%G\\\\0%l\\\\0%p\\\\0']
    >>> find_argv(maxdepth=1)[:5]
    ['find', '-files0-from', '-', '-maxdepth', '1']
    """
    head = ["find", store] if store is not None else ["find", "-files0-from", "-"]
    depth = ["-maxdepth", str(maxdepth)] if maxdepth is not None else []
    return head + depth + ["-printf", FORMAT]


def mtime_ns(text: str) -> int:
    """find's %T@ ("seconds.fraction", up to 10 fraction digits) -> nanoseconds, exactly.

    >>> mtime_ns("1795499365.5642025390"), mtime_ns("12"), mtime_ns("3.5")
    (1795499365564202539, 12000000000, 3500000000)
    """
    seconds, _, fraction = text.partition(".")
    return int(seconds) * 1_000_000_000 + int((fraction[:9]).ljust(9, "0"))


def relative(root: str, path: str) -> str:
    """
    >>> relative("/srv/docs", "/srv/docs"), relative("/srv/docs/", "/srv/docs/a/b")
    ('.', 'a/b')
    """
    root = root.rstrip("/")
    if path == root:
        return "."
    if not path.startswith(root + "/"):
        raise ValueError(f"{path} is not inside {root}")
    return path[len(root) + 1:]


def parse(output: str, root: str) -> Manifest:
    """find -printf FORMAT output -> manifest (names may hold any character but NUL).

    >>> out = "d\\x004096\\x001.5\\x00755\\x0026\\x0026\\x00\\x00/s\\x00f\\x003\\x002.25\\x00644\\x0026\\x0026\\x00\\x00/s/a b\\nc\\x00"
    >>> m = parse(out, "/s"); sorted(m), m["a b\\nc"].size, m["a b\\nc"].mtime_ns
    (['.', 'a b\\nc'], 3, 2250000000)
    """
    parts = output.split("\0")
    manifest: Manifest = {}
    for index in range(0, len(parts) - FIELDS + 1, FIELDS):
        kind, size, mtime, mode, uid, gid, link, path = parts[index:index + FIELDS]
        manifest[relative(root, path)] = Entry(kind, int(size), mtime_ns(mtime), mode, int(uid), int(gid), link)
    return manifest


def parse_checksums(output: str) -> dict[str, str]:
    """`sha256sum -z` output for paths "./x" -> {relative path: hex digest}.

    >>> parse_checksums("ab12  ./x y\\x00cd34  ./d/z\\x00")
    {'x y': 'ab12', 'd/z': 'cd34'}
    """
    sums = {}
    for record in output.split("\0"):
        if record:
            digest, _, path = record.partition("  ")
            sums[path[2:] if path.startswith("./") else path] = digest
    return sums


def with_checksums(manifest: Manifest, sums: dict[str, str]) -> Manifest:
    from dataclasses import replace

    return {path: replace(entry, sha256=sums.get(path)) if entry.kind == "f" else entry
            for path, entry in manifest.items()}


@dataclass(frozen=True)
class Difference:
    path: str
    what: str  # one phrase: "missing at backup", "size 3 at rabat, 5 at backup" ...

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def compare(source: Manifest, target: Manifest, source_site: str, target_site: str, *,
            owners: bool = True) -> list[Difference]:
    """Differences between the two sides, sorted by path; owners=False (a store with `owners:
    ignore`) leaves owner and group out.

    >>> a = {"x": Entry("f", 3, 1, "644", 0, 0), "y": Entry("f", 1, 1, "644", 0, 0), ".": Entry("d", 0, 0, "755", 0, 0)}
    >>> b = {"x": Entry("f", 3, 2, "600", 0, 0), "z": Entry("l", 1, 1, "777", 0, 0, "y"), ".": Entry("d", 0, 9, "755", 0, 0)}
    >>> [str(d) for d in compare(a, b, "rabat", "backup")]
    ['x: mtime 1 ns at rabat, 2 ns at backup; mode 644 at rabat, 600 at backup', 'y: missing at backup', 'z: only at backup (symlink)']
    >>> theirs = {"x": Entry("f", 3, 1, "644", 65534, 65534)}
    >>> [str(d) for d in compare(theirs, {"x": Entry("f", 3, 1, "644", 101, 104)}, "rabat", "backup")]
    ['x: owner 65534 at rabat, 101 at backup; group 65534 at rabat, 104 at backup']
    >>> compare(theirs, {"x": Entry("f", 3, 1, "644", 101, 104)}, "rabat", "backup", owners=False)
    []
    """
    out = []
    for path in sorted(set(source) | set(target)):
        a, b = source.get(path), target.get(path)
        if b is None:
            out.append(Difference(path, f"missing at {target_site}"))
        elif a is None:
            out.append(Difference(path, f"only at {target_site} ({KINDS.get(b.kind, b.kind)})"))
        else:
            what = _entry_differences(a, b, source_site, target_site, owners)
            if what:
                out.append(Difference(path, "; ".join(what)))
    return out


def _entry_differences(a: Entry, b: Entry, sa: str, sb: str, owners: bool = True) -> list[str]:
    if a.kind != b.kind:
        return [f"{KINDS.get(a.kind, a.kind)} at {sa}, {KINDS.get(b.kind, b.kind)} at {sb}"]
    checks = [("mode", a.mode, b.mode)] + ([("owner", a.uid, b.uid), ("group", a.gid, b.gid)] if owners else [])
    if a.kind == "f":
        checks = [("size", a.size, b.size), ("mtime", a.mtime_ns, b.mtime_ns)] + checks
        if a.sha256 is not None or b.sha256 is not None:
            checks.append(("sha256", (a.sha256 or "?")[:16], (b.sha256 or "?")[:16]))
    if a.kind == "l":
        checks = [("target", a.link, b.link)]
    unit = {"mtime": " ns"}
    return [f"{name} {x}{unit.get(name, '')} at {sa}, {y}{unit.get(name, '')} at {sb}" for name, x, y in checks
            if x != y]


# ---- building, through a site's transport -------------------------------------------------------

def build(transport: Transport, root: str, *, checksum: bool = False, timeout: float = 3600) -> Manifest:
    """The whole store at one site."""
    result = transport.run(find_argv(store=root), timeout=timeout, env={"LC_ALL": "C"})
    if result.rc != 0:
        raise DcctlError(f"cannot list {root} at site {transport.site}: {_tail(result.stderr)}")
    manifest = parse(result.stdout, root)
    if checksum:
        manifest = with_checksums(manifest, checksums(transport, root, timeout))
    return manifest


def build_scope(transport: Transport, root: str, paths: list[str], *, maxdepth: int | None,
                timeout: float = 600) -> Manifest:
    """Only `paths` (relative to root) and, with maxdepth 1, their immediate children; a path
    missing at this site is simply absent from the result."""
    if not paths:
        return {}
    starts = b"".join(posixpath.normpath(posixpath.join(root, p)).encode("utf-8", "surrogateescape") + b"\0"
                      for p in paths)
    result = transport.run(find_argv(maxdepth=maxdepth), input=starts, timeout=timeout, env={"LC_ALL": "C"})
    problems = [line for line in result.stderr.splitlines() if line.strip() and "No such file or directory" not in line]
    if result.rc not in (0, 1) or problems:
        raise DcctlError(f"cannot list changed entries of {root} at site {transport.site}: "
                         f"{_tail(chr(10).join(problems) or result.stderr)}")
    return parse(result.stdout, root)


def checksums(transport: Transport, root: str, timeout: float) -> dict[str, str]:
    script = 'cd "$1" && find . -type f -print0 | xargs -0 -r sha256sum -z --'
    result = transport.run(["sh", "-c", script, "sh", root], timeout=timeout, env={"LC_ALL": "C"})
    if result.rc != 0:
        raise DcctlError(f"cannot checksum {root} at site {transport.site}: {_tail(result.stderr)}")
    return parse_checksums(result.stdout)


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or "no error output"
