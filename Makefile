# The two commands the README gives: `make run` (local broker + daemon) and `make test`
# (every test, broker-backed ones included). Both install what they need first.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test lint run replay-sample tansu prometheus bench

# A local tansu broker on 127.0.0.1:9092 (installed and started if needed), the topics, and
# the daemon on config/default.toml, in the foreground. Ctrl-C stops both.
run:
	bash scripts/run-local.sh

# Every test. The broker-backed ones use a tansu broker started on a free port for this run
# (scripts/with-broker.sh) and stopped after it.
test: tansu prometheus
	$(CARGO) build --locked --all-targets
	bash scripts/with-broker.sh $(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Prometheus and promtool (Debian's package) for the monitoring tests; they skip, saying so,
# where it cannot be installed.
prometheus:
	bash scripts/install-prometheus.sh

# The tansu broker, built once per machine into cargo's bin dir.
tansu:
	bash scripts/install-tansu.sh

# The benchmarks (BENCHMARKS.md): criterion benches, then the end-to-end one and the restart
# one through a local tansu broker. Not part of `make test`.
bench:
	$(CARGO) bench --locked
	bash scripts/bench-e2e.sh
	bash scripts/bench-restart.sh
	bash scripts/bench-api.sh

# Dry-run the committed sample through the engine.
replay-sample:
	$(CARGO) run --locked --quiet -- replay tests/data/replay_sample.ndjson
