//! Recipe export: a self-contained folder that runs a gradprompt experiment with Hugging Face's
//! stack (transformers + PEFT, launched with accelerate on one or many GPUs), so a run designed
//! here can be repeated at scale and its adapter brought back (`artifact::adapter`).
//!
//! The folder holds the task's splits as JSONL, `recipe.json` (everything the run used: the
//! PEFT config, the template with the answer-whitespace rule, the verbalizer, the optimiser,
//! the schedule, batch, steps, evaluation and seed), `train.py`, `requirements.txt` and a
//! README. What Python cannot draw the same way from the seed is written out as values: the
//! order of the training examples for every step (gradprompt's ChaCha12 stream, not torch's)
//! and the method's whole initial state under PEFT's module names (`init.safetensors`: the
//! soft vectors, P-Tuning's encoder, Prefix Tuning's MLP and its real-text offset), so the
//! recipe trains what the run trained from its first step on. Prefix Tuning needs two changes
//! to PEFT's `PrefixEncoder` for that, made by train.py and said in the README: its input
//! embedding is as wide as the model here (PEFT makes it as wide as the keys on a grouped-query
//! model), and the real-text key/value cache the prefix starts from is added to its output.
//!
//! Refused: AutoPrompt (PEFT has no discrete trigger search), fine-tuning and zero-shot (no
//! PEFT adapter), and soft slots away from the start (PEFT puts virtual tokens only first).

use crate::artifact::adapter::Meta;
use crate::artifact::Artifact;
use crate::methods::{Encoder, MethodKind};
use crate::model::Model;
use crate::run::RunSpec;
use crate::task::{Split, Task};
use crate::train::sampler::EpochSampler;
use anyhow::{bail, Result};
use std::path::Path;

const TRAIN_PY: &str = include_str!("recipe_train.py");
const README: &str = include_str!("recipe_README.md");
const REQUIREMENTS: &str =
    "torch>=2.1\ntransformers>=4.46\npeft>=0.13\naccelerate>=0.34\nsafetensors>=0.4\ngguf>=0.10\n";
pub const RECIPE_FILE: &str = "recipe.json";
pub const INIT_FILE: &str = "init.safetensors";

/// Why a prompt cannot become a recipe, or None if it can.
pub fn unsupported(art: &Artifact) -> Option<String> {
    match art.manifest.method {
        MethodKind::Autoprompt => Some(
            "AutoPrompt searches discrete trigger tokens with HotFlip gradients; PEFT has no such method, so there is nothing for train.py to configure".into(),
        ),
        MethodKind::FineTuning | MethodKind::ZeroShot => Some(format!(
            "{} is not a PEFT prompt-learning method (the recipe writes PromptTuningConfig, PrefixTuningConfig or PromptEncoderConfig)",
            art.manifest.method.id()
        )),
        _ => super::unsupported(art),
    }
}

