#!/usr/bin/env bash
# make dist: dist/dcctl-<version>-offline.tar.gz, for datacenters without internet access. It holds
# the dcctl wheel, the wheel of every dependency for this platform and this Python (so build it on
# a machine like the targets: same architecture, same Python minor version), SHA256SUMS, and
# install.sh (scripts/install.sh), which installs from those wheels only; and config/ and docs/,
# which the operator guide uses.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=$(realpath -m "${DIST_DIR:-dist}")

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
wheel=$(PYTHON="$python" bash scripts/build_wheel.sh "$stage/wheels")
version=$(basename "$wheel" | cut -d- -f2)
name=dcctl-$version-offline
bundle=$stage/$name
mkdir "$bundle"
mv "$stage/wheels" "$bundle/wheels"
# Every dependency, as a wheel: downloaded where PyPI has one for this platform, built otherwise.
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$bundle/wheels" \
  "$bundle/wheels/$(basename "$wheel")" 2>&1 | { grep -v 'is ignored: it is neither' >&2 || true; }

cp scripts/install.sh "$bundle/install.sh"
chmod 755 "$bundle/install.sh"
# What the operator guide refers to: the example config, Prometheus rules, dashboard, and the docs.
cp -r LICENSE README.md config docs "$bundle/"
echo "$version" >"$bundle/VERSION"
"$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' >"$bundle/PYTHON_VERSION"
(cd "$bundle" && sha256sum wheels/*.whl >SHA256SUMS)

mkdir -p "$out"
tar -C "$stage" -czf "$out/$name.tar.gz.tmp" "$name"
mv "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
echo "$out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1), $(ls "$bundle/wheels" | wc -l) wheels, Python $(cat "$bundle/PYTHON_VERSION"))" >&2
echo "$out/$name.tar.gz"
