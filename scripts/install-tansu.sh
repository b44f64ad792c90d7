#!/usr/bin/env bash
# Installs the tansu Kafka-compatible broker used by the local run and the test suite.
#
# It goes into cargo's own bin dir (~/.cargo/bin, on PATH for every cargo user), so a fresh
# clone on the same machine finds it again and the ~13 minute build happens once per machine.
# The build is skipped when the pinned version is already there.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

installed_version() {
  # `tansu --version` prints e.g. "tansu 0.6.0"; an absent or broken binary prints nothing.
  "$CARGO_BIN/tansu" --version 2>/dev/null | awk '{print $2}' || true
}

if [ -x "$CARGO_BIN/tansu" ] && [ "$(installed_version)" = "$TANSU_VERSION" ]; then
  echo "tansu $TANSU_VERSION already installed at $CARGO_BIN/tansu"
  exit 0
fi

echo "installing tansu $TANSU_VERSION into $CARGO_BIN (one-off, takes about 13 minutes on 2 cores)"
cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "${CARGO_HOME:-$HOME/.cargo}"
echo "tansu installed: $("$CARGO_BIN/tansu" --version)"
