# The two commands a newcomer needs: `make demo` and `make test`. Both install what is missing first.
# `make dist` builds the offline bundle (dist/dcctl-<version>-offline.tar.gz) for datacenters without internet.
.PHONY: setup demo test unit dist

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q -ra -n 2 --dist loadscope

unit: setup
	.venv/bin/python -m pytest -q tests/unit

dist: setup
	bash scripts/dist.sh
