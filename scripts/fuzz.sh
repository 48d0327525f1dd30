#!/usr/bin/env bash
# Run a cargo-fuzz target for N minutes (docs/SECURITY.md lists the targets and their figures).
#   scripts/fuzz.sh [TARGET] [MINUTES]      (defaults: decode_payload 5)
# TARGET: decode_payload (codec payloads), open_envelope (signed envelopes), chain_tx (chain
# transactions and the ledger), token_shard (token shards + manifest reader).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); set
# FUZZ_INSTALL=1 to install cargo-fuzz automatically. Crashes land in fuzz/artifacts/TARGET/.
# Without them, the same fuzz body runs as a stable smoke test:
#   cargo test -p covenant-codec --test wire -- smoke_fuzz decoder_total
set -euo pipefail
target="${1:-decode_payload}"
minutes="${2:-5}"
case "$minutes" in ''|*[!0-9]*) echo "fuzz.sh: MINUTES must be a whole number, got '$minutes'" >&2; exit 2;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
if [ ! -f "fuzz_targets/$target.rs" ]; then
  echo "fuzz.sh: no target '$target'; available: $(ls fuzz_targets | sed 's/\.rs$//' | tr '\n' ' ')" >&2
  exit 2
fi
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
  echo "fuzz.sh: meanwhile: cargo test -p covenant-codec --test wire -- smoke_fuzz decoder_total" >&2
  exit 3
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  if [ "${FUZZ_INSTALL:-0}" = "1" ]; then
    cargo install cargo-fuzz --locked
  else
    echo "fuzz.sh: cargo-fuzz is not installed: cargo install cargo-fuzz --locked (or FUZZ_INSTALL=1 $0 $*)" >&2
    echo "fuzz.sh: meanwhile: cargo test -p covenant-codec --test wire -- smoke_fuzz decoder_total" >&2
    exit 3
  fi
fi
mkdir -p "corpus/$target" "artifacts/$target"
if [ -z "$(ls -A "corpus/$target")" ]; then
  # Seed an empty corpus with valid inputs so the fuzzer starts behind the magic, header and
  # signature checks.
  case "$target" in
    decode_payload) seed=(-p covenant-codec --example fuzz_seeds -- "fuzz/corpus/$target");;
    open_envelope|chain_tx) seed=(-p covenant-net --example fuzz_seeds_net -- "$target" "fuzz/corpus/$target");;
    token_shard) seed=(-p covenant-data --example fuzz_seeds_data -- "fuzz/corpus/$target");;
    *) seed=();;
  esac
  if [ "${#seed[@]}" -gt 0 ]; then
    (cd "$root" && cargo run -q --release "${seed[@]}")
  fi
fi
# A fresh target dir inside fuzz/ (sanitizer builds must not mix with the workspace's).
unset CARGO_TARGET_DIR
echo "fuzz.sh: running $target for $minutes minute(s)"
exec cargo +nightly fuzz run "$target" "corpus/$target" -- \
  -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -max_len=65536 -timeout=10
