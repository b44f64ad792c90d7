#!/usr/bin/env bash
# Issue 12 target 5: a starting daemon's catch-up of 1,000,000 notification records into an
# empty index, each run in a process of its own (a fresh heap, as at start), with and without
# the `eventmatchd-rendered` header, alternately, ROUNDS times (default 3). BENCHMARKS.md §5.
# No broker: the records are made and restored in process. ~1 minute per run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-3}"
cargo bench --locked --bench memory --no-run
bin="$(cargo bench --locked --bench memory --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "memory" and m.get("executable"):
        print(m["executable"])')"
for _ in $(seq "$rounds"); do
  for header in 1 0; do
    MEMORY_ONLY=catchup MEMORY_HEADER="$header" "$bin" --bench
  done
done
