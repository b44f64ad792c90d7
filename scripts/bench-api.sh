#!/usr/bin/env bash
# The HTTP API's benchmark through a real broker (BENCHMARKS.md §7): installs tansu if needed,
# builds the release daemon and examples/bench_api.rs, starts a broker on a free port, runs the
# benchmark and stops the broker. Extra arguments go to the benchmark (--patches, --notifications).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tansu.sh
cargo build --locked --release --bin eventmatchd --example bench_api
brokers=$(bash scripts/broker.sh start)
port=${brokers##*:}
trap 'bash scripts/broker.sh stop "$port"' EXIT
target/release/examples/bench_api --brokers "$brokers" --daemon target/release/eventmatchd "$@"
