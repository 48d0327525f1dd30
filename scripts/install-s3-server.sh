#!/usr/bin/env bash
# Installs the S3-compatible server that the `covenant-net` tests run against on loopback:
# `s3s-fs` (the file-system backed S3 server of the s3s project) from crates.io.
#
# Idempotent: the binary is cached OUTSIDE the clone, in
#   ${COVENANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/covenant}/s3s-fs-<version>/bin/s3s-fs
# and a second run only checks it. The path of the binary is printed on stdout (last line);
# tests read it from env COVENANT_S3_SERVER_BIN, defaulting to that same cache location.
# MinIO is not packaged in the registries this project can reach; see docs/STORAGE.md.
set -euo pipefail
VERSION="0.14.1"   # keep in step with crates/net/tests/common_s3/mod.rs
CACHE="${COVENANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/covenant}"
ROOT="$CACHE/s3s-fs-$VERSION"
BIN="$ROOT/bin/s3s-fs"
log() { printf '[install-s3-server] %s\n' "$*" >&2; }

if [ -x "$BIN" ] && "$BIN" --help >/dev/null 2>&1; then
  log "s3s-fs $VERSION already installed"
  echo "$BIN"
  exit 0
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
mkdir -p "$ROOT"
log "installing s3s-fs $VERSION from crates.io into $ROOT (first time takes a few minutes)"
start=$(date +%s)
# A build directory inside the cache lets an interrupted install resume where it stopped.
CARGO_TARGET_DIR="$CACHE/build-s3s-fs" \
  cargo install s3s-fs --version "=$VERSION" --features binary --locked --root "$ROOT" --quiet
rm -rf "$CACHE/build-s3s-fs"
[ -x "$BIN" ] || { echo "s3s-fs install finished but $BIN is missing" >&2; exit 1; }
log "installed in $(( $(date +%s) - start ))s"
echo "$BIN"