/// Writes the recipe for `art` (trained on `task` with `model`) into `out`, one folder swap.
pub fn write(
    model: &Model,
    task: &Task,
    art: &Artifact,
    base_model: &str,
    out: &Path,
) -> Result<()> {
    if let Some(why) = unsupported(art) {
        bail!("cannot export a PEFT recipe: {why}");
    }
    art.check_model(model)?;
    let m = &art.manifest;
    let spec = RunSpec {
        method: m.method,
        settings: m.settings.clone(),
        template: Some(m.template.clone()),
        config: m.config.clone(),
        out: None,
    };
    // The run's own preparation, seeded as the run was: the method's initial state, then the
    // same stream's batch order.
    let prepared = crate::train::prepare(model, task, &spec)?;
    let mut rng = prepared.rng;
    let cfg = &m.config;
    let mut sampler = EpochSampler::new(prepared.train_set.len());
    let order: Vec<Vec<usize>> = (0..prepared.steps)
        .map(|_| crate::train::draw_indices(&mut sampler, &prepared.train_set, cfg, &mut rng))
        .collect();
    let n = prepared.template.soft_count();
    let c = model.config();
    let peft_config = match m.method {
        MethodKind::PromptTuning => serde_json::json!({
            "class": "PromptTuningConfig",
            "num_virtual_tokens": n,
            "token_dim": c.hidden_size,
            "num_transformer_submodules": 1,
            "num_attention_heads": c.num_attention_heads,
            "num_layers": c.num_hidden_layers,
            "prompt_tuning_init": "RANDOM",
        }),
        MethodKind::PTuning => serde_json::json!({
            "class": "PromptEncoderConfig",
            "num_virtual_tokens": n,
            "encoder_reparameterization_type": match m.settings.encoder {
                Encoder::Lstm => "LSTM",
                Encoder::Mlp => "MLP",
            },
            "encoder_hidden_size": m.settings.encoder_hidden,
            "encoder_num_layers": 2,
            "encoder_dropout": 0.0,
        }),
        _ => serde_json::json!({
            "class": "PrefixTuningConfig",
            "num_virtual_tokens": m.settings.prefix_len,
            "prefix_projection": true,
            "encoder_hidden_size": m.settings.prefix_hidden,
        }),
    };
    let mut meta = Meta::of(m, base_model)?;
    // The recipe may run on another copy of the model (a GPU, other weights' precision): its
    // adapter is checked by shape when it comes back, not by this model's fingerprint.
    meta.model = None;
    meta.result = None;
    let labels = task.labels();
    let recipe = serde_json::json!({
        "format": "gradprompt-peft-recipe/1",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "method": m.method.id(),
        "peft": peft_config,
        "task": task.spec.name,
        "kind": task.spec.kind,
        "metric": task.spec.metric,
        "labels": labels,
        "answers": labels.iter().map(|l| task.answer_text(l)).collect::<Vec<_>>(),
        "template": prepared.template.to_string(),
        "text_template": meta.text_template,
        "answer_whitespace": meta.answer_whitespace,
        "answer_whitespace_rule": meta.answer_whitespace_rule,
        "optimizer": {
            "name": "AdamW", "lr": prepared.peak_lr, "betas": [0.9, 0.999], "eps": 1e-8,
            // Decay spares biases, as gradprompt's and the Trainer's does; clipping is the
            // global norm over every trainable tensor (`torch.nn.utils.clip_grad_norm_`).
            "weight_decay": m.settings.weight_decay,
            "no_decay": ["bias"],
            "max_grad_norm": m.settings.max_grad_norm,
        },
        "schedule": {
            "name": "linear warm-up then linear decay (gradprompt's lr_at)",
            "warmup_fraction": cfg.warmup,
            "warmup_steps": ((prepared.steps as f64) * cfg.warmup).round().max(1.0) as usize,
        },
        "steps": prepared.steps,
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum.max(1),
        "eval_every": cfg.eval_every,
        "patience": cfg.patience,
        "seed": cfg.seed,
        "max_new_tokens": crate::serve::MAX_NEW_TOKENS,
        "base_model_name_or_path": base_model,
        "init": INIT_FILE,
        "order": order,
        "gradprompt_json": meta,
        "gradprompt_result": m.result,
    });
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (RECIPE_FILE.into(), serde_json::to_vec_pretty(&recipe)?),
        ("train.py".into(), TRAIN_PY.as_bytes().to_vec()),
        ("requirements.txt".into(), REQUIREMENTS.as_bytes().to_vec()),
        (
            "README.md".into(),
            README
                .replace("{TASK}", &task.spec.name)
                .replace("{METHOD}", m.method.id())
                .replace("{BASE_MODEL}", base_model)
                .into_bytes(),
        ),
    ];
    let init = prepared
        .method
        .peft_state()?
        .into_iter()
        .map(|(name, t)| Ok((name, t.contiguous()?)))
        .collect::<Result<Vec<_>>>()?;
    if init.is_empty() {
        bail!(
            "internal error: {} gave no initial state for the recipe",
            m.method.id()
        );
    }
    files.push((INIT_FILE.into(), safetensors::serialize(init, None)?));
    for split in [Split::Train, Split::Dev, Split::Test] {
        let mut text = String::new();
        for e in task.examples(split) {
            text.push_str(&serde_json::to_string(&serde_json::json!({
                "fields": e.fields,
                "answer": e.answer,
            }))?);
            text.push('\n');
        }
        files.push((format!("{}.jsonl", split.name()), text.into_bytes()));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    crate::atomic::write_folder(out, &refs)
}
