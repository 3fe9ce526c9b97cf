#!/bin/sh
# Install dcctl from this offline bundle (made by `make dist`), with no network access: a venv at
# $DCCTL_PREFIX (default /opt/dcctl) filled from the bundled wheels only (pip --no-index), and a
# symlink $DCCTL_LINK (default /usr/local/bin/dcctl) to its dcctl. Run it as root. Running it again
# with a newer bundle upgrades in place.
set -eu
umask 022 # the units run dcctl as an unprivileged user, who must be able to read the venv
here=$(cd "$(dirname "$0")" && pwd)
prefix=${DCCTL_PREFIX:-/opt/dcctl}
link=${DCCTL_LINK:-/usr/local/bin/dcctl}
python=${DCCTL_PYTHON:-python3}
version=$(cat "$here/VERSION")
wanted=$(cat "$here/PYTHON_VERSION")

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

command -v "$python" >/dev/null 2>&1 ||
  fail "$python not found: install Python $wanted (Debian 12: apt-get install python3 python3-venv), or set DCCTL_PYTHON"
found=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$found" = "$wanted" ] ||
  fail "the bundled wheels are for Python $wanted, $python is $found: set DCCTL_PYTHON to a python$wanted, or run make dist on a machine like this one"
"$python" -c 'import ensurepip, venv' 2>/dev/null ||
  fail "$python cannot create a venv (Debian: apt-get install python3-venv)"
(cd "$here" && sha256sum --quiet --check SHA256SUMS) ||
  fail "the bundle is damaged: its wheels do not match SHA256SUMS"

"$python" -m venv "$prefix"
# No index, and no pip config file of this machine: only the bundle's wheels can be installed.
PIP_CONFIG_FILE=/dev/null "$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
  --find-links "$here/wheels" "dcctl==$version"
mkdir -p "$(dirname "$link")"
ln -sfn "$prefix/bin/dcctl" "$link"

echo "installed dcctl $version in $prefix ($link -> $prefix/bin/dcctl)"
echo "next: write /etc/dcctl/dcctl.yaml (docs/operator-guide.md), run 'dcctl config check', then"
echo "      'dcctl install-units --site SITE' (SITE: this machine's site in the config)"
