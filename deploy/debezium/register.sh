#!/bin/sh
# Registers the Debezium connector for authentik's event table with Kafka Connect's REST API
# once Connect answers. Used by docker-compose's `cdc` profile. An existing connector of the
# same name is left as it is (409): delete it (`curl -X DELETE $CONNECT/connectors/NAME`) to
# register a changed file.
set -eu
CONNECT="${CONNECT:-http://connect:8083}"
FILE="${FILE:-/deploy/debezium/authentik-events.json}"
tries=0
until curl -fsS "$CONNECT/connectors" >/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "Kafka Connect at $CONNECT did not answer in 120 s" >&2
    exit 1
  fi
  sleep 2
done
status="$(curl -sS -o /tmp/answer -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' --data @"$FILE" "$CONNECT/connectors")"
case "$status" in
  201) echo "connector registered" ;;
  409) echo "connector already registered; left as it is" ;;
  *) echo "registering the connector failed ($status):" >&2; cat /tmp/answer >&2; exit 1 ;;
esac
