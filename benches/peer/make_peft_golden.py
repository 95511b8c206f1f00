#!/usr/bin/env python3
"""Builds tests/fixtures/peft_golden: adapters made by real PEFT and the logits PEFT computes
with them, for `tests/peft_golden.rs` (issue 14, "a small golden PEFT adapter fixture").

What it writes (well under 1 MB in all):

- `model/`: a tiny Llama-architecture model (2 layers, hidden 32, 4 query heads over 2
  key/value heads of width 8, so a swapped head or key/value order shows) with seeded random
  weights, stored in float16 to keep the file small, and the built-in model's tokenizer.json
  (gradprompt loads it as `--model tests/fixtures/peft_golden/model`). Its config.json is
  written here, not by transformers, so that both sides read the same plain keys.
- `prompt-tuning/`, `prefix-tuning/`, `prefix-tuning-projection/`, `p-tuning/`: each a PEFT
  adapter folder written by `save_pretrained` from a PEFT model whose trainable weights were
  given seeded random values (not PEFT's zero or text initialisation, so every number matters).
- `golden.safetensors`: two fixed token sequences (`input_ids.0`, `input_ids.1`, int64), the
  base model's logits and each adapter's logits at the text positions
  (`logits.<adapter>.<i>`, `[len, vocab]` float32), and for the prefix adapters the per-layer
  keys and values PEFT hands the model (`past_key.<adapter>.<layer>`, `past_value...`,
  `[kv_heads, n, head_dim]`).

Never run in CI (PEFT is not a dependency of gradprompt). From the repository root:

    /work/peer-venv/bin/python benches/peer/make_peft_golden.py [--out tests/fixtures/peft_golden]

Made with PEFT 0.21.2, transformers 5.24.0, torch 2.15.0 on CPU, float32 compute.
"""

import argparse
import copy
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from peft import (  # noqa: E402
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
)
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "attention_bias": False,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "head_dim": 8,
    "hidden_act": "silu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "float16",
    "vocab_size": 2048,
}



def build_model(out: Path, tokenizer_json: Path):
    """Seeded random weights, rounded to float16 (what is stored), loaded back by transformers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in CONFIG.items() if k != "torch_dtype"}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # Not all ones, so a norm left out or misplaced changes the logits.
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "embed_tokens" in name:
                # Scale 0.25: logits (tied head over a unit-RMS hidden of width 32) of spread ~1.4.
                p.copy_(0.25 * torch.randn_like(p))
            else:
                fan_in = p.shape[1]
                p.copy_(torch.randn_like(p) / fan_in**0.5)
    model_dir = out / "model"
    model_dir.mkdir(parents=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, model_dir / "model.safetensors", metadata={"format": "pt"})
    (model_dir / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    shutil.copy(tokenizer_json, model_dir / "tokenizer.json")
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False}, indent=2)
        + "\n"
    )
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return base


def adapters():
    ct = {"task_type": TaskType.CAUSAL_LM}
    return {
        "prompt-tuning": PromptTuningConfig(num_virtual_tokens=4, **ct),
        "prefix-tuning": PrefixTuningConfig(num_virtual_tokens=3, **ct),
        "prefix-tuning-projection": PrefixTuningConfig(
            num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16, **ct
        ),
        "p-tuning": PromptEncoderConfig(num_virtual_tokens=4, encoder_hidden_size=16, **ct),
    }


def text_logits(model, ids):
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids=x, attention_mask=torch.ones_like(x))
    # Prompt tuning and P-Tuning return logits for the virtual tokens too; keep the text's.
    return out.logits[0, -len(ids) :].float().contiguous()


def prefix_kv(model, n_layers):
    """The per-layer (key, value) PEFT feeds the model, each [kv_heads, n, head_dim]."""
    with torch.no_grad():
        past = model.get_prompt(batch_size=1)
    if hasattr(past, "layers"):  # a transformers Cache
        pairs = [(layer.keys, layer.values) for layer in past.layers]
    elif hasattr(past, "key_cache"):
        pairs = list(zip(past.key_cache, past.value_cache))
    else:  # the legacy tuple of (key, value) per layer
        pairs = [(k, v) for k, v in past]
    assert len(pairs) == n_layers, f"{len(pairs)} layers of past key/values"
    return [(k[0].float().contiguous(), v[0].float().contiguous()) for k, v in pairs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/peft_golden")
    ap.add_argument("--tokenizer", default="assets/models/builtin/tokenizer.json")
    a = ap.parse_args()
    out = Path(a.out)
    # Start clean, keeping the fixture's hand-written README.md.
    for old in out.glob("*") if out.exists() else []:
        if old.is_dir():
            shutil.rmtree(old)
        elif old.name != "README.md":
            old.unlink()
    base = build_model(out, Path(a.tokenizer))

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(a.tokenizer)
    # Two fixed sequences of different lengths, kept short: each text position stores a
    # vocabulary-wide row of logits per adapter.
    seqs = [
        tok.encode("Peru is in South America", add_special_tokens=False).ids[:4],
        tok.encode(" Paris is the capital", add_special_tokens=False).ids[:3],
    ]
    golden = {f"input_ids.{i}": torch.tensor(s, dtype=torch.int64) for i, s in enumerate(seqs)}
    for i, s in enumerate(seqs):
        golden[f"logits.base.{i}"] = text_logits(base, s)

    for k, (name, cfg) in enumerate(adapters().items()):
        torch.manual_seed(100 + k)
        model = get_peft_model(copy.deepcopy(base), cfg)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if p.requires_grad:
                    # Soft prompts and prefixes at the scale of the model's own activations;
                    # encoder weights scaled by fan-in so their output is of that scale too.
                    scale = 0.5 if p.dim() < 2 or "embedding" in pname else 1.0 / p.shape[1] ** 0.5
                    p.copy_(scale * torch.randn_like(p))
        model.eval()
        for i, s in enumerate(seqs):
            golden[f"logits.{name}.{i}"] = text_logits(model, s)
            # The text's logits must differ from the base model's, or the adapter tests nothing.
            assert (golden[f"logits.{name}.{i}"] - golden[f"logits.base.{i}"]).abs().max() > 0.1, name
        if isinstance(cfg, PrefixTuningConfig):
            for layer, (key, value) in enumerate(prefix_kv(model, CONFIG["num_hidden_layers"])):
                golden[f"past_key.{name}.{layer}"] = key
                golden[f"past_value.{name}.{layer}"] = value
        model.save_pretrained(out / name)
        # PEFT's generated model card is boilerplate; the fixture's README says how it was made.
        (out / name / "README.md").unlink(missing_ok=True)
        # PEFT's own reload gives the same logits (the saved tensor is what inference uses).
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(copy.deepcopy(base), out / name).eval()
        for i, s in enumerate(seqs):
            d = (text_logits(reloaded, s) - golden[f"logits.{name}.{i}"]).abs().max().item()
            assert d < 1e-5, f"{name}: PEFT's reload differs by {d}"
        print(name, "ok")
    save_file(golden, out / "golden.safetensors")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {total} bytes; sequences {seqs}")


if __name__ == "__main__":
    main()
