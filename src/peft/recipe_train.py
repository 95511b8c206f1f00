#!/usr/bin/env python3
"""A gradprompt run, repeated with transformers + PEFT (written by `gradprompt export --format
peft-recipe`). Everything the run used is in recipe.json; this script only reads it.

    accelerate launch train.py --model NAME_OR_PATH [--out adapter] [--steps N]

NAME_OR_PATH is a Hub name, a Hugging Face model folder, or a .gguf file (transformers
dequantises it, as gradprompt does). The adapter is saved to --out with gradprompt.json beside
it (`gradprompt eval --prompt OUT --task ...` reads it back) and results.json in gradprompt's
result shape. One JSON line per step goes to stdout: {"step", "loss", "lr"}.

What matches gradprompt: the virtual tokens, the template rendering (the whitespace before
[ANSWER] moved into every answer; the tokenizer's BOS before the prompt text exactly when the
run's gradprompt.json says adds_bos, after PEFT's virtual tokens; a generation target followed
by the model's end-of-sequence token or the task's stop text, as its answer_end says), greedy
decoding to that end within max_new_tokens, exact match on the text before it, the loss (mean
over the answer tokens of the whole step, micro-batches included), AdamW (betas 0.9/0.999, eps
1e-8, the run's weight decay sparing biases, gradients clipped to the run's global norm),
the learning-rate schedule, the batch order of every step, the dev evaluation (every
eval_every steps and after the last, the best dev checkpoint kept, patience) and the test
evaluation. The adapter starts from the run's own initial state (init.safetensors, see
load_init).
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = Path(__file__).resolve().parent


def parse_template(t):
    """gradprompt's template language: text, {field}, [P*n] (virtual tokens), [ANSWER]."""
    out, text, i = [], "", 0
    while i < len(t):
        pair = t[i : i + 2]
        if pair in ("{{", "}}", "[[", "]]"):
            text += t[i]
            i += 2
        elif t[i] == "{":
            j = t.index("}", i)
            if text:
                out.append(("text", text))
            text = ""
            out.append(("field", t[i + 1 : j]))
            i = j + 1
        elif t[i] == "[":
            j = t.index("]", i)
            if text:
                out.append(("text", text))
            text = ""
            body = t[i + 1 : j]
            if body == "ANSWER":
                out.append(("answer", None))
                return out
            out.append(("slot", body))
            i = j + 1
        else:
            text += t[i]
            i += 1
    raise ValueError(f"template {t!r} has no [ANSWER]")


def first_id(x):
    return x[0] if isinstance(x, (list, tuple)) else x


