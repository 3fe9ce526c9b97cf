"""The pgbench database the benchmarks load into a lab's application database."""
from __future__ import annotations

import time

from dcctl.lab.lab import Lab
from dcctl.lab.layout import APP_DATABASE, PRIMARY_SITE, SUPERUSER
from dcctl.pg.tools import conninfo


def load_pgbench(lab: Lab, scale: int) -> float:
    dsn = conninfo(host="127.0.0.1", port=lab.spec.pg_port(PRIMARY_SITE), user=SUPERUSER, dbname=APP_DATABASE,
                   passfile=str(lab.spec.pgpass))
    started = time.perf_counter()
    lab.local.run([f"{lab.spec.bin_dir}/pgbench", "-i", "-q", "-s", str(scale), dsn], timeout=3600).check("pgbench -i")
    return time.perf_counter() - started
