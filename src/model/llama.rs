//! The Llama-family forward pass with the two hooks every prompting method needs:
//! input embeddings (soft vectors may stand anywhere) and per-layer key/value prefixes.
//!
//! This file owns the model as a whole (embedding, blocks, final norm, head) and the forward's
//! orchestration: the mask, the prefix per block, which blocks run as the fused block op
//! (`block_op.rs`), which rows get logits. A block's parts are `block.rs`, `attention.rs`,
//! `mlp.rs`, `rms_norm.rs` and `rope.rs`; each loads its weights and names them from one list.
//!
//! Weights use the Hugging Face names and layout (half-split RoPE); loaders convert to it.
//! Frozen weights are plain tensors. On a path that trains (the input tracks gradients) only
//! differentiable ops are used: candle's fused rms_norm, softmax and rope silently cut the graph.

use super::attention::attention_bias;
use super::block::Block;
use super::block_op::{self, BlockOp, WeightGradSink};
use super::config::Config;
use super::linear::Linear;
use super::rms_norm::RmsNorm;
use super::rope::{Rope, Start};
use super::weights::{join, nest, WeightMap};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Module, Tensor, Var};
use std::collections::HashMap;

/// Keys and values to put in front of the text at every layer, as PEFT's prefix tuning does:
/// keys are used as given (no rotary embedding is applied to them) and the text positions are
/// numbered from the prefix length. Each tensor is `[batch or 1, kv_heads, n, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvPrefix {
    pub layers: Vec<(Tensor, Tensor)>,
    /// Rows that each carry their own prefix (a batch mixing tasks): each row's real length,
    /// its prefix padded at the end to `n`. The padding is masked and each row's text is
    /// numbered from its own length, so a row scores as it would alone. None: every row's
    /// prefix is all `n` positions.
    pub row_lens: Option<Vec<usize>>,
}

impl KvPrefix {
    /// A prefix every row uses in full.
    pub fn new(layers: Vec<(Tensor, Tensor)>) -> KvPrefix {
        KvPrefix {
            layers,
            row_lens: None,
        }
    }

