#!/usr/bin/env bash
# The lab demo (make demo): the whole story on two real PostgreSQL servers, their agents and
# document stores, in under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/dcctl lab demo --dir "${DCCTL_LAB_DIR:-/tmp/dcctl-demo}"
