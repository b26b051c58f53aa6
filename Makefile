# Two entry points (see README): `make demo` runs the main job, `make test` runs every test.
# Both install what they need first (apt as root, a venv for Python), so they work on a fresh
# Debian 12 machine with only Python 3.11, pip and apt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STATE  ?= $(CURDIR)/.state

.PHONY: setup system-deps venv services stop-services demo test bench clean

setup: system-deps venv

system-deps:
	bash .ci/install-system-deps

venv: $(BIN)/drctl

$(BIN)/drctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

services: setup
	bash .ci/swift/start.sh
	$(BIN)/drctl local up --state-dir $(STATE)/local

stop-services:
	-$(BIN)/drctl local down --state-dir $(STATE)/local
	-bash .ci/swift/stop.sh

demo: setup
	bash .ci/demo

test: services
	$(BIN)/python -m pytest -q

bench: services
	$(BIN)/python -m drctl.bench_restore

clean: stop-services
	rm -rf $(STATE)
