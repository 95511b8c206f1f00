//! Prefix Tuning (Li & Liang 2021): a learned key/value prefix of length n in every attention
//! layer, which every position may attend to. Optimising the prefix directly is unstable, so it
//! is produced by an MLP over a small embedding (as PEFT's `prefix_projection`):
//! embedding [n, d] -> Linear(d, hidden) -> tanh -> Linear(hidden, layers * 2 * kv_dim).
//! Only the computed keys/values are exported; the MLP is dropped after training.
//!
//! A random prefix wrecks a frozen model's predictions before training starts (measured on
//! SmolLM2: dev accuracy fell from 0.66 to 0.51). Li & Liang initialise with the activations of
//! real words; here the prefix is the keys/values that the label words produce, plus the MLP's
//! output, whose last layer starts at zero, so the step-0 prefix is exactly that real-text
//! key/value cache. (Its last layer used to start as PyTorch's `nn.Linear` does, U(+-1/sqrt(512)):
//! with tanh activations of size ~1 that adds noise of about 0.6 per element to every key and
//! value, enough to start the prefix below the plain template on real sentiment data, issue 14.)
//! The first layer and the embedding get no gradient until the last layer has moved, one step
//! later, as with LoRA's zero-initialised B. The offset is a constant folded into the export.

use super::init::{sample_vocab_ids, token_embeddings, uniform};
use super::optim::AdamW;
use super::step::gradient_step;
use super::tensor_names::{PEFT_EMBEDDING, PREFIX_OFFSET, PROMPT_EMBEDDINGS};
use super::RunRng;
use super::{Batch, Method, MethodSettings, Prompt, StepContext};
use crate::model::{KvPrefix, Llm};
use anyhow::{bail, Result};
use candle_core::DType;
use candle_core::{Tensor, Var};

