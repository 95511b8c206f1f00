#!/usr/bin/env python3
"""Does transformers read a gradprompt fine-tuned folder as the same model? (issue 15)

Loads the folder that `gradprompt train --method fine-tuning --out DIR` wrote with
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`, scores
the task's test split as gradprompt scores it (src/task/encode.rs: the template filled in, the
whitespace before [ANSWER] moved into every answer, no special tokens; the summed
log-probabilities of each label's answer tokens ranked), and compares:

- the test accuracy with the one in DIR/manifest.json (gradprompt's own, at training time);
- each label's probability with `gradprompt play --model DIR --prompt DIR` for the first
  `--play N` test examples (play prints three decimals);
- the token ids of every prompt with gradprompt's tokenizer, through `tokenizers` directly.

Never run in CI. Usage, from the repository root:

    /work/peer-venv/bin/python benches/peer/hf_finetuned_check.py --dir /tmp/ft-smol \
        --task sample_tasks/country-continent [--bin target/release/gradprompt] [--play 5]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402


def parse_template(t):
    """gradprompt's template language (src/task/template.rs), as (kind, value) segments."""
    out, text, i = [], "", 0
    while i < len(t):
        c = t[i]
        if t.startswith("{{", i) or t.startswith("}}", i) or t.startswith("[[", i) or t.startswith("]]", i):
            text += c
            i += 2
        elif c == "{":
            j = t.index("}", i)
            out += [("text", text)] if text else []
            text = ""
            out.append(("field", t[i + 1 : j]))
            i = j + 1
        elif c == "[":
            j = t.index("]", i)
            body = t[i + 1 : j]
            out += [("text", text)] if text else []
            text = ""
            if body == "ANSWER":
                out.append(("answer", None))
                return out
            kind, _, n = body.partition("*")
            out.append(({"P": "soft", "T": "trigger"}[kind], int(n or 1)))
            i = j + 1
        else:
            text += c
            i += 1
    raise ValueError(f"template {t!r} has no [ANSWER]")


def render(segments, fields):
    """The prompt text before [ANSWER] and the whitespace moved into the answer."""
    s = ""
    for kind, v in segments:
        if kind == "text":
            s += v
        elif kind == "field":
            s += fields[v]
        elif kind == "answer":
            break
        else:
            raise ValueError("a fine-tuned model's template has no soft or trigger slots")
    body = s.rstrip()
    return body, s[len(body) :]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("--bin", default="target/release/gradprompt")
    ap.add_argument("--play", type=int, default=5)
    a = ap.parse_args()
    d = Path(a.dir)
    manifest = json.loads((d / "manifest.json").read_text())
    task = json.loads((Path(a.task) / "task.json").read_text())
    verbalizer = task["verbalizer"]
    labels = sorted(verbalizer)
    segments = parse_template(manifest["template"])
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
    import tokenizers

    raw = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))

    rows = [json.loads(l) for l in (Path(a.task) / "test.jsonl").read_text().splitlines() if l.strip()]
    correct, probs_all, id_mismatch = 0, [], 0
    for row in rows:
        body, ws = render(segments, row)
        p_ids = tok(body, add_special_tokens=False)["input_ids"]
        id_mismatch += p_ids != raw.encode(body, add_special_tokens=False).ids
        scores = []
        for lab in labels:
            a_ids = tok(ws + verbalizer[lab], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + a_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].float(), -1)
            n = len(p_ids)
            scores.append(sum(logp[n - 1 + k, t].item() for k, t in enumerate(a_ids)))
        s = torch.tensor(scores)
        probs_all.append(torch.softmax(s, 0).tolist())
        correct += labels[int(s.argmax())] == row["label"]
    acc = correct / len(rows)

    play_diff = 0.0
    for row, probs in list(zip(rows, probs_all))[: a.play]:
        args = [a.bin, "play", "--model", str(d), "--task", a.task, "--prompt", str(d)]
        args += [f"--input={k}={v}" for k, v in row.items() if k not in ("label", "target")]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        line = next(l for l in out.splitlines() if "with the prompt" in l)
        cells = line.split(":", 1)[1].split("  ")
        theirs = {c.strip().rsplit(" ", 1)[0]: float(c.strip().rsplit(" ", 1)[1]) for c in cells if c.strip()}
        for lab, p in zip(labels, probs):
            play_diff = max(play_diff, abs(theirs[verbalizer[lab]] - p))

    print(
        json.dumps(
            {
                "folder": str(d),
                "examples": len(rows),
                "transformers_test_accuracy": acc,
                "gradprompt_test_accuracy": manifest["result"]["test_metric"],
                "prompts_tokenized_differently": id_mismatch,
                "play_examples": min(a.play, len(rows)),
                "max_abs_label_probability_difference_vs_play": play_diff,
            },
            indent=2,
        )
    )
    return 0 if abs(acc - manifest["result"]["test_metric"]) < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
