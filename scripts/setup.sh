#!/usr/bin/env bash
# Install everything dcctl, its demo and its tests need on a fresh Debian 12 machine:
# system packages with apt-get (as root, or through sudo), then dcctl with its test extras
# into .venv. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-client-15 postgresql-contrib rsync openssh-server openssh-client prometheus prometheus-alertmanager nftables
          chromium)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null; then as_root=(sudo -n); else
    echo "setup: missing packages: ${missing[*]}; run this script as root (or install them)" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  # The lab makes its own clusters: keep Debian from creating and starting a "main" one.
  "${as_root[@]}" mkdir -p /etc/postgresql-common
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" | "${as_root[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v 'is ignored: it is neither' >&2 || true; }
echo "setup: ready (.venv/bin/dcctl)" >&2
