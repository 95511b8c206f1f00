//! A trained prompt on disk: `prompt.safetensors` (the learned tensors, after any
//! reparameterisation is folded away) and `manifest.json` (method, template, verbalizer, task,
//! model fingerprint, metrics, settings, tool version, whether a BOS began the text, and how
//! generated answers end). Self-describing, so `gradprompt eval`
//! can reload it and reproduce the test metric, and refuse it on a different model.
//!
//! A fine-tuned model is saved as a Hugging Face model folder instead (`config.json`,
//! `model.safetensors`, `tokenizer.json`, with `manifest.json` beside them), so transformers
//! loads it and `--model DIR` reads it back as a model; `eval` takes it either way (on the base
//! model it carries its own weights; as `--model DIR` it is the model). Folders written before
//! that (the weights in `prompt.safetensors`) still load.

pub mod adapter;

use crate::methods::prefix_tuning::kv_from_flat;
use crate::methods::tensor_names::{PROMPT_EMBEDDINGS, TRIGGER_IDS};
use crate::methods::{MethodKind, MethodSettings, Prompt};
use crate::model::{hf, Config, Llm, Model};
use crate::run::{RunResult, RunSpec, TrainConfig};
use crate::task::{AnswerEnd, Task, TaskKind, Template};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const FORMAT: &str = "gradprompt-prompt/1";
pub const TENSORS_FILE: &str = "prompt.safetensors";
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelId {
    pub spec: String,
    pub fingerprint: String,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tool_version: String,
    pub method: MethodKind,
    pub task: String,
    pub task_kind: TaskKind,
    pub template: String,
    pub fields: Vec<String>,
    pub verbalizer: Option<BTreeMap<String, String>>,
    pub model: ModelId,
    pub settings: MethodSettings,
    pub config: TrainConfig,
    pub result: RunResult,
    /// Whether the prompt text began with the tokenizer's BOS (after any leading soft vectors):
    /// true exactly when the model's tokenizer adds one (`task::bos_tokens`). A manifest
    /// written before this was recorded says nothing and means false: gradprompt never added
    /// BOS then. None: unknown (a PEFT adapter without `gradprompt.json`, which PEFT trained
    /// with its tokenizer's own setting, the one it meets here).
    #[serde(default = "no_bos")]
    pub adds_bos: Option<bool>,
    /// How a generated answer ended in training and ends in decoding: the model's EOS or the
    /// task's stop text. Unmarked for classification, and in a manifest written before this was
    /// recorded (its generation prompt was trained without an end; it is now decoded to EOS
    /// within the task's budget, like every other).
    #[serde(default)]
    pub answer_end: AnswerEnd,
    /// The decoding budget of a generation task (its `max_new_tokens`); None for
    /// classification and in older manifests (the task's own budget then applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// AutoPrompt's found label tokens (`--search-labels`), one list per label in the task's
    /// label order; they replace the verbalizer's answers wherever the prompt is scored (see
    /// [`Manifest::use_label_tokens`]). Ids, not text: a found token such as "og" does not
    /// come back through the template's leading space. Absent from older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_token_ids: Option<Vec<Vec<u32>>>,
}

/// What a manifest written before BOS was recorded means: gradprompt added none.
pub(crate) fn no_bos() -> Option<bool> {
    Some(false)
}

/// Whether `tok` puts a BOS before text (see `task::bos_tokens`).
pub fn tokenizer_adds_bos(tok: &tokenizers::Tokenizer) -> Result<bool> {
    Ok(!crate::task::bos_tokens(tok)?.is_empty())
}

