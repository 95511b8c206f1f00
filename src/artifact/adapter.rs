//! A Hugging Face PEFT prompt-learning adapter folder (`adapter_config.json` +
//! `adapter_model.safetensors`) read as a prompt, so it works wherever a gradprompt prompt
//! folder does (eval, play, inspect, predict, the workbench's import). Also `gradprompt.json`,
//! the file gradprompt writes beside an adapter it exports (and the exported recipe's train.py
//! writes beside the adapter it trains): the template, verbalizer and answer-whitespace rule
//! the adapter was trained with, which PEFT's own files cannot say.
//!
//! In every case PEFT saves one tensor, `prompt_embeddings`, and in inference mode uses it as
//! it is: the soft prompt `[n, d_model]` (Prompt Tuning; P-Tuning's encoder output, whether it
//! was saved while training or in inference mode) or the flat key/value prefix
//! `[n, layers * 2 * kv_heads * head_dim]` (Prefix Tuning, with or without projection: the
//! projection's output is what is saved). So importing never needs the encoder.
//!
//! This sits in the artifact module, below `peft` (which writes these files), because
//! `Artifact::load` must recognise an adapter folder for every reader of prompts.

use super::{Artifact, Manifest, ModelId, FORMAT};
use crate::methods::tensor_names::PROMPT_EMBEDDINGS;
use crate::methods::{Encoder, MethodKind, MethodSettings};
use crate::run::{RunResult, TrainConfig};
use crate::task::{AnswerEnd, Metric, Segment, Task, TaskKind, Template};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// gradprompt's description of how an adapter was made, beside PEFT's two files.
pub const META_FILE: &str = "gradprompt.json";
pub const META_FORMAT: &str = "gradprompt-peft/1";
/// The one answer-whitespace rule gradprompt (and the recipe's train.py) renders with.
pub const ANSWER_WHITESPACE: &str = "moved-into-answer";
pub const ANSWER_WHITESPACE_RULE: &str = "The template is filled in up to [ANSWER]; the whitespace right before [ANSWER] is cut from the prompt and put in front of every answer candidate (\" Paris\", as BPE tokenizers see a word after a space). Prompt and answer are tokenized separately, without special tokens; the tokenizer's BOS goes before the prompt text exactly when adds_bos is true. PEFT's virtual tokens (or prefix) come before the prompt, BOS included: [virtual tokens][BOS] text. A generation answer is followed by the model's end-of-sequence token (answer_end \"eos\") or by the stop text, tokenized with the answer (answer_end {\"stop\": text}); the loss covers it, and greedy decoding stops there within max_new_tokens.";

/// `gradprompt.json`: what PEFT's files leave out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub method: MethodKind,
    pub task: String,
    pub task_kind: TaskKind,
    pub metric: Metric,
    pub fields: Vec<String>,
    pub verbalizer: Option<BTreeMap<String, String>>,
    /// In gradprompt's template language, the virtual tokens as a leading `[P*n]`.
    pub template: String,
    /// The same without the virtual tokens: the text a PEFT user renders.
    pub text_template: String,
    pub answer_whitespace: String,
    pub answer_whitespace_rule: String,
    pub base_model_name_or_path: String,
    /// The exact model it was trained on, where gradprompt knows it (an export of a gradprompt
    /// run): then it is refused on any other model, as a prompt folder is.
    #[serde(default)]
    pub model: Option<ModelId>,
    #[serde(default)]
    pub settings: Option<MethodSettings>,
    #[serde(default)]
    pub config: Option<TrainConfig>,
    #[serde(default)]
    pub result: Option<RunResult>,
    /// As `Manifest::adds_bos`; a `gradprompt.json` written before it was recorded means false
    /// (neither gradprompt nor its recipe's train.py added BOS then).
    #[serde(default = "super::no_bos")]
    pub adds_bos: Option<bool>,
    /// As `Manifest::answer_end` (older files: unmarked).
    #[serde(default)]
    pub answer_end: AnswerEnd,
    /// As `Manifest::max_new_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
}