    pub fn len(&self) -> usize {
        self.layers
            .first()
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which rows of the `[batch * seq]` hidden states get logits.
#[derive(Debug, Clone)]
pub enum LogitRows {
    All,
    /// The last position of every sequence.
    Last,
    /// Flat indices `b * seq_len + t`.
    Rows(Vec<u32>),
}

pub struct ForwardInput<'a> {
    /// `[batch, seq, hidden]`.
    pub embeds: &'a Tensor,
    /// `[batch, seq]`, 1 for real tokens and 0 for padding. Padding keys are hidden from every
    /// query. Positions are numbered from the start of the row; since RoPE scores depend only on
    /// relative positions, left and right padding give the unpadded logits. With a prefix (whose
    /// keys carry no rotation) pad on the right.
    pub attention_mask: Option<&'a Tensor>,
    pub prefix: Option<&'a KvPrefix>,
    pub logits: LogitRows,
    /// Return every layer's keys (after RoPE) and values, prefix included: they can be fed back
    /// as a `KvPrefix` (a key/value cache for generation, or a prefix made from real text).
    pub keep_kv: bool,
}

pub struct ForwardOutput {
    /// `[rows, vocab]`.
    pub logits: Tensor,
    pub kv: Option<KvPrefix>,
}

/// Projections up to this size (2 GiB, about 500M parameters in f32) keep a transposed copy
/// for the frozen forward (`linear.rs`); larger models keep one copy of their weights.
pub const TRANSPOSED_WEIGHTS_MAX_BYTES: usize = 2 << 30;

/// A frozen (or, for fine-tuning, trainable) Llama-family language model.
#[derive(Debug, Clone)]
pub struct Llm {
    pub cfg: Config,
    embed_tokens: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
    /// Differentiate through each block as candle's composed ops instead of the block op with
    /// its hand-written backward (the reference the block op is tested against).
    composed_backward: bool,
    /// A trainable copy's blocks put their weights' gradients here (`block_op.rs`);
    /// [`Llm::backward`] moves them into the gradient store.
    weight_grads: Option<WeightGradSink>,
}

/// The model's own tensor names; each part below names its own (`Block`, `Attention`, ...).
pub(super) const EMBED_TOKENS: &str = "model.embed_tokens.weight";
/// Block `i` is `model.layers.{i}`.
const LAYERS: &str = "model.layers";
/// The final RMSNorm (its `weight` is named by `RmsNorm`).
pub(super) const NORM: &str = "model.norm";
pub(super) const LM_HEAD: &str = "lm_head.weight";

/// Where block `i`'s tensors live: `model.layers.{i}`.
pub(super) fn block_name(i: usize) -> String {
    join(LAYERS, &i.to_string())
}

impl Llm {
    /// Builds the model from tensors named as in a Hugging Face checkpoint
    /// (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub fn from_tensors(
        cfg: Config,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut w = WeightMap::new(tensors);
        let d = cfg.hidden_size;
        let embed_tokens = w.take(EMBED_TOKENS, &[cfg.vocab_size, d])?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::load(&mut w, &block_name(i), &cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(&mut w, NORM, d, cfg.rms_norm_eps)?;
        let lm_head = match w.take_opt(LM_HEAD, &[cfg.vocab_size, d])? {
            Some(head) if !cfg.tie_word_embeddings => Linear::new(head, None),
            _ if cfg.tie_word_embeddings => Linear::new(embed_tokens.clone(), None),
            _ => bail!(
                "tensor \"{LM_HEAD}\" is missing and the config does not tie it to the embeddings"
            ),
        };
        // Weights of blocks beyond the config's count would otherwise be dropped silently, and
        // the model run with fewer layers than it was trained with.
        let prefix = format!("{LAYERS}.");
        let extra = w
            .remaining()
            .filter_map(|n| {
                n.strip_prefix(&prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max();
        if let Some(last) = extra {
            bail!(
                "the weights have {} layers but the config's num_hidden_layers is {}; the config does not belong to these weights",
                last + 1,
                cfg.num_hidden_layers
            );
        }
        let rope = Rope::new(&cfg, device)?;
        let mut llm = Self {
            cfg,
            embed_tokens,
            blocks,
            norm,
            lm_head,
            rope,
            device: device.clone(),
            composed_backward: false,
            weight_grads: None,
        };
        // The transposed copies double the projections' memory (`linear.rs`); past this size
        // the memory matters more than the 3-15% faster projections.
        let bytes: usize = llm
            .linears_mut()
            .iter()
            .map(|l| l.weight.elem_count() * l.weight.dtype().size_in_bytes())
            .sum();
        if bytes > TRANSPOSED_WEIGHTS_MAX_BYTES {
            llm.linears_mut()
                .into_iter()
                .for_each(Linear::without_transposed);
        }
        Ok(llm)
    }

    /// Every weight under its Hugging Face name (a tied head is not repeated): the names
    /// `from_tensors` takes them by.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(EMBED_TOKENS.to_string(), &self.embed_tokens)];
        for (i, block) in self.blocks.iter().enumerate() {
            out.extend(nest(&block_name(i), block.tensors()));
        }
        out.extend(nest(NORM, self.norm.tensors()));
        if !self.cfg.tie_word_embeddings {
            out.push((LM_HEAD.to_string(), &self.lm_head.weight));
        }
        out.into_iter().map(|(n, t)| (n, t.clone())).collect()
    }

    /// Every projection: the blocks' seven, then the output head.
    pub(super) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::with_capacity(self.blocks.len() * 7 + 1);
        for b in &mut self.blocks {
            let (a, m) = (&mut b.attn, &mut b.mlp);
            out.extend([&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj]);
            out.extend([&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]);
        }
        out.push(&mut self.lm_head);
        out
    }

    /// A copy whose every weight is a trainable `Var` (the full fine-tuning baseline).
    pub fn trainable_copy(&self) -> Result<(Llm, Vec<(String, Var)>)> {
        let mut vars = Vec::new();
        let mut tensors = HashMap::new();
        for (name, t) in self.named_tensors() {
            let var = Var::from_tensor(&t.copy()?)?;
            tensors.insert(name.clone(), var.as_tensor().clone());
            vars.push((name, var));
        }
        let llm = Llm {
            composed_backward: self.composed_backward,
            weight_grads: Some(WeightGradSink::default()),
            ..Llm::from_tensors(self.cfg.clone(), tensors, &self.device)?
        };
        Ok((llm, vars))
    }

    /// The same weights outside any gradient graph (evaluating a fine-tuned copy must not pay
    /// for the backward it will never run). The copy shares storage with trainable weights,
    /// which the optimiser updates in place, while its frozen projections keep transposed
    /// copies made at first use: do not keep it across an update, detach again.
    pub fn detached(&self) -> Result<Llm> {
        let tensors = self
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.detach()))
            .collect();
        Llm::from_tensors(self.cfg.clone(), tensors, &self.device)
    }

