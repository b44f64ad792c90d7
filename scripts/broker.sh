#!/usr/bin/env bash
# Starts a local tansu broker (in-memory storage) in the background and waits until it
# accepts connections. Prints the bootstrap address on stdout.
#
#   scripts/broker.sh start [PORT]   # PORT defaults to a free one; pid in .tansu/PORT.pid
#   scripts/broker.sh stop PORT
#
# tansu listens on IPv4 only, so everything uses 127.0.0.1, never localhost.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR=.tansu
mkdir -p "$STATE_DIR"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
  local port=$1
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "tansu did not start listening on 127.0.0.1:$port; see $STATE_DIR/$port.log" >&2
  return 1
}

case "${1:-start}" in
  start)
    port=${2:-$(free_port)}
    command -v tansu >/dev/null || PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    nohup tansu broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ \
      --silent >"$STATE_DIR/$port.log" 2>&1 < /dev/null &
    echo $! >"$STATE_DIR/$port.pid"
    wait_port "$port"
    echo "127.0.0.1:$port"
    ;;
  stop)
    port=${2:?port}
    if [ -f "$STATE_DIR/$port.pid" ]; then
      kill "$(cat "$STATE_DIR/$port.pid")" 2>/dev/null || true
      rm -f "$STATE_DIR/$port.pid"
    fi
    ;;
  *)
    echo "usage: $0 start [PORT] | stop PORT" >&2
    exit 2
    ;;
esac
