"""Free space of a site's volumes: one `df` at the site, parsed here (pure)."""
from __future__ import annotations

import posixpath

from dcctl.config.schema import SiteConfig
from dcctl.model import DiskUsage


def site_volumes(site: SiteConfig) -> list[tuple[str, str]]:
    """(label, path) of every volume a site depends on: data, WAL, each file store."""
    volumes = [("data", site.postgres.data_dir), ("wal", posixpath.join(site.postgres.data_dir, "pg_wal"))]
    volumes += [(f"store:{name}", path) for name, path in sorted(site.file_stores.items())]
    return volumes


def df_argv(paths: list[str]) -> list[str]:
    return ["df", "-B1", "--output=file,size,avail", *paths]


def parse_df(output: str, stderr: str, volumes: list[tuple[str, str]]) -> tuple[DiskUsage, ...]:
    """
    >>> out = "File 1B-blocks Avail\\n/pg 1000 250\\n/pg/pg_wal 1000 250\\n"
    >>> [(d.label, d.free_ratio) for d in parse_df(out, "", [("data", "/pg"), ("wal", "/pg/pg_wal")])]
    [('data', 0.25), ('wal', 0.25)]
    >>> parse_df("File 1B-blocks Avail\\n", "df: /x: No such file or directory", [("data", "/x")])[0].error
    '/x: No such file or directory'
    """
    found = {}
    for line in output.splitlines()[1:]:
        for _, path in volumes:
            if line.startswith(path + " "):
                size, avail = line[len(path):].split()[:2]
                found[path] = (int(size), int(avail))
    usages = []
    for label, path in volumes:
        if path in found:
            usages.append(DiskUsage(label, path, *found[path]))
        else:
            why = next((line.split(": ", 1)[1] for line in stderr.splitlines() if f"{path}:" in line), "not reported")
            usages.append(DiskUsage(label, path, None, None, error=why))
    return tuple(usages)
