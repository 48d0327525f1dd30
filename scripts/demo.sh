#!/usr/bin/env bash
# The main job, from a fresh clone: set everything up (idempotent), then run `covenant demo`.
# Extra arguments go to `covenant demo` (see `target/release/covenant demo --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/target/release/covenant" demo "$@"
