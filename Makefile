# The two commands the README gives: `make run` (local broker + daemon) and `make test`
# (every test, broker-backed ones included). Both install what they need first.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test lint run replay-sample tansu bench

# Every test. Broker-backed tests start and stop their own tansu broker on free ports.
test: tansu
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The tansu broker, built once per machine into cargo's bin dir.
tansu:
	bash scripts/install-tansu.sh

# Dry-run the committed sample through the engine.
replay-sample:
	$(CARGO) run --locked --quiet -- replay tests/data/replay_sample.ndjson
