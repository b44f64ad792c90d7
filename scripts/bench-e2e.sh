#!/usr/bin/env bash
# End-to-end benchmark through a real broker (BENCHMARKS.md §4): installs tansu if needed,
# builds the release daemon and examples/bench_e2e.rs, starts a broker on a free port, runs
# the benchmark against it and stops the broker. Extra arguments go to the benchmark, e.g.
#
#   scripts/bench-e2e.sh --events 500000 --rate 5000 --latency-secs 30
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tansu.sh
cargo build --locked --release --bin eventmatchd --example bench_e2e
brokers=$(bash scripts/broker.sh start)
port=${brokers##*:}
trap 'bash scripts/broker.sh stop "$port"' EXIT
target/release/examples/bench_e2e --brokers "$brokers" --broker-pid "$(cat ".tansu/$port.pid")" \
  --daemon target/release/eventmatchd "$@"
