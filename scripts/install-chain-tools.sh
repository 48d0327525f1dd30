#!/usr/bin/env bash
# Installs the EVM tools the chain contract is built and tested with, from the npm registry:
#   - solc-js (npm `solc`, the Solidity compiler as WASM: no native download), and
#   - anvil (npm `@foundry-rs/anvil-linux-amd64`, a local EVM node: one static binary).
#
# Idempotent: both are cached OUTSIDE the clone, in
#   ${COVENANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/covenant}/evm-tools-<solc>-<anvil>/
# and a second run only checks them. Prints two lines on stdout:
#   COVENANT_SOLCJS=<path of solcjs>
#   COVENANT_ANVIL_BIN=<path of anvil>
# which tests and `covenant` read from the environment, defaulting to that same cache location.
set -euo pipefail
SOLC_VERSION="0.8.37"    # keep in step with contracts/README.md and crates/evm/src/tools.rs
ANVIL_VERSION="1.7.1"    # keep in step with crates/evm/src/tools.rs
CACHE="${COVENANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/covenant}"
ROOT="$CACHE/evm-tools-$SOLC_VERSION-$ANVIL_VERSION"
SOLCJS="$ROOT/node_modules/solc/solc.js"
ANVIL="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
log() { printf '[install-chain-tools] %s\n' "$*" >&2; }

ready() {
  [ -x "$ANVIL" ] && "$ANVIL" --version >/dev/null 2>&1 && [ -f "$SOLCJS" ] &&
    node "$SOLCJS" --version >/dev/null 2>&1
}

if ! ready; then
  command -v npm >/dev/null || { echo "npm not found: install Node.js (20 or later) first" >&2; exit 1; }
  case "$(uname -sm)" in
    "Linux x86_64") ;;
    *) echo "anvil is installed for Linux x86_64 only; this is $(uname -sm)" >&2; exit 1 ;;
  esac
  mkdir -p "$ROOT"
  log "installing solc $SOLC_VERSION and anvil $ANVIL_VERSION from the npm registry into $ROOT"
  start=$(date +%s)
  # --ignore-scripts: anvil's wrapper package would try to download a binary it does not need.
  npm install --prefix "$ROOT" --no-audit --no-fund --ignore-scripts --loglevel=error \
    "solc@$SOLC_VERSION" "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" >&2
  chmod +x "$ANVIL"
  ready || { echo "the install finished but solc or anvil does not run (see $ROOT)" >&2; exit 1; }
  log "installed in $(( $(date +%s) - start ))s"
else
  log "solc $SOLC_VERSION and anvil $ANVIL_VERSION already installed"
fi
echo "COVENANT_SOLCJS=$SOLCJS"
echo "COVENANT_ANVIL_BIN=$ANVIL"
