#!/usr/bin/env bash
# Runs a command with a fresh tansu broker on a free port, exported to it as
# EVENTMATCHD_TEST_BROKERS; stops the broker afterwards, whatever the command's outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
addr=$(bash scripts/broker.sh start)
port=${addr##*:}
trap 'bash scripts/broker.sh stop "$port"' EXIT
echo "test broker: tansu at $addr"
EVENTMATCHD_TEST_BROKERS="$addr" "$@"