class Renderer:
    """An example as gradprompt encodes it: the prompt ids and each answer candidate's ids."""

    def __init__(self, recipe, tok, config):
        self.segments = [s for s in parse_template(recipe["template"]) if s[0] != "slot"]
        self.tok = tok
        self.kind = recipe["kind"]
        self.labels = recipe["labels"]
        self.answers = recipe["answers"]
        gp = recipe["gradprompt_json"]
        # Recipes written before these were recorded: no BOS, nothing after the answer.
        self.end = gp.get("answer_end", "unmarked")
        self.max_new_tokens = gp.get("max_new_tokens") or recipe["max_new_tokens"]
        # gradprompt's BOS is what the tokenizer itself puts before a text; its EOS is the
        # model config's eos_token_id (SmolLM2: <|im_end|>, 2).
        self.bos = []
        if gp.get("adds_bos", False):
            plain = self.ids("a")
            full = tok("a", add_special_tokens=True)["input_ids"]
            self.bos = full[: len(full) - len(plain)] if full[len(full) - len(plain) :] == plain else []
            if not self.bos and tok.bos_token_id is not None:
                self.bos = [tok.bos_token_id]
            if not self.bos:
                raise SystemExit("gradprompt.json says adds_bos, but this tokenizer has no BOS token")
        eos = first_id(getattr(config, "eos_token_id", None))
        self.eos = eos if eos is not None else tok.eos_token_id
        if self.kind == "generation" and self.end == "eos" and self.eos is None:
            raise SystemExit("the run ends answers with the model's end-of-sequence token, and this model declares none")

    def ids(self, text):
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def target(self, ws, answer):
        """A generation target: the answer, then its end (EOS, or the stop text tokenized with it)."""
        if isinstance(self.end, dict) and "stop" in self.end:
            return self.ids(ws + answer + self.end["stop"])
        if self.end == "eos":
            return self.ids(ws + answer) + [self.eos]
        return self.ids(ws + answer)

    def answer_before_stop(self, new_ids):
        """The decoded answer: the text before the end-of-sequence token or the stop text, trimmed."""
        new_ids = list(new_ids)
        if self.eos is not None and self.eos in new_ids:
            new_ids = new_ids[: new_ids.index(self.eos)]
        text = self.tok.decode(new_ids)
        if isinstance(self.end, dict) and self.end.get("stop"):
            text = text.split(self.end["stop"])[0]
        return text.strip()

    def encode(self, row):
        s = ""
        for kind, v in self.segments:
            if kind == "text":
                s += v
            elif kind == "field":
                s += row["fields"][v]
            else:
                break
        body = s.rstrip()
        ws = s[len(body) :]
        prompt = self.bos + self.ids(body)
        if self.kind == "classification":
            cands = [self.ids(ws + a) for a in self.answers]
            gold = self.labels.index(row["answer"])
        else:
            cands, gold = [self.target(ws, row["answer"])], 0
        return {"prompt": prompt, "candidates": cands, "gold": gold, "answer": row["answer"]}


def read_split(name):
    return [json.loads(l) for l in (HERE / f"{name}.jsonl").read_text().splitlines() if l.strip()]


def lr_at(step, total, peak, warmup):
    """gradprompt's schedule (src/train/schedule.rs)."""
    warm = max(round(total * warmup), 1.0)
    s = step + 1.0
    if s <= warm:
        return peak * s / warm
    return peak * max((total - s + 1.0) / (total - warm + 1.0), 0.0)


def batch_tensors(rows, pad_id, device):
    """Right-padded ids, attention mask and labels (-100 except the answer tokens)."""
    width = max(len(p) + len(a) for p, a in rows)
    ids, mask, labels = [], [], []
    for p, a in rows:
        seq = p + a
        pad = width - len(seq)
        ids.append(seq + [pad_id] * pad)
        mask.append([1] * len(seq) + [0] * pad)
        labels.append([-100] * len(p) + a + [-100] * pad)
    t = lambda x: torch.tensor(x, device=device)  # noqa: E731
    return t(ids), t(mask), t(labels)


def load_base(name):
    if name.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(name))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        tok = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    return tok, model


def peft_config(recipe):
    p = dict(recipe["peft"])
    cls = p.pop("class")
    common = {"task_type": TaskType.CAUSAL_LM}
    if cls == "PromptTuningConfig":
        return PromptTuningConfig(num_virtual_tokens=p["num_virtual_tokens"], prompt_tuning_init="RANDOM", **common)
    if cls == "PromptEncoderConfig":
        return PromptEncoderConfig(
            num_virtual_tokens=p["num_virtual_tokens"],
            encoder_reparameterization_type=p["encoder_reparameterization_type"],
            encoder_hidden_size=p["encoder_hidden_size"],
            encoder_num_layers=p["encoder_num_layers"],
            encoder_dropout=p["encoder_dropout"],
            **common,
        )
    return PrefixTuningConfig(
        num_virtual_tokens=p["num_virtual_tokens"],
        prefix_projection=p["prefix_projection"],
        encoder_hidden_size=p["encoder_hidden_size"],
        **common,
    )


OFFSET = "gradprompt.real_text_offset"


