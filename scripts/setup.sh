#!/usr/bin/env bash
# Install everything dcctl, its demo and its tests need on a fresh Debian 12 machine:
# system packages with apt-get (as root, or through sudo), then dcctl with its test extras
# into .venv. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-client-15 postgresql-contrib rsync openssh-server openssh-client prometheus prometheus-alertmanager nftables
          chromium pgbouncer)
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
  # Nor its own pgbouncer: the lab runs one per site (dcctl lab up --poolers). Masked before the
  # install under systemd; elsewhere a policy-rc.d that refuses only pgbouncer, removed after.
  policy_added=""
  if [[ " ${missing[*]} " == *" pgbouncer "* ]]; then
    if [ -d /run/systemd/system ]; then
      "${as_root[@]}" systemctl mask -q pgbouncer.service
    elif [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n[ "$1" = pgbouncer ] && exit 101\nexit 0\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
      "${as_root[@]}" chmod 755 /usr/sbin/policy-rc.d
      policy_added=1
    fi
  fi
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy_added" ]; then "${as_root[@]}" rm -f /usr/sbin/policy-rc.d; fi
fi
# A packaged pgbouncer already running (installed before this script knew better): stopped, not started at boot.
if [ -f /run/postgresql/pgbouncer.pid ] && command -v pgbouncer >/dev/null; then
  if [ -d /run/systemd/system ]; then
    "${as_root[@]}" systemctl disable -q --now pgbouncer.service || true
  else
    pid=$(cat /run/postgresql/pgbouncer.pid)
    grep -qa pgbouncer "/proc/$pid/cmdline" 2>/dev/null && "${as_root[@]}" kill -INT "$pid" || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v 'is ignored: it is neither' >&2 || true; }
echo "setup: ready (.venv/bin/dcctl)" >&2
