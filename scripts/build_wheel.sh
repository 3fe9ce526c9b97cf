#!/usr/bin/env bash
# Build the dcctl wheel into OUTDIR (default dist/) from a clean copy of the sources, so that a
# stale build/ directory or files another checkout user is editing cannot end up in the wheel.
# The playbooks and unit templates are package data (dcctl/data/); the wheel must hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
python=${PYTHON:-.venv/bin/python}

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r pyproject.toml README.md LICENSE dcctl "$src"/
find "$src" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$out"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$out" "$src"

wheel=$(ls -t "$out"/dcctl-*-py3-none-any.whl | head -1)
listing=$("$python" -m zipfile -l "$wheel")
for required in dcctl/data/playbooks/switchover.yaml dcctl/data/systemd/dcctl-agent.service; do
  grep -q "^$required " <<<"$listing" || { echo "build_wheel: $wheel lacks $required" >&2; exit 1; }
done
echo "$wheel"