def load_init(encoder, init):
    """Starts PEFT's prompt encoder from the gradprompt run's initial state, every tensor under
    PEFT's own name (strict: a name or shape that does not fit stops the recipe here).

    Prefix Tuning needs two changes to PEFT's PrefixEncoder to be gradprompt's: the embedding
    feeding the projection is as wide as the model (PEFT sizes it to the keys' width on a
    grouped-query model), so the embedding and the first linear layer are rebuilt at the saved
    shapes; and the prefix starts from the keys/values of real text, a constant added to the
    projection's output (its last layer starts at zero), kept as a buffer that moves with the
    model. The adapter saved at the end is the encoder's output, offset included."""
    offset = init.pop(OFFSET, None)
    if hasattr(encoder, "transform") and "transform.0.weight" in init:
        emb, w1 = init["embedding.weight"], init["transform.0.weight"]
        if tuple(encoder.embedding.weight.shape) != tuple(emb.shape):
            encoder.embedding = torch.nn.Embedding(emb.shape[0], emb.shape[1])
            encoder.transform[0] = torch.nn.Linear(w1.shape[1], w1.shape[0])
    encoder.load_state_dict(init, strict=True)
    if offset is not None:
        encoder.register_buffer("gradprompt_offset", offset, persistent=False)
        # PEFT calls the encoder on the virtual-token indices [batch, n]: each position gets
        # its own row of the offset.
        encoder.register_forward_hook(lambda mod, args, out: out + mod.gradprompt_offset[args[0]])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hub name, model folder or .gguf file")
    ap.add_argument("--out", default="adapter")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (a quick check); the schedule stays the recipe's")
    ap.add_argument("--no-eval", action="store_true", help="skip the dev and test evaluations")
    a = ap.parse_args()
    recipe = json.loads((HERE / "recipe.json").read_text())
    torch.manual_seed(recipe["seed"])
    acc = Accelerator()
    tok, base = load_base(a.model)
    base.config.use_cache = False
    model = get_peft_model(base, peft_config(recipe))
    if recipe.get("init"):
        load_init(model.prompt_encoder["default"], load_file(str(HERE / recipe["init"])))
    render = Renderer(recipe, tok, base.config)
    train = [render.encode(r) for r in read_split("train")]
    dev = [render.encode(r) for r in read_split("dev")]
    test = [render.encode(r) for r in read_split("test")]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    o = recipe["optimizer"]
    # Recipes written before weight decay and clipping were settings had neither.
    # gradprompt spares every tensor whose name contains "bias" (the LSTM's bias_ih_l0 too).
    spared = lambda n: any(s in n for s in o.get("no_decay", []))
    groups = [
        {"params": [p for n, p in named if not spared(n)], "weight_decay": o["weight_decay"]},
        {"params": [p for n, p in named if spared(n)], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
    max_grad_norm = o.get("max_grad_norm", 0.0)
    model, opt = acc.prepare(model, opt)
    device = acc.device
    # Data parallel: each process takes every world-th row of a step (and of an evaluation); the
    # gradients are averaged across processes by accelerate's DDP wrapper, so each process's
    # loss is scaled by the number of processes to keep the step's gradient that of the whole
    # step's answer tokens (one process or many train the same prompt, up to rounding).
    world, rank = acc.num_processes, acc.process_index

    def evaluate(examples):
        model.eval()
        correct = 0
        with torch.no_grad():
            for e in examples[rank::world]:
                if recipe["kind"] == "classification":
                    rows = [(e["prompt"], c) for c in e["candidates"]]
                    ids, mask, labels = batch_tensors(rows, pad_id, device)
                    logits = model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1] :]
                    logp = torch.log_softmax(logits.float(), -1)
                    scores = []
                    for r, (p, c) in enumerate(rows):
                        scores.append(sum(logp[r, len(p) - 1 + k, t].item() for k, t in enumerate(c)))
                    correct += max(range(len(scores)), key=lambda i: (scores[i], -i)) == e["gold"]
                else:
                    ids = torch.tensor([e["prompt"]], device=device)
                    out = acc.unwrap_model(model).generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=render.max_new_tokens,
                        do_sample=False,
                        eos_token_id=render.eos,
                    )
                    text = render.answer_before_stop(out[0, ids.shape[1] :].tolist())
                    correct += text == e["answer"].strip()
        model.train()
        correct = acc.reduce(torch.tensor(float(correct), device=device), reduction="sum").item()
        return correct / max(len(examples), 1)

    steps = recipe["steps"]
    run_steps = min(a.steps or steps, steps)
    started = time.time()
    best = (evaluate(dev) if not a.no_eval else float("nan"), 0)
    best_state = {k: v.detach().clone() for k, v in acc.unwrap_model(model).named_parameters() if v.requires_grad}
    without_gain, losses = 0, []
    model.train()
    for step in range(run_steps):
        rows = [train[i] for i in recipe["order"][step]]
        total = sum(len(r["candidates"][r["gold"]]) for r in rows)
        lr = lr_at(step, steps, o["lr"], recipe["schedule"]["warmup_fraction"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        step_loss = 0.0
        bs = recipe["batch_size"]
        mine = rows[rank::world]
        # Every process takes the same number of micro-batches (DDP meets them in each backward);
        # one left without rows runs a row with weight 0.
        chunks = math.ceil(math.ceil(len(rows) / world) / bs)
        for k in range(chunks):
            part = mine[k * bs : (k + 1) * bs]
            chunk = [(r["prompt"], r["candidates"][r["gold"]]) for r in (part or rows[:1])]
            ids, mask, labels = batch_tensors(chunk, pad_id, device)
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            n = sum(len(c) for _, c in chunk) if part else 0
            # transformers averages over this micro-batch's answer tokens; gradprompt over the step's.
            loss = out.loss * n / total
            acc.backward(loss * world)
            step_loss += loss.item()
        step_loss = acc.reduce(torch.tensor(step_loss, device=device), reduction="sum").item()
        if max_grad_norm > 0:
            acc.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        losses.append(step_loss)
        if acc.is_main_process:
            print(json.dumps({"step": step + 1, "loss": step_loss, "lr": lr}), flush=True)
        done = step + 1
        if not a.no_eval and (done % max(recipe["eval_every"], 1) == 0 or done == run_steps):
            score = evaluate(dev)
            if score > best[0]:
                best, without_gain = (score, done), 0
                best_state = {k: v.detach().clone() for k, v in acc.unwrap_model(model).named_parameters() if v.requires_grad}
            else:
                without_gain += 1
                if recipe["patience"] and without_gain >= recipe["patience"]:
                    break
    unwrapped = acc.unwrap_model(model)
    with torch.no_grad():
        for k, v in unwrapped.named_parameters():
            if k in best_state:
                v.copy_(best_state[k])
    test_metric = evaluate(test) if not a.no_eval else float("nan")
    if acc.is_main_process:
        out = Path(a.out)
        unwrapped.save_pretrained(out)
        trainable = sum(p.numel() for p in params)
        result = {
            "method": recipe["method"],
            "task": recipe["task"],
            "model": a.model,
            "template": recipe["template"],
            "steps": len(losses),
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
            "metric": recipe["metric"],
            "dev_metric": best[0],
            "test_metric": test_metric,
            "best_step": best[1],
            "trainable_params": trainable,
            "model_params": sum(p.numel() for p in unwrapped.base_model.parameters()) - trainable,
            "artifact_bytes": (out / "adapter_model.safetensors").stat().st_size,
            "wall_seconds": time.time() - started,
            "artifact": str(out),
            "readable": None,
            "stopped_early": len(losses) < steps,
        }
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}
        (out / "results.json").write_text(json.dumps(clean, indent=2))
        meta = dict(recipe["gradprompt_json"])
        meta["base_model_name_or_path"] = a.model
        meta["result"] = {**result, "dev_metric": clean["dev_metric"] or 0.0, "test_metric": clean["test_metric"] or 0.0}
        (out / "gradprompt.json").write_text(json.dumps(meta, indent=2))
        print(json.dumps({"saved": str(out), "dev_metric": clean["dev_metric"], "test_metric": clean["test_metric"]}), flush=True)


if __name__ == "__main__":
    main()
