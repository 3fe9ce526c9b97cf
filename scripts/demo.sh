#!/usr/bin/env bash
# The lab demo: two real PostgreSQL servers, rows written through the multi-host DSN,
# read back on the standby, `dcctl status`, then everything removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
dcctl=.venv/bin/dcctl
dir=${DCCTL_LAB_DIR:-/tmp/dcctl-demo}
trap '$dcctl lab down --dir "$dir"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "lab up: primary (site rabat) and standby (site backup), streaming"
eval "$($dcctl lab up --dir "$dir")"
eval "$($dcctl lab env --dir "$dir")"

step "write 1000 enrolments through the application's DSN (target_session_attrs=read-write)"
psql "$DCCTL_LAB_DSN" -v ON_ERROR_STOP=1 -q <<'SQL'
CREATE TABLE enrolment (id bigserial PRIMARY KEY, student text NOT NULL, school text NOT NULL,
                        at timestamptz NOT NULL DEFAULT now());
INSERT INTO enrolment (student, school)
SELECT 'student-' || n, 'school-' || (n % 40) FROM generate_series(1, 1000) AS n;
SQL

step "dcctl status"
$dcctl status

step "the rows on the standby (site backup, read-only)"
standby_port=$($dcctl -o json lab status --dir "$dir" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sites"]["backup"]["postgres_port"])')
sleep 0.5
psql "host=127.0.0.1 port=$standby_port dbname=massar user=massar_app passfile=$dir/pgpass" -At \
  -c "SELECT count(*) || ' enrolments replicated; read-only: ' || pg_is_in_recovery() FROM enrolment"

step "lab down"