impl Meta {
    /// The description of a gradprompt prompt exported for `base_model`.
    pub fn of(m: &Manifest, base_model: &str) -> Result<Meta> {
        let template = Template::parse(&m.template)
            .map_err(|e| anyhow!("the prompt's template does not parse: {e}"))?;
        let text = Template {
            segments: template
                .segments
                .iter()
                .filter(|s| !matches!(s, Segment::Soft(_)))
                .cloned()
                .collect(),
        };
        Ok(Meta {
            format: META_FORMAT.into(),
            method: m.method,
            task: m.task.clone(),
            task_kind: m.task_kind,
            metric: m.result.metric,
            fields: m.fields.clone(),
            verbalizer: m.verbalizer.clone(),
            template: m.template.clone(),
            text_template: text.to_string(),
            answer_whitespace: ANSWER_WHITESPACE.into(),
            answer_whitespace_rule: ANSWER_WHITESPACE_RULE.into(),
            base_model_name_or_path: base_model.into(),
            model: Some(m.model.clone()),
            settings: Some(m.settings.clone()),
            config: Some(m.config.clone()),
            result: Some(m.result.clone()),
            adds_bos: m.adds_bos,
            answer_end: m.answer_end.clone(),
            max_new_tokens: m.max_new_tokens,
        })
    }
}

/// Whether `dir` is a PEFT adapter folder rather than a gradprompt prompt folder.
pub fn is_adapter(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && !dir.join(super::MANIFEST_FILE).is_file()
}

/// The fields of `adapter_config.json` that decide how the tensor is read.
#[derive(Deserialize)]
struct PeftConfig {
    peft_type: String,
    #[serde(default)]
    task_type: Option<String>,
    num_virtual_tokens: usize,
    #[serde(default)]
    token_dim: Option<usize>,
    #[serde(default)]
    num_layers: Option<usize>,
    #[serde(default)]
    num_attention_heads: Option<usize>,
    #[serde(default)]
    num_transformer_submodules: Option<usize>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    encoder_reparameterization_type: Option<String>,
    #[serde(default)]
    encoder_hidden_size: Option<usize>,
    #[serde(default)]
    prefix_projection: Option<bool>,
}