impl Manifest {
    /// Puts the prompt's found label tokens in place of the verbalizer's answers in encoded
    /// rows, as the run that trained it scored them; a prompt without them leaves the rows
    /// as they are. Every path that scores a saved prompt calls this after encoding.
    pub fn use_label_tokens(&self, sets: &mut [&mut Vec<crate::task::Encoded>]) -> Result<()> {
        let Some(found) = &self.label_token_ids else {
            return Ok(());
        };
        let vocab = self.model.vocab_size;
        if let Some(bad) = found.iter().flatten().find(|&&id| id as usize >= vocab) {
            bail!("manifest.json, label_token_ids: token {bad} is outside the model's vocabulary of {vocab}; the file was edited or damaged (remove label_token_ids to score with the task's verbalizer)");
        }
        crate::methods::label_search::use_as_verbalizer(found, sets)
            .context("the prompt's label tokens (manifest.json, label_token_ids)")
    }

    /// Refuses a prompt trained for another task: the task's name, kind and verbalizer must be
    /// the ones it was trained with (a prompt scored on another task reported a metric the task
    /// does not use, with exit 0). `allow_other` lets an experiment through on purpose.
    pub fn check_task(&self, task: &Task, dir: &Path, allow_other: bool) -> Result<()> {
        if allow_other {
            return Ok(());
        }
        let why = if self.task_kind != task.spec.kind {
            format!(
                "it was trained on a {} task, {:?} is a {} task",
                self.task_kind.name(),
                task.spec.name,
                task.spec.kind.name()
            )
        } else if self.task != task.spec.name {
            format!(
                "it was trained on task {:?}, not {:?}",
                self.task, task.spec.name
            )
        } else if self.verbalizer != task.spec.verbalizer {
            format!(
                "task {:?}'s verbalizer is not the one it was trained with",
                task.spec.name
            )
        } else if self.answer_end != AnswerEnd::Unmarked && self.answer_end != task.answer_end() {
            format!(
                "it was trained with answers ending in {}, task {:?}'s answers end in {}",
                end_name(&self.answer_end),
                task.spec.name,
                end_name(&task.answer_end())
            )
        } else {
            return Ok(());
        };
        bail!(
            "{}: {why}; pass --allow-other-task to use it anyway",
            dir.display()
        )
    }
}

/// An answer end in words, for errors.
fn end_name(end: &AnswerEnd) -> String {
    match end {
        AnswerEnd::Eos => "the model's end-of-sequence token".into(),
        AnswerEnd::Stop(s) => format!("the stop text {s:?}"),
        AnswerEnd::Unmarked => "nothing".into(),
    }
}

pub struct Artifact {
    pub manifest: Manifest,
    pub tensors: Vec<(String, Tensor)>,
    /// A fine-tuned model's config and tokenizer, which make its folder a Hugging Face model
    /// folder; None for prompts and for fine-tuned folders in the older layout.
    pub carried: Option<CarriedModel>,
}

/// What a fine-tuned model needs besides its weights to stand alone as a model folder.
pub struct CarriedModel {
    pub config: Config,
    pub tokenizer: tokenizers::Tokenizer,
}

