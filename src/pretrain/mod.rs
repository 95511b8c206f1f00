//! `gradprompt pretrain`: builds the built-in model from nothing. A generated corpus
//! (`corpus.rs`), a byte-level BPE tokenizer trained on it (`tokenizer.rs`), and a small
//! Llama-architecture model trained on it through the same forward as every other model.
//! Everything is seeded, so the same recipe gives the same bytes.

pub mod corpus;
pub mod tokenizer;

use crate::model::{Config, ForwardInput, Llm, LogitRows};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The whole recipe. `PretrainConfig::builtin()` is the one that made `assets/models/builtin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub seed: u64,
    /// Generated documents (one to three sentences each).
    pub documents: usize,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate_size: usize,
    pub seq_len: usize,
    pub batch_size: usize,
    pub steps: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
}

impl PretrainConfig {
    pub fn builtin() -> Self {
        Self {
            seed: 2026,
            documents: 100_000,
            vocab_size: 2048,
            hidden_size: 128,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            intermediate_size: 384,
            seq_len: 64,
            batch_size: 32,
            steps: 1000,
            lr: 3e-3,
            warmup_steps: 100,
            weight_decay: 0.01,
        }
    }

    /// A recipe small enough for a test: seconds, not minutes.
    pub fn quick() -> Self {
        Self {
            documents: 3000,
            vocab_size: 600,
            hidden_size: 32,
            layers: 2,
            heads: 2,
            kv_heads: 1,
            intermediate_size: 64,
            seq_len: 32,
            batch_size: 8,
            steps: 30,
            warmup_steps: 5,
            ..Self::builtin()
        }
    }

    pub fn model_config(&self) -> Config {
        Config {
            model_type: "llama".into(),
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: self.hidden_size / self.heads,
            vocab_size: self.vocab_size,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            // Room for the longest sample-task prompt with 20 soft tokens in front.
            max_position_embeddings: 256,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(0),
            eos_token_id: Some(0),
        }
    }

    fn check(&self) -> Result<()> {
        if self.heads == 0 || !self.hidden_size.is_multiple_of(self.heads) {
            bail!("hidden_size must be a multiple of heads");
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            bail!("heads must be a multiple of kv_heads");
        }
        if self.steps == 0 || self.batch_size == 0 || self.seq_len < 2 {
            bail!("steps, batch_size and seq_len must be positive");
        }
        Ok(())
    }
}

/// One training step's numbers, for a progress display.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    pub lr: f64,
    pub elapsed_s: f64,
}

/// What `pretrain.json` records next to the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub recipe: PretrainConfig,
    pub command: String,
    pub corpus_sha256: String,
    pub corpus_documents: usize,
    pub corpus_tokens: usize,
    pub tokens_seen: usize,
    pub parameters: usize,
    pub first_loss: f32,
    pub final_loss: f32,
    pub heldout_loss: f32,
    pub wall_seconds: f64,
    pub files: Vec<(String, u64, String)>,
}

/// Builds the model into `out` (created if needed): `config.json`, `model.safetensors`,
/// `tokenizer.json`, `pretrain.json` (this report) and `corpus-sample.txt`.
pub fn run(
    recipe: &PretrainConfig,
    tasks_dir: &Path,
    out: &Path,
    command: &str,
    on_step: &mut dyn FnMut(&Progress),
) -> Result<Report> {
    recipe.check()?;
    let start = Instant::now();
    let facts = corpus::Facts::load(tasks_dir)?;
    let docs = corpus::generate(&facts, recipe.seed, recipe.documents)?;
    let corpus_sha256 = hex(&Sha256::digest(docs.join("\n").as_bytes()));
    let tok = tokenizer::train(&docs, recipe.vocab_size)?;
    let eot = tok
        .token_to_id(tokenizer::END_OF_TEXT)
        .context("the tokenizer lost its end-of-text token")?;
    let mut cfg = recipe.model_config();
    // The trainer may stop short of the requested size on a small corpus.
    cfg.vocab_size = tok.get_vocab_size(true);

    // One stream of tokens, documents separated by end-of-text, cut into windows of
    // seq_len + 1 (inputs and next-token targets). The last 2% is held out.
    let encoded = tok
        .encode_batch(docs.iter().map(|d| d.as_str()).collect::<Vec<_>>(), false)
        .map_err(|e| anyhow!("tokenizing the corpus failed: {e}"))?;
    let mut stream = Vec::new();
    for e in &encoded {
        stream.push(eot);
        stream.extend_from_slice(e.get_ids());
    }
    let window = recipe.seq_len + 1;
    let windows: Vec<&[u32]> = stream.chunks_exact(window).collect();
    let heldout_n = (windows.len() / 50).max(1);
    if windows.len() < heldout_n + recipe.batch_size {
        bail!(
            "the corpus ({} tokens) is too small for batches of {} x {}",
            stream.len(),
            recipe.batch_size,
            window
        );
    }
    let (train_windows, heldout) = windows.split_at(windows.len() - heldout_n);

    let device = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(recipe.seed);
    let init = init_weights(&cfg, &mut rng, &device)?;
    let frozen = Llm::from_tensors(cfg.clone(), init, &device)?;
    let (llm, vars) = frozen.trainable_copy()?;
    let params: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = candle_nn::AdamW::new(
        params,
        candle_nn::ParamsAdamW {
            lr: recipe.lr,
            weight_decay: recipe.weight_decay,
            beta2: 0.99,
            ..Default::default()
        },
    )?;

    let mut order: Vec<usize> = (0..train_windows.len()).collect();
    order.shuffle(&mut rng);
    let mut cursor = 0;
    let mut first_loss = None;
    let mut last_loss = f32::NAN;
    for step in 1..=recipe.steps {
        let mut batch = Vec::with_capacity(recipe.batch_size * window);
        for _ in 0..recipe.batch_size {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            batch.extend_from_slice(train_windows[order[cursor]]);
            cursor += 1;
        }
        let lr = lr_at(recipe, step);
        let loss = lm_loss(&llm, &batch, recipe.batch_size, window, &device)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            bail!("pretraining diverged at step {step} (loss {value}): lower --lr");
        }
        opt.set_learning_rate(lr);
        // Through the model: its blocks hand their weights' gradients over outside candle's
        // graph (`Llm::backward`), which `backward_step`'s plain `loss.backward()` would miss.
        opt.step(&llm.backward(&loss)?)?;
        first_loss.get_or_insert(value);
        last_loss = value;
        on_step(&Progress {
            step,
            steps: recipe.steps,
            loss: value,
            lr,
            elapsed_s: start.elapsed().as_secs_f64(),
        });
    }

    let trained = llm.detached()?;
    let heldout_flat: Vec<u32> = heldout.iter().flat_map(|w| w.iter().copied()).collect();
    let mut heldout_sum = 0f32;
    let chunks: Vec<&[u32]> = heldout_flat.chunks(recipe.batch_size * window).collect();
    for c in &chunks {
        let rows = c.len() / window;
        heldout_sum += lm_loss(&trained, c, rows, window, &device)?.to_scalar::<f32>()?;
    }
    let heldout_loss = heldout_sum / chunks.len() as f32;

    // Half precision halves the file; the loader widens to f32 again.
    let tensors: HashMap<String, Tensor> = trained
        .named_tensors()
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_dtype(DType::F16)?)))
        .collect::<Result<_>>()?;
    let weights = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)?;
    let mut config_json = cfg.to_hf_json();
    config_json["torch_dtype"] = "float16".into();
    let config_text = serde_json::to_string_pretty(&config_json)?;
    let tokenizer_text = tok
        .to_string(false)
        .map_err(|e| anyhow!("cannot serialise the tokenizer: {e}"))?;
    // What the model read, for the curious: the first documents of the corpus.
    let sample: Vec<&str> = docs.iter().take(200).map(String::as_str).collect();
    let sample_text = sample.join("\n") + "\n";
    let model_files: [(&str, &[u8]); 3] = [
        ("config.json", config_text.as_bytes()),
        ("model.safetensors", &weights),
        ("tokenizer.json", tokenizer_text.as_bytes()),
    ];
    let files = model_files
        .iter()
        .map(|(name, bytes)| {
            (
                name.to_string(),
                bytes.len() as u64,
                hex(&Sha256::digest(bytes)),
            )
        })
        .collect();
    let report = Report {
        recipe: recipe.clone(),
        command: command.to_string(),
        corpus_sha256,
        corpus_documents: docs.len(),
        corpus_tokens: stream.len(),
        tokens_seen: recipe.steps * recipe.batch_size * recipe.seq_len,
        parameters: trained.parameter_count(),
        first_loss: first_loss.unwrap_or(f32::NAN),
        final_loss: last_loss,
        heldout_loss,
        wall_seconds: start.elapsed().as_secs_f64(),
        files,
    };
    let report_text = serde_json::to_string_pretty(&report)?;
    // One folder swap: a kill mid-save leaves the previous model whole, never a config.json
    // from one run beside the weights of another.
    let mut all = model_files.to_vec();
    all.push(("corpus-sample.txt", sample_text.as_bytes()));
    all.push(("pretrain.json", report_text.as_bytes()));
    crate::atomic::write_folder(out, &all)?;
    Ok(report)
}

/// Mean next-token cross-entropy over `rows` windows of `window` tokens.
fn lm_loss(llm: &Llm, flat: &[u32], rows: usize, window: usize, dev: &Device) -> Result<Tensor> {
    let ids = Tensor::from_slice(&flat[..rows * window], (rows, window), dev)?;
    let t = window - 1;
    let inputs = ids.narrow(1, 0, t)?;
    let targets = ids.narrow(1, 1, t)?.flatten_all()?;
    let embeds = llm.embed(&inputs)?;
    let out = llm.forward(&ForwardInput {
        embeds: &embeds,
        attention_mask: None,
        prefix: None,
        logits: LogitRows::All,
        keep_kv: false,
    })?;
    Ok(candle_nn::loss::cross_entropy(&out.logits, &targets)?)
}

/// Linear warm-up, then cosine decay to a tenth of the peak.
fn lr_at(r: &PretrainConfig, step: usize) -> f64 {
    if step <= r.warmup_steps {
        return r.lr * step as f64 / r.warmup_steps.max(1) as f64;
    }
    let progress = (step - r.warmup_steps) as f64 / (r.steps - r.warmup_steps).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    r.lr * (0.1 + 0.9 * cosine)
}

/// GPT-2 style initialisation from our own seeded generator (candle's randn is not seeded
/// reproducibly across runs): normal(0, 0.02), residual projections scaled by
/// 1/sqrt(2 * layers), norms at one.
fn init_weights(cfg: &Config, rng: &mut StdRng, dev: &Device) -> Result<HashMap<String, Tensor>> {
    let mut normal = |shape: &[usize], std: f64| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            // Box-Muller: two uniforms give two independent normals.
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            v.push((r * a.cos() * std) as f32);
            v.push((r * a.sin() * std) as f32);
        }
        v.truncate(n);
        Ok(Tensor::from_vec(v, shape, dev)?)
    };
    let d = cfg.hidden_size;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.kv_dim();
    let ff = cfg.intermediate_size;
    let std = 0.02;
    let resid = std / (2.0 * cfg.num_hidden_layers as f64).sqrt();
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".into(),
        normal(&[cfg.vocab_size, d], std)?,
    );
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (name, shape, s) in [
            ("self_attn.q_proj", [q, d], std),
            ("self_attn.k_proj", [kv, d], std),
            ("self_attn.v_proj", [kv, d], std),
            ("self_attn.o_proj", [d, q], resid),
            ("mlp.gate_proj", [ff, d], std),
            ("mlp.up_proj", [ff, d], std),
            ("mlp.down_proj", [d, ff], resid),
        ] {
            w.insert(format!("{p}.{name}.weight"), normal(&shape, s)?);
        }
        for name in ["input_layernorm", "post_attention_layernorm"] {
            w.insert(
                format!("{p}.{name}.weight"),
                Tensor::ones(d, DType::F32, dev)?,
            );
        }
    }
    w.insert(
        "model.norm.weight".into(),
        Tensor::ones(d, DType::F32, dev)?,
    );
    Ok(w)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
