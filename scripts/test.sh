#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set everything up (idempotent), install the
# S3-compatible test server (cached outside the clone), then run every test in release mode.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
"$ROOT/scripts/setup.sh"
if [ -x "$ROOT/scripts/install-s3-server.sh" ]; then
  COVENANT_S3_SERVER_BIN="$("$ROOT/scripts/install-s3-server.sh")"
  export COVENANT_S3_SERVER_BIN
fi
# solc-js and anvil (the chain contract's compiler and a real EVM node), cached outside the clone.
CHAIN_TOOLS="$("$ROOT/scripts/install-chain-tools.sh")"
while IFS='=' read -r name value; do
  case "$name" in COVENANT_SOLCJS|COVENANT_ANVIL_BIN) export "$name=$value" ;; esac
done <<< "$CHAIN_TOOLS"
# tmux and headless Chromium for the screen tests (covenant watch, covenant report).
"$ROOT/scripts/install-test-tools.sh"
echo "[test] set-up done in $(( $(date +%s) - START ))s" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --locked --workspace --no-fail-fast --test-threads 2 "$@"
else
  cargo test --release --locked --workspace --no-fail-fast "$@" -- --test-threads 2
fi
echo "[test] total $(( $(date +%s) - START ))s" >&2
