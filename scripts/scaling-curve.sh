#!/usr/bin/env bash
# The real-process scaling curve of docs/SCALING.md: `covenant demo` (tiny, 2 validators, one
# libtorch thread a node, H = 10) with 2, 4, 8 and 16 miners, then `covenant scenario` with 6
# honest miners and 2 adversaries (25 % of the miners) against the 6 alone. Each run records the
# validation loss after every window (windows.csv); scripts/scaling-curve.py reads them at a
# fixed number of windows and at a fixed token budget and draws docs/scaling/curve.svg.
#
# Windows are long enough for every node's work on 2 cores (4 s a miner, at least 16 s); runs
# that train the same number of windows train the same tokens per miner. Takes about 45 minutes
# on 2 cores. Usage: scripts/scaling-curve.sh [OUT]   (default runs/scaling)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/runs/scaling}"
BIN="$ROOT/target/release/covenant"
H=10
mkdir -p "$OUT"
secs() { local s=$((4 * $1)); echo $((s < 16 ? 16 : s)); }
# The token budget is 64 miner-windows: 2 miners need 32 windows, 4 need 16; 8 and 16 miners
# reach it in the 10 windows run for the fixed-window point.
for n in 2 4 8 16; do
  w=$((64 / n)); w=$((w < 10 ? 10 : w))
  echo "== $n miners, $w windows of $(secs "$n") s"
  "$BIN" demo --miners "$n" --validators 2 --windows "$w" --window-secs "$(secs "$n")" \
    --inner-steps "$H" --out "$OUT/miners-$n" > "$OUT/miners-$n.log" 2>&1
  tail -4 "$OUT/miners-$n.log"
done
echo "== 6 honest + noise, wrong-data, 10 windows of $(secs 8) s"
"$BIN" scenario --honest 6 --adversaries noise,wrong-data --validators 2 --windows 10 \
  --window-secs "$(secs 8)" --grace-secs 8 --inner-steps "$H" --out "$OUT/adversaries" \
  > "$OUT/adversaries.log" 2>&1
tail -8 "$OUT/adversaries.log"
python3 "$ROOT/scripts/scaling-curve.py" "$OUT"
