# Shortcuts for the scripts under .ci/ (the README's two commands call those scripts directly,
# because a fresh Debian 12 machine may not have make).
.PHONY: demo test bench services stop-services clean

demo:
	bash .ci/demo

test:
	bash .ci/test

bench:
	bash .ci/venv && bash -c 'source <(.venv/bin/drctl local up) && .venv/bin/python benchmarks/restore_benchmark.py'

services:
	bash .ci/swift/start.sh
	.venv/bin/drctl local up

stop-services:
	-.venv/bin/drctl local down
	-bash .ci/swift/stop.sh

clean: stop-services
	rm -rf .state
