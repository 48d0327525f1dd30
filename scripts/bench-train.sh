#!/usr/bin/env bash
# Training throughput, covenant (tch) vs PyTorch eager, back to back on this machine.
#
# usage: scripts/bench-train.sh [PRESET] [BATCH] [THREADS] [RUNS]
#   defaults: small 8 2 3. Each run = 2 warm-up steps + mean of 10 timed steps, seq = the
#   preset's max_seq_len. Runs alternate (ours, theirs, ours, ...) so drift hits both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-small}
BATCH=${2:-8}
THREADS=${3:-2}
RUNS=${4:-3}
PY=${COVENANT_PYTHON:-.venv/bin/python}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p covenant-cli
BIN="$TARGET/release/covenant"
CFG=$(mktemp)
trap 'rm -f "$CFG"' EXIT
"$BIN" model info --preset "$PRESET" --json > "$CFG"

ours=()
theirs=()
ocpu=()
tcpu=()
for i in $(seq 1 "$RUNS"); do
  o=$("$BIN" bench train --preset "$PRESET" --batch "$BATCH" --threads "$THREADS" --json)
  t=$("$PY" bench/torch_reference.py --config "$CFG" --batch "$BATCH" --threads "$THREADS" --json)
  echo "run $i covenant: $o"
  echo "run $i pytorch : $t"
  ours+=("$(echo "$o" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')")
  theirs+=("$(echo "$t" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')")
  ocpu+=("$(echo "$o" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cpu_s_per_step"])')")
  tcpu+=("$(echo "$t" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cpu_s_per_step"])')")
done
"$PY" - "${ours[*]}" "${theirs[*]}" "${ocpu[*]}" "${tcpu[*]}" <<'PYEOF'
import sys
o = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
oc = [float(x) for x in sys.argv[3].split()]
tc = [float(x) for x in sys.argv[4].split()]
mo, mt = sum(o) / len(o), sum(t) / len(t)
print(f"covenant tokens/s: {' '.join(f'{x:.0f}' for x in o)}  mean {mo:.0f}")
print(f"pytorch  tokens/s: {' '.join(f'{x:.0f}' for x in t)}  mean {mt:.0f}")
print(f"ratio covenant/pytorch (tokens/s): {mo / mt:.3f}")
print(f"CPU s/step: covenant {sum(oc) / len(oc):.3f}, pytorch {sum(tc) / len(tc):.3f} "
      f"(ratio pytorch/covenant {sum(tc) / sum(oc):.3f}; less sensitive to other load)")
PYEOF