/// The reparameterising MLP and its input embedding (cloning shares the variables).
#[derive(Clone)]
struct PrefixMlp {
    /// `[n, layers * 2 * kv_dim]` keys/values of real text (not trained).
    offset: Tensor,
    embedding: Var,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

pub struct PrefixTuning {
    mlp: PrefixMlp,
    opt: AdamW,
}

impl PrefixTuning {
    pub fn new(
        llm: &Llm,
        n: usize,
        hidden: usize,
        init_text: &[u32],
        tok: &tokenizers::Tokenizer,
        rng: &mut RunRng,
        settings: &MethodSettings,
    ) -> Result<Self> {
        if n == 0 {
            bail!("prefix tuning needs a prefix length of at least 1");
        }
        let cfg = &llm.cfg;
        let d = cfg.hidden_size;
        let out = cfg.num_hidden_layers * 2 * cfg.kv_dim();
        // Start the embedding from real token vectors (Li & Liang found real-word
        // initialisation steadier than random).
        let ids = sample_vocab_ids(llm, tok, n, rng)?;
        let embedding = token_embeddings(llm, &ids)?;
        let var = |t: Tensor| Var::from_tensor(&t);
        let w1 = var(uniform(rng, (hidden, d), 1.0 / (d as f32).sqrt(), llm)?)?;
        let b1 = var(Tensor::zeros(
            hidden,
            candle_core::DType::F32,
            llm.device(),
        )?)?;
        let w2 = var(Tensor::zeros((out, hidden), DType::F32, llm.device())?)?;
        let b2 = var(Tensor::zeros(out, candle_core::DType::F32, llm.device())?)?;
        let embedding = var(embedding)?;
        // Biases are not decayed (the Hugging Face convention).
        let opt = AdamW::for_method(
            vec![
                embedding.clone(),
                w1.clone(),
                b1.clone(),
                w2.clone(),
                b2.clone(),
            ],
            vec![true, true, false, true, false],
            settings,
        )?;
        let offset = real_text_prefix(llm, n, init_text, &ids)?;
        Ok(Self {
            mlp: PrefixMlp {
                offset,
                embedding,
                w1,
                b1,
                w2,
                b2,
            },
            opt,
        })
    }
}

impl PrefixMlp {
    /// `[n, layers * 2 * kv_heads * head_dim]`, ordered
    /// `((layer * 2 + k_or_v) * kv_heads + head) * head_dim + i` as PEFT stores it.
    fn flat_prefix(&self) -> Result<Tensor> {
        let h = self
            .embedding
            .as_tensor()
            .matmul(&self.w1.as_tensor().t()?)?
            .broadcast_add(self.b1.as_tensor())?
            .tanh()?;
        Ok(h.matmul(&self.w2.as_tensor().t()?)?
            .broadcast_add(self.b2.as_tensor())?
            .add(&self.offset)?)
    }
}

/// The keys/values that `text` (cycled to `n` tokens; `fallback` ids if it is empty) produces
/// at every layer, flattened in PEFT order.
fn real_text_prefix(llm: &Llm, n: usize, text: &[u32], fallback: &[u32]) -> Result<Tensor> {
    let src = if text.is_empty() { fallback } else { text };
    let ids: Vec<u32> = (0..n).map(|i| src[i % src.len()]).collect();
    let embeds = llm.embed(&Tensor::new(ids.as_slice(), llm.device())?.unsqueeze(0)?)?;
    let kv = llm
        .forward(&crate::model::ForwardInput {
            embeds: &embeds,
            attention_mask: None,
            prefix: None,
            logits: crate::model::LogitRows::Last,
            keep_kv: true,
        })?
        .kv
        .expect("keep_kv returns the keys/values");
    // Per layer [1, kvh, n, hd] (k, v) -> [L, 2, kvh, n, hd] -> [n, L, 2, kvh, hd].
    let layers: Vec<Tensor> = kv
        .layers
        .iter()
        .map(|(k, v)| Tensor::cat(&[k, v], 0))
        .collect::<candle_core::Result<_>>()?;
    let t = Tensor::stack(&layers, 0)?
        .permute((3, 0, 1, 2, 4))?
        .contiguous()?;
    let width = t.elem_count() / n;
    Ok(t.reshape((n, width))?.detach())
}

/// Splits a PEFT-ordered flat prefix into per-layer `[1, kv_heads, n, head_dim]` keys/values.
pub fn kv_from_flat(llm: &Llm, flat: &Tensor) -> Result<KvPrefix> {
    let cfg = &llm.cfg;
    let n = flat.dim(0)?;
    let (l, kvh, hd) = (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim);
    if flat.dim(1)? != l * 2 * kvh * hd {
        bail!(
            "a prefix of width {} does not fit this model (expected {} = layers {l} x 2 x kv heads {kvh} x head dim {hd})",
            flat.dim(1)?,
            l * 2 * kvh * hd
        );
    }
    // [n, L, 2, kvh, hd] -> [L, 2, kvh, n, hd]
    let t = flat.reshape((n, l, 2, kvh, hd))?.permute((1, 2, 3, 0, 4))?;
    let mut layers = Vec::with_capacity(l);
    for i in 0..l {
        let k = t.get(i)?.get(0)?.unsqueeze(0)?.contiguous()?;
        let v = t.get(i)?.get(1)?.unsqueeze(0)?.contiguous()?;
        layers.push((k, v));
    }
    Ok(KvPrefix::new(layers))
}

impl Method for PrefixTuning {
    fn prompt(&self, llm: &Llm) -> Result<Prompt> {
        Ok(Prompt::with_prefix(kv_from_flat(
            llm,
            &self.mlp.flat_prefix()?,
        )?))
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let llm = ctx.llm;
        let mlp = self.mlp.clone();
        let prompt_fn = || Ok(Prompt::with_prefix(kv_from_flat(llm, &mlp.flat_prefix()?)?));
        gradient_step(llm, &prompt_fn, batch, &mut self.opt, ctx.lr)
    }

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(
            PROMPT_EMBEDDINGS.into(),
            self.mlp.flat_prefix()?.detach().copy()?,
        )])
    }

    fn vars(&self) -> &[Var] {
        self.opt.vars()
    }

    fn optimizer(&mut self) -> Option<&mut AdamW> {
        Some(&mut self.opt)
    }

    /// PEFT's `PrefixEncoder` names. Its embedding is `[n, d_model]` here where PEFT sizes it
    /// `[n, kv_dim]` on a grouped-query model, and the real-text offset has no PEFT module: the
    /// recipe's train.py resizes the embedding and first layer and adds the offset (README).
    fn peft_state(&self) -> Result<Vec<(String, Tensor)>> {
        let m = &self.mlp;
        let mut out = vec![(PEFT_EMBEDDING.to_string(), m.embedding.as_tensor().copy()?)];
        for (name, v) in [
            ("transform.0.weight", &m.w1),
            ("transform.0.bias", &m.b1),
            ("transform.2.weight", &m.w2),
            ("transform.2.bias", &m.b2),
        ] {
            out.push((name.to_string(), v.as_tensor().copy()?));
        }
        out.push((PREFIX_OFFSET.to_string(), m.offset.copy()?));
        Ok(out)
    }
}