impl Artifact {
    pub fn new(
        model: &Model,
        task: &Task,
        template: &Template,
        spec: &RunSpec,
        result: &RunResult,
        tensors: Vec<(String, Tensor)>,
    ) -> Self {
        let c = model.config();
        Artifact {
            manifest: Manifest {
                format: FORMAT.into(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                method: spec.method,
                task: task.spec.name.clone(),
                task_kind: task.spec.kind,
                template: template.to_string(),
                fields: task.spec.fields.clone(),
                verbalizer: task.spec.verbalizer.clone(),
                model: ModelId {
                    spec: model.spec.clone(),
                    fingerprint: model.fingerprint.clone(),
                    hidden_size: c.hidden_size,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                    vocab_size: c.vocab_size,
                },
                settings: spec.settings.clone(),
                config: spec.config.clone(),
                result: result.clone(),
                // Tokenizing a one-letter probe cannot fail on a tokenizer that encoded the
                // whole task already; were it to, "no BOS" is what was trained.
                adds_bos: Some(tokenizer_adds_bos(&model.tokenizer).unwrap_or(false)),
                answer_end: task.answer_end(),
                max_new_tokens: (task.spec.kind == TaskKind::Generation)
                    .then(|| task.max_new_tokens()),
                label_token_ids: None,
            },
            tensors,
            carried: (spec.method == MethodKind::FineTuning).then(|| CarriedModel {
                config: c.clone(),
                tokenizer: model.tokenizer.clone(),
            }),
        }
    }

    fn serialize(&self) -> Result<Vec<u8>> {
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        Ok(safetensors::serialize(
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(meta),
        )?)
    }

    /// Bytes stored per task: the size of the tensors file (the manifest is a few kilobytes of
    /// text on top, the same for every method; a fine-tuned model's tokenizer and config too).
    pub fn stored_bytes(&self) -> Result<usize> {
        if self.carried.is_some() {
            return Ok(hf::weights_file(&self.tensors)?.len());
        }
        Ok(self.serialize()?.len())
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        // One folder swap, so a kill between the tensors and the manifest cannot leave one
        // prompt's tensors under another's manifest.
        let manifest = serde_json::to_string_pretty(&self.manifest)?;
        if let Some(carried) = &self.carried {
            let mut files = hf::folder_files(&carried.config, &self.tensors, &carried.tokenizer)?;
            files.push((MANIFEST_FILE, manifest.into_bytes()));
            let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            return crate::atomic::write_folder(dir, &files);
        }
        let tensors = self.serialize()?;
        crate::atomic::write_folder(
            dir,
            &[
                (TENSORS_FILE, tensors.as_slice()),
                (MANIFEST_FILE, manifest.as_bytes()),
            ],
        )
    }

    /// A prompt folder, a fine-tuned model folder, or a PEFT adapter folder (which must carry
    /// `gradprompt.json`; see [`Artifact::load_for`] for one that does not).
    pub fn load(dir: &Path) -> Result<Artifact> {
        Self::load_for(dir, None, None)
    }

    /// As [`Artifact::load`]; a PEFT adapter without `gradprompt.json` takes its task from
    /// `task` and its template from `template` (else the task's own, virtual tokens in front).
    /// `template` is only for adapters: a prompt folder records its own.
    pub fn load_for(dir: &Path, task: Option<&Task>, template: Option<&str>) -> Result<Artifact> {
        if adapter::is_adapter(dir) {
            return adapter::load(dir, task, template);
        }
        if template.is_some() && dir.join(MANIFEST_FILE).is_file() {
            bail!(
                "{}: --template is for PEFT adapter folders; this gradprompt prompt folder records the template it was trained with",
                dir.display()
            );
        }
        Self::load_prompt_folder(dir)
    }

    fn load_prompt_folder(dir: &Path) -> Result<Artifact> {
        let mf = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&mf).with_context(|| match crate::atomic::left_aside(dir) {
            Some(old) => format!(
                "{}: cannot read: a save into {} was cut short; its previous version is in {}, rename it back to {}",
                mf.display(),
                dir.display(),
                old.display(),
                dir.display()
            ),
            None => format!(
                "{}: cannot read (is this a gradprompt prompt folder?)",
                mf.display()
            ),
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a gradprompt manifest", mf.display()))?;
        if manifest.format != FORMAT {
            bail!(
                "{}: format \"{}\" is not {FORMAT}",
                mf.display(),
                manifest.format
            );
        }
        let (map, carried) =
            if manifest.method == MethodKind::FineTuning && dir.join(hf::WEIGHTS_FILE).is_file() {
                let m = hf::load(dir, &candle_core::Device::Cpu)?;
                let carried = CarriedModel {
                    config: m.config,
                    tokenizer: m.tokenizer,
                };
                (m.tensors, Some(carried))
            } else {
                let st = dir.join(TENSORS_FILE);
                let map = candle_core::safetensors::load(&st, &candle_core::Device::Cpu)
                    .map_err(|e| anyhow!("{}: not a valid safetensors file ({e})", st.display()))?;
                (map, None)
            };
        let mut tensors: Vec<(String, Tensor)> = map.into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let art = Artifact {
            manifest,
            tensors,
            carried,
        };
        art.check_contents()
            .with_context(|| format!("{}", dir.display()))?;
        Ok(art)
    }

    /// The tensors must be the ones the manifest describes: as many soft vectors or trigger
    /// ids as its template has slots, as many prefix positions as its settings say, and no
    /// NaN or infinite values (a folder mixing two saves, or a diverged prompt, evaluated with
    /// exit 0 before this check).
    fn check_contents(&self) -> Result<()> {
        let m = &self.manifest;
        let template =
            Template::parse(&m.template).map_err(|e| anyhow!("{MANIFEST_FILE}: template: {e}"))?;
        let rows = |name: &str| -> Result<usize> {
            Ok(self.tensor(name)?.dims().first().copied().unwrap_or(0))
        };
        let (name, found, expected, what) = match m.method {
            MethodKind::PromptTuning | MethodKind::PTuning => (
                PROMPT_EMBEDDINGS,
                rows(PROMPT_EMBEDDINGS)?,
                template.soft_count(),
                "soft slots in its template",
            ),
            MethodKind::PrefixTuning => (
                PROMPT_EMBEDDINGS,
                rows(PROMPT_EMBEDDINGS)?,
                m.settings.prefix_len,
                "prefix positions in its settings",
            ),
            MethodKind::Autoprompt => (
                TRIGGER_IDS,
                rows(TRIGGER_IDS)?,
                template.trigger_count(),
                "trigger slots in its template",
            ),
            // Fine-tuning's weights are checked against the model when loaded; zero-shot has none.
            MethodKind::FineTuning | MethodKind::ZeroShot => return Ok(()),
        };
        if found != expected {
            bail!(
                "{TENSORS_FILE}: tensor \"{name}\" has {found} rows but {MANIFEST_FILE} has {expected} {what}; the two files do not belong together"
            );
        }
        for (n, t) in &self.tensors {
            if t.dtype().is_float() {
                let values = t
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                if values.iter().any(|v| !v.is_finite()) {
                    bail!("{TENSORS_FILE}: tensor \"{n}\" holds NaN or infinite values");
                }
            }
        }
        Ok(())
    }

    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .with_context(|| format!("the prompt file has no tensor \"{name}\""))
    }

    /// Whether `model` is this fine-tuned model itself (its folder loaded as `--model`): the
    /// same config and the very same weights.
    fn is_the_model(&self, model: &Model) -> Result<bool> {
        if self.manifest.method != MethodKind::FineTuning
            || self.carried.as_ref().map(|c| &c.config) != Some(model.config())
        {
            return Ok(false);
        }
        let ours: HashMap<&str, &Tensor> =
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let theirs = model.llm.named_tensors();
        if theirs.len() != ours.len() {
            return Ok(false);
        }
        for (name, t) in &theirs {
            let Some(o) = ours.get(name.as_str()) else {
                return Ok(false);
            };
            if o.dims() != t.dims() {
                return Ok(false);
            }
            let diff = (o.to_dtype(candle_core::DType::F32)?
                - t.to_dtype(candle_core::DType::F32)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
            if diff != 0.0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Refuses a model other than the one the prompt was trained on (for a fine-tuned model:
    /// its base model, or the fine-tuned model itself).
    pub fn check_model(&self, model: &Model) -> Result<()> {
        self.check_bos(model)?;
        let want = &self.manifest.model;
        if want.fingerprint.is_empty() {
            return self.check_model_shape(model);
        }
        if want.fingerprint != model.fingerprint && !self.is_the_model(model)? {
            bail!(
                "this prompt was trained on model {} (fingerprint {}, hidden size {}, {} layers); \
                 the loaded model {} has fingerprint {} (hidden size {}, {} layers). \
                 A learned prompt only works with the model it was trained on.",
                want.spec,
                want.fingerprint,
                want.hidden_size,
                want.layers,
                model.spec,
                model.fingerprint,
                model.config().hidden_size,
                model.config().num_hidden_layers
            );
        }
        Ok(())
    }

    /// The prompt learned its vectors around a BOS, or without one: a tokenizer that does the
    /// other (a prompt saved before gradprompt added the BOS a Llama or Mistral tokenizer adds)
    /// would feed it a sequence it never saw.
    fn check_bos(&self, model: &Model) -> Result<()> {
        let Some(trained) = self.manifest.adds_bos else {
            return Ok(());
        };
        let now = tokenizer_adds_bos(&model.tokenizer)?;
        if trained != now {
            let (then, here) = if trained {
                ("with the tokenizer's BOS before the text", "adds none")
            } else {
                ("without a BOS token", "adds one")
            };
            bail!(
                "this prompt was trained {then}, and the loaded model's tokenizer ({}) {here}; train the prompt again on this model",
                model.spec
            );
        }
        Ok(())
    }

    /// A PEFT adapter from elsewhere names its base model but not the exact weights: it is
    /// checked by what its tensor's shape says (the hidden size, or the layers for a prefix).
    fn check_model_shape(&self, model: &Model) -> Result<()> {
        let want = &self.manifest.model;
        let c = model.config();
        let fits = (want.hidden_size == 0 || want.hidden_size == c.hidden_size)
            && (want.layers == 0 || want.layers == c.num_hidden_layers);
        if !fits {
            bail!(
                "this adapter was made for {} (hidden size {}, {} layers); the loaded model {} has hidden size {} and {} layers",
                if want.spec.is_empty() { "another model" } else { &want.spec },
                want.hidden_size,
                want.layers,
                model.spec,
                c.hidden_size,
                c.num_hidden_layers
            );
        }
        Ok(())
    }

    /// The prompt, and for fine-tuning the model it carries.
    pub fn prompt_for(&self, model: &Model) -> Result<(Option<Llm>, Prompt)> {
        self.check_model(model)?;
        let d = model.config().hidden_size;
        let soft = |name: &str| -> Result<Tensor> {
            let t = self.tensor(name)?.to_dtype(candle_core::DType::F32)?;
            if t.rank() != 2 || t.dim(1)? != d {
                bail!(
                    "tensor \"{name}\" has shape {:?}, expected [n, {d}]",
                    t.dims()
                );
            }
            Ok(t)
        };
        Ok(match self.manifest.method {
            MethodKind::ZeroShot => (None, Prompt::default()),
            MethodKind::PromptTuning | MethodKind::PTuning => (
                None,
                Prompt {
                    soft: Some(soft(PROMPT_EMBEDDINGS)?),
                    ..Default::default()
                },
            ),
            MethodKind::PrefixTuning => (
                None,
                Prompt {
                    prefix: Some(kv_from_flat(&model.llm, self.tensor(PROMPT_EMBEDDINGS)?)?),
                    ..Default::default()
                },
            ),
            MethodKind::Autoprompt => (
                None,
                Prompt {
                    triggers: self.tensor(TRIGGER_IDS)?.to_vec1::<u32>()?,
                    ..Default::default()
                },
            ),
            // Loaded as `--model DIR`, the model already is the fine-tuned one.
            MethodKind::FineTuning if model.fingerprint != self.manifest.model.fingerprint => {
                (None, Prompt::default())
            }
            MethodKind::FineTuning => {
                let map: HashMap<String, Tensor> = self.tensors.iter().cloned().collect();
                let llm = Llm::from_tensors(model.config().clone(), map, model.llm.device())?;
                (Some(llm), Prompt::default())
            }
        })
    }
}