/// Reads the adapter in `dir` as a prompt. The task and template come from `gradprompt.json`
/// when it is there; otherwise from `task` (its name, kind, fields and verbalizer) and
/// `template` (else the task's own template, with the virtual tokens in front). `template`
/// given beside a `gradprompt.json` that says another one is refused.
pub fn load(dir: &Path, task: Option<&Task>, template: Option<&str>) -> Result<Artifact> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let cfg: PeftConfig = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{}: not a PEFT adapter config", cfg_path.display()))?;
    let method = match cfg.peft_type.as_str() {
        "PROMPT_TUNING" => MethodKind::PromptTuning,
        "P_TUNING" => MethodKind::PTuning,
        "PREFIX_TUNING" => MethodKind::PrefixTuning,
        other => bail!(
            "{}: peft_type \"{other}\" is not a prompt-learning adapter gradprompt can use (PROMPT_TUNING, P_TUNING, PREFIX_TUNING)",
            cfg_path.display()
        ),
    };
    if let Some(t) = cfg.task_type.as_deref() {
        if t != "CAUSAL_LM" {
            bail!(
                "{}: task_type \"{t}\": gradprompt runs decoder-only models (CAUSAL_LM)",
                cfg_path.display()
            );
        }
    }
    if cfg.num_transformer_submodules.unwrap_or(1) != 1 {
        bail!(
            "{}: num_transformer_submodules is {}; a causal LM adapter has 1",
            cfg_path.display(),
            cfg.num_transformer_submodules.unwrap_or(1)
        );
    }
    let tensor = read_prompt_embeddings(dir)?;
    let (rows, width) = tensor.dims2().map_err(|_| {
        anyhow!(
            "{}: \"{PROMPT_EMBEDDINGS}\" must be 2-D, found shape {:?}",
            dir.join(WEIGHTS_FILE).display(),
            tensor.dims()
        )
    })?;
    if rows != cfg.num_virtual_tokens {
        bail!(
            "{}: \"{PROMPT_EMBEDDINGS}\" has {rows} rows but {CONFIG_FILE} says num_virtual_tokens {}; the two files do not belong together",
            dir.join(WEIGHTS_FILE).display(),
            cfg.num_virtual_tokens
        );
    }

    // PEFT sizes a grouped-query model's prefix by its key/value heads (token_dim =
    // kv_heads * head_dim, see PEFT #1901); a soft prompt is as wide as the embeddings.
    let expected = match (method, cfg.token_dim, cfg.num_layers) {
        (MethodKind::PrefixTuning, Some(td), Some(l)) => Some(l * 2 * td),
        (MethodKind::PrefixTuning, _, _) => None,
        (_, td, _) => td,
    };
    if let Some(w) = expected.filter(|w| *w != width) {
        bail!(
            "{}: \"{PROMPT_EMBEDDINGS}\" is {width} wide but {CONFIG_FILE} (token_dim, num_layers) says {w}; the two files do not belong together",
            dir.join(WEIGHTS_FILE).display()
        );
    }

    let meta_path = dir.join(META_FILE);
    let meta: Option<Meta> = if meta_path.is_file() {
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("{}: cannot read", meta_path.display()))?;
        let meta: Meta =
            serde_json::from_str(text.trim_start_matches('\u{feff}')).with_context(|| {
                format!(
                    "{}: not a gradprompt adapter description",
                    meta_path.display()
                )
            })?;
        if meta.format != META_FORMAT {
            bail!(
                "{}: format \"{}\" is not {META_FORMAT}",
                meta_path.display(),
                meta.format
            );
        }
        if meta.method != method {
            bail!(
                "{}: says {} but {CONFIG_FILE} holds a {} adapter",
                meta_path.display(),
                meta.method.id(),
                cfg.peft_type
            );
        }
        Some(meta)
    } else {
        None
    };

    let with_tokens = |t: &str, what: &str| -> Result<String> {
        let parsed = Template::parse(t).map_err(|e| anyhow!("{what}: {e}"))?;
        Ok(match method {
            MethodKind::PromptTuning | MethodKind::PTuning if parsed.soft_count() == 0 => {
                parsed.with_soft_prefix(rows).to_string()
            }
            _ => parsed.to_string(),
        })
    };
    let template = match (&meta, template, task) {
        (Some(meta), Some(given), _) => {
            let given = with_tokens(given, "--template")?;
            if given != meta.template {
                bail!(
                    "--template {given:?} differs from the template {:?} that {} says the adapter was trained with; leave out --template",
                    meta.template,
                    meta_path.display()
                );
            }
            given
        }
        (Some(meta), None, _) => meta.template.clone(),
        (None, Some(given), _) => with_tokens(given, "--template")?,
        (None, None, Some(task)) => with_tokens(&task.spec.template, &format!("{}: template", task.dir.display()))?,
        (None, None, None) => bail!(
            "{}: a PEFT adapter without {META_FILE}: which template it was trained with is unknown; give its task (eval and play: --task; predict: --adapter-task) and, unless it is the task's own template with the virtual tokens in front, --template",
            dir.display()
        ),
    };

    let base = cfg.base_model_name_or_path.clone().unwrap_or_default();
    let model = match meta.as_ref().and_then(|m| m.model.clone()) {
        Some(id) => id,
        // Unknown weights: checked by shape only (`Artifact::check_model`).
        None => ModelId {
            spec: base.clone(),
            fingerprint: String::new(),
            hidden_size: match method {
                MethodKind::PrefixTuning => 0,
                _ => width,
            },
            layers: cfg.num_layers.unwrap_or(0),
            heads: cfg.num_attention_heads.unwrap_or(0),
            // A prefix's heads are the key/value heads (token_dim = kv_heads * head_dim, see
            // above); the export writes them back from here. Left at 0, exporting an imported
            // prefix adapter wrote token_dim 0 (tests/peft_golden.rs).
            kv_heads: match (method, cfg.num_attention_heads) {
                (MethodKind::PrefixTuning, Some(h)) => h,
                _ => 0,
            },
            head_dim: match (method, cfg.token_dim, cfg.num_attention_heads) {
                (MethodKind::PrefixTuning, Some(td), Some(h)) if h > 0 => td / h,
                _ => 0,
            },
            vocab_size: 0,
        },
    };
    let mut settings = meta
        .as_ref()
        .and_then(|m| m.settings.clone())
        .unwrap_or_default();
    settings.num_virtual_tokens = rows;
    if method == MethodKind::PrefixTuning {
        settings.prefix_len = rows;
        if let (Some(true), Some(h)) = (cfg.prefix_projection, cfg.encoder_hidden_size) {
            settings.prefix_hidden = h;
        }
    }
    if method == MethodKind::PTuning {
        if let Some(e) = &cfg.encoder_reparameterization_type {
            settings.encoder = if e == "LSTM" {
                Encoder::Lstm
            } else {
                Encoder::Mlp
            };
        }
        if let Some(h) = cfg.encoder_hidden_size {
            settings.encoder_hidden = h;
        }
    }
    let (name, kind, metric, fields, verbalizer) = match (&meta, task) {
        (Some(m), _) => (
            m.task.clone(),
            m.task_kind,
            m.metric,
            m.fields.clone(),
            m.verbalizer.clone(),
        ),
        (None, Some(t)) => (
            t.spec.name.clone(),
            t.spec.kind,
            t.spec.metric,
            t.spec.fields.clone(),
            t.spec.verbalizer.clone(),
        ),
        // Only the vectors can be read (inspect); `check_task` refuses it on any task.
        (None, None) => (
            String::new(),
            TaskKind::Classification,
            Metric::Accuracy,
            Vec::new(),
            None,
        ),
    };
    let result = meta
        .as_ref()
        .and_then(|m| m.result.clone())
        .unwrap_or_else(|| RunResult {
            method: method.id().into(),
            task: name.clone(),
            model: base.clone(),
            template: template.clone(),
            steps: 0,
            train_loss_first: None,
            train_loss_last: None,
            metric,
            // Not measured here: PEFT's files carry no scores.
            dev_metric: f64::NAN,
            test_metric: f64::NAN,
            best_step: 0,
            trainable_params: 0,
            model_params: 0,
            artifact_bytes: 0,
            wall_seconds: 0.0,
            artifact: Some(dir.display().to_string()),
            readable: None,
            stopped_early: false,
            label_tokens: None,
        });
    let manifest = Manifest {
        format: FORMAT.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        method,
        task: name,
        task_kind: kind,
        template,
        fields,
        verbalizer,
        model,
        settings,
        config: meta
            .as_ref()
            .and_then(|m| m.config.clone())
            .unwrap_or_default(),
        result,
        // Without gradprompt.json: PEFT trained it with its tokenizer's own BOS setting (the one
        // it meets here) and the task's answers as the task ends them.
        adds_bos: meta.as_ref().and_then(|m| m.adds_bos),
        answer_end: match (&meta, task) {
            (Some(m), _) => m.answer_end.clone(),
            (None, Some(t)) => t.answer_end(),
            (None, None) => AnswerEnd::Unmarked,
        },
        max_new_tokens: meta.as_ref().and_then(|m| m.max_new_tokens),
        label_token_ids: None,
    };
    let art = Artifact {
        manifest,
        tensors: vec![(PROMPT_EMBEDDINGS.to_string(), tensor)],
        carried: None,
    };
    art.check_contents()
        .with_context(|| format!("{}", dir.display()))?;
    Ok(art)
}

fn read_prompt_embeddings(dir: &Path) -> Result<Tensor> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        if dir.join("adapter_model.bin").is_file() {
            bail!(
                "{}: the adapter is a PyTorch pickle (adapter_model.bin); gradprompt reads safetensors only: re-save it with save_pretrained(..., safe_serialization=True)",
                dir.display()
            );
        }
        bail!(
            "{}: no {WEIGHTS_FILE} in this adapter folder",
            dir.display()
        );
    }
    let map = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
        .map_err(|e| anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    let t = map.get(PROMPT_EMBEDDINGS).with_context(|| {
        format!(
            "{}: no tensor \"{PROMPT_EMBEDDINGS}\" (found: {})",
            path.display(),
            map.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok(t.to_dtype(candle_core::DType::F32)?)
}
