#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's `prometheus` package, 2.42) for the monitoring
# tests (tests/prometheus.rs), once per machine. Never fails the build: when the package
# cannot be installed the tests say so and skip.
set -uo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  echo "prometheus already installed: $(prometheus --version 2>&1 | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "prometheus not installed (needs root and apt-get); the monitoring tests will skip"
  exit 0
fi
echo "installing Debian's prometheus package (promtool included)"
export DEBIAN_FRONTEND=noninteractive
# Keep the package's service from starting: only the binaries are wanted.
policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
[ "$had_policy" = 0 ] && printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
if ! apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || echo "installing prometheus failed; the monitoring tests will skip"
fi
[ "$had_policy" = 0 ] && rm -f "$policy"
command -v promtool >/dev/null && echo "prometheus installed: $(prometheus --version 2>&1 | head -1)"
exit 0
