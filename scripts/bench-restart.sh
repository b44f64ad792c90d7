#!/usr/bin/env bash
# Issue 18's benchmark: restart-to-first-notification after kill -9, dynamic vs static group
# membership, through a tansu broker started for the run (BENCHMARKS.md §6). Takes ~3 minutes
# (two dynamic restarts wait out librdkafka's 45 s default session timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tansu.sh
cargo build --locked --release --tests
bash scripts/with-broker.sh cargo test --locked --release --test bench_restart -- --ignored --nocapture
