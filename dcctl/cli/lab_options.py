"""Options shared by the `dcctl lab` commands."""
from __future__ import annotations

import click

DEFAULT_DIR = "/tmp/dcctl-lab"
dir_option = click.option("--dir", "directory", metavar="DIR", envvar="DCCTL_LAB_DIR", default=DEFAULT_DIR,
                          show_default=True, help="Lab directory (also DCCTL_LAB_DIR).")
