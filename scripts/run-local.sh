#!/usr/bin/env bash
# `make run`: a local broker and the daemon on config/default.toml.
#
# Installs tansu if missing (cached in cargo's bin dir), starts it on 127.0.0.1:9092 (the
# default kafka.brokers) unless something already listens there, creates the topics, and runs
# the daemon in the foreground. Ctrl-C stops the daemon (cleanly) and the broker it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=9092

bash scripts/install-tansu.sh
cargo build --locked --release --bin eventmatchd
BIN=target/release/eventmatchd

started=""
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "a broker already listens on 127.0.0.1:$PORT; using it"
else
  bash scripts/broker.sh start "$PORT" >/dev/null
  started=yes
  echo "started tansu on 127.0.0.1:$PORT (in-memory: its data is gone when it stops)"
fi
cleanup() {
  if [ -n "$started" ]; then
    bash scripts/broker.sh stop "$PORT"
  fi
}
trap cleanup EXIT

export EVENTMATCHD__KAFKA__BROKERS="127.0.0.1:$PORT"
"$BIN" create-topics
echo "eventmatchd: metrics on http://127.0.0.1:9464/metrics; see README 'Try it' to send commands and events"
"$BIN" run "$@"