    /// The same model differentiating through candle's composed ops in every block (slower;
    /// the reference that the block op's hand-written backward is tested against).
    pub fn with_composed_backward(&self) -> Llm {
        Llm {
            composed_backward: true,
            ..self.clone()
        }
    }

    /// The gradients of `loss` with respect to everything it was computed from, the weights of a
    /// trainable copy included: use this rather than `loss.backward()` on a model whose weights
    /// train, whose blocks hand their weights' gradients over outside candle's graph.
    pub fn backward(&self, loss: &Tensor) -> Result<candle_core::backprop::GradStore> {
        let Some(sink) = &self.weight_grads else {
            return Ok(loss.backward()?);
        };
        // Left over from a backward that did not come through here: not this loss's.
        sink.lock().unwrap().clear();
        let mut store = loss.backward()?;
        for (weight, grad) in sink.lock().unwrap().drain(..) {
            // A weight used twice in one graph (never in a block today) gets both gradients.
            let grad = match store.remove(&weight) {
                Some(other) => (other + grad)?,
                None => grad,
            };
            store.insert(&weight, grad);
        }
        Ok(store)
    }

    /// Whether the weights are trainable (a fine-tuning copy).
    pub fn is_trainable(&self) -> bool {
        self.embed_tokens.track_op()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn parameter_count(&self) -> usize {
        self.named_tensors()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum()
    }

    /// The token embedding matrix `[vocab, hidden]` (frozen unless this is a trainable copy).
    pub fn embedding_matrix(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// `[batch, seq]` ids to `[batch, seq, hidden]` embeddings.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        Ok(self
            .embed_tokens
            .index_select(&flat, 0)?
            .reshape((b, t, self.cfg.hidden_size))?)
    }

