# The two commands a newcomer needs: `make demo` and `make test`. Both install what is missing first.
.PHONY: setup demo test unit

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q -ra

unit: setup
	.venv/bin/python -m pytest -q tests/unit