    /// The final hidden states (after the last norm: what the output embedding multiplies)
    /// at flat rows `b * seq + t` of `embeds` `[batch, seq, hidden]`, as `[rows, hidden]`; no
    /// prefix, no gradients. For AutoPrompt's label search, which classifies these states
    /// (recovering them from the logits instead needs vocab >= hidden and loses precision).
    pub fn final_hidden(
        &self,
        embeds: &Tensor,
        attention_mask: Option<&Tensor>,
        rows: &[u32],
    ) -> Result<Tensor> {
        let (b, t, d) = embeds
            .dims3()
            .context("embeddings must be [batch, seq, hidden]")?;
        if t > self.cfg.max_position_embeddings {
            bail!(
                "{t} positions exceed the model's context of {}",
                self.cfg.max_position_embeddings
            );
        }
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= b * t) {
            bail!(
                "hidden-state row {bad} is outside the batch of {} rows",
                b * t
            );
        }
        let mask = attention_bias(b, t, 0, attention_mask, None, &self.device)?;
        let mut x = embeds.detach();
        for block in &self.blocks {
            x = block
                .forward(&x, &self.rope, &mask, None, &Start::Batch(0))?
                .0;
        }
        let picked = x
            .reshape((b * t, d))?
            .index_select(&Tensor::new(rows, &self.device)?, 0)?;
        Ok(self.norm.forward(&picked)?)
    }

    pub fn forward(&self, input: &ForwardInput) -> Result<ForwardOutput> {
        let (b, t, d) = input
            .embeds
            .dims3()
            .context("embeddings must be [batch, seq, hidden]")?;
        if d != self.cfg.hidden_size {
            bail!(
                "embeddings have width {d}, the model expects {}",
                self.cfg.hidden_size
            );
        }
        let n = input.prefix.map(|p| p.len()).unwrap_or(0);
        let row_lens = input.prefix.and_then(|p| p.row_lens.as_deref());
        let start = match row_lens {
            Some(lens) => Start::per_row(lens.to_vec()),
            None => Start::Batch(n),
        };
        if let Some(p) = input.prefix {
            if p.layers.len() != self.blocks.len() {
                bail!(
                    "the prefix has {} layers, the model has {}",
                    p.layers.len(),
                    self.blocks.len()
                );
            }
        }
        if start.max() + t > self.cfg.max_position_embeddings {
            bail!(
                "{} positions exceed the model's context of {}",
                start.max() + t,
                self.cfg.max_position_embeddings
            );
        }
        let mask = attention_bias(b, t, n, input.attention_mask, row_lens, &self.device)?;
        let mut x = input.embeds.clone();
        let mut kept = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let prefix = input.prefix.map(|p| &p.layers[i]);
            // A block on a path that trains runs as one op with its own backward; a trainable
            // copy's weights get their gradients through the sink (`Llm::backward`).
            let trains = x.track_op() || prefix.is_some_and(|(k, v)| k.track_op() || v.track_op());
            let weights_ok = !self.is_trainable() || self.weight_grads.is_some();
            // The block op's kernels are CPU code; a GPU differentiates candle's composed ops.
            let op_runs_here = self.device.is_cpu() && !self.composed_backward;
            if trains && !input.keep_kv && op_runs_here && weights_ok {
                let sink = self.weight_grads.as_ref();
                let op = BlockOp::new(block, &self.rope, &mask, n, start.clone(), sink);
                x = block_op::apply(op, &x, prefix)?;
                continue;
            }
            let (y, kv) = block.forward(&x, &self.rope, &mask, prefix, &start)?;
            x = y;
            if input.keep_kv {
                kept.push(kv);
            }
        }
        let flat = x.reshape((b * t, d))?;
        let rows = match &input.logits {
            LogitRows::All => flat,
            LogitRows::Last => {
                let idx: Vec<u32> = (0..b).map(|i| (i * t + t - 1) as u32).collect();
                flat.index_select(&Tensor::new(idx, &self.device)?, 0)?
            }
            LogitRows::Rows(idx) => {
                if let Some(bad) = idx.iter().find(|&&r| r as usize >= b * t) {
                    bail!("logit row {bad} is outside the batch of {} rows", b * t);
                }
                flat.index_select(&Tensor::new(idx.as_slice(), &self.device)?, 0)?
            }
        };
        let logits = self.lm_head.forward(&self.norm.forward(&rows)?)?;
        Ok(ForwardOutput {
            logits,
            kv: input.keep_kv.then_some(KvPrefix {
                layers: kept,
                row_lens: row_lens.map(<[usize]>::to_vec),
            }),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn tiny_config(tied: bool, attention_bias: bool) -> Config {
        Config {
            model_type: "llama".into(),
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 4,
            vocab_size: 10,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 32,
            tie_word_embeddings: tied,
            attention_bias,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// A checkpoint's tensors, named and ordered as written out here by hand (the Hugging Face
    /// layout and the order the fingerprint hashes), with random values.
    pub fn checkpoint(cfg: &Config) -> Vec<(String, Tensor)> {
        let (d, ff, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (q, kv) = (cfg.num_attention_heads * cfg.head_dim, cfg.kv_dim());
        let mut shapes = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            shapes.push((format!("{p}.input_layernorm.weight"), vec![d]));
            shapes.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
            for (name, out, inp, bias) in [
                ("self_attn.q_proj", q, d, cfg.attention_bias),
                ("self_attn.k_proj", kv, d, cfg.attention_bias),
                ("self_attn.v_proj", kv, d, cfg.attention_bias),
                ("self_attn.o_proj", d, q, false),
                ("mlp.gate_proj", ff, d, false),
                ("mlp.up_proj", ff, d, false),
                ("mlp.down_proj", d, ff, false),
            ] {
                shapes.push((format!("{p}.{name}.weight"), vec![out, inp]));
                if bias {
                    shapes.push((format!("{p}.{name}.bias"), vec![out]));
                }
            }
        }
        shapes.push(("model.norm.weight".to_string(), vec![d]));
        if !cfg.tie_word_embeddings {
            shapes.push(("lm_head.weight".to_string(), vec![v, d]));
        }
        shapes
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap();
                (name, t)
            })
            .collect()
    }

    fn load(cfg: &Config, tensors: &[(String, Tensor)]) -> Llm {
        let map = tensors.iter().cloned().collect();
        Llm::from_tensors(cfg.clone(), map, &Device::Cpu).unwrap()
    }

    fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
        let names = |ts: &[(String, Tensor)]| ts.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b));
        for ((name, x), (_, y)) in a.iter().zip(b) {
            let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(x, y, "{name}");
        }
    }

    #[test]
    fn named_tensors_are_the_checkpoint_names_in_fingerprint_order() {
        for (tied, bias) in [(false, true), (true, false)] {
            let cfg = tiny_config(tied, bias);
            let ckpt = checkpoint(&cfg);
            assert_same(&load(&cfg, &ckpt).named_tensors(), &ckpt);
        }
    }

    #[test]
    fn a_model_loads_back_from_its_named_tensors() {
        let cfg = tiny_config(false, true);
        let llm = load(&cfg, &checkpoint(&cfg));
        let named = llm.named_tensors();
        assert_same(&load(&cfg, &named).named_tensors(), &named);
        assert_same(&llm.detached().unwrap().named_tensors(), &named);
        let (copy, vars) = llm.trainable_copy().unwrap();
        let vars: Vec<(String, Tensor)> = vars
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        assert_same(&vars, &named);
        assert_same(&copy.named_tensors(), &named);
        assert!(copy.is_trainable() && !llm.is_trainable());
    }

    #[test]
    fn frozen_projections_keep_a_transposed_weight_and_trainable_ones_none() {
        let cfg = tiny_config(true, true);
        let mut llm = load(&cfg, &checkpoint(&cfg));
        assert!(llm.linears_mut().iter().all(|l| l.keeps_transposed()));
        // A copy that trains keeps none, nor do the detached weights its block op computes
        // with: they change at every update, and a transposed copy would go stale.
        let (mut copy, _) = llm.trainable_copy().unwrap();
        assert!(copy.linears_mut().iter().all(|l| !l.keeps_transposed()));
        let detached: Vec<bool> = copy
            .blocks
            .iter()
            .map(|b| b.detached().attn.q_proj.keeps_transposed())
            .collect();
        assert_eq!(detached, vec![false; cfg.num_hidden_layers]);
        // Evaluating a fine-tuned copy detaches it into a frozen model: that one keeps them.
        assert!(copy
            .detached()
            .unwrap()
            .linears_mut()
            .iter()
            .all(|l| l.keeps_transposed()));
    }
}
