//! The Llama-family forward pass with the two hooks every prompting method needs:
//! input embeddings (soft vectors may stand anywhere) and per-layer key/value prefixes.
//!
//! Weights use the Hugging Face names and layout (half-split RoPE); loaders convert to it.
//! Frozen weights are plain tensors. On a path that trains (the input tracks gradients) only
//! differentiable ops are used: candle's fused rms_norm, softmax and rope silently cut the graph.

use super::config::Config;
use super::linear::Linear;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use std::collections::HashMap;

/// Keys and values to put in front of the text at every layer, as PEFT's prefix tuning does:
/// keys are used as given (no rotary embedding is applied to them) and the text positions are
/// numbered from the prefix length. Each tensor is `[batch or 1, kv_heads, n, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvPrefix {
    pub layers: Vec<(Tensor, Tensor)>,
}

impl KvPrefix {
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

/// The text's keys and values `[b, kv_heads, t, hd]` with a prefix's in front (a prefix of batch
/// 1 is shared by every row), contiguous.
pub(super) fn prepend_prefix(
    k: Tensor,
    v: Tensor,
    prefix: Option<(&Tensor, &Tensor)>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let Some((pk, pv)) = prefix else {
        return Ok((k, v));
    };
    let (b, kvh, _, hd) = k.dims4()?;
    let n = pk.dim(2)?;
    let pk = pk.broadcast_as((b, kvh, n, hd))?;
    let pv = pv.broadcast_as((b, kvh, n, hd))?;
    Ok((
        Tensor::cat(&[&pk, &k], 2)?.contiguous()?,
        Tensor::cat(&[&pv, &v], 2)?.contiguous()?,
    ))
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

#[derive(Debug, Clone)]
pub(super) struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.track_op() || self.weight.track_op() {
            let var = x.sqr()?.mean_keepdim(D::Minus1)?;
            let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
            x.broadcast_mul(&self.weight)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Rope {
    /// `[max_pos, head_dim / 2]` for the fused op.
    cos: Tensor,
    sin: Tensor,
    /// `-sin`: rotating by the negative angle is RoPE's backward (a rotation is orthogonal).
    neg_sin: Tensor,
    /// `[max_pos, head_dim]` (halves repeated) for the differentiable form.
    cos_full: Tensor,
    sin_full: Tensor,
}

impl Rope {
    fn new(cfg: &Config, device: &Device) -> Result<Self> {
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64) as f32)
            .collect();
        let max = cfg.max_position_embeddings.max(1);
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let pos = Tensor::arange(0u32, max as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max, 1))?;
        let angles = pos.matmul(&inv_freq)?;
        let cos = angles.cos()?;
        let sin = angles.sin()?;
        let cos_full = Tensor::cat(&[&cos, &cos], 1)?;
        let sin_full = Tensor::cat(&[&sin, &sin], 1)?;
        let neg_sin = sin.neg()?;
        Ok(Self {
            cos,
            sin,
            neg_sin,
            cos_full,
            sin_full,
        })
    }

    /// The gradient of `apply` (outside any graph): the rotation by the negative angle.
    pub fn apply_inverse(&self, g: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let t = g.dim(2)?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.neg_sin.narrow(0, offset, t)?;
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &sin)
    }

    /// `x`: `[b, heads, t, head_dim]`, positions `offset..offset + t`.
    pub fn apply(&self, x: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let t = x.dim(2)?;
        if x.track_op() {
            let cos = self.cos_full.narrow(0, offset, t)?;
            let sin = self.sin_full.narrow(0, offset, t)?;
            let half = x.dim(3)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        } else {
            let cos = self.cos.narrow(0, offset, t)?;
            let sin = self.sin.narrow(0, offset, t)?;
            candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub input_norm: RmsNorm,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_norm: RmsNorm,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

/// A frozen (or, for fine-tuning, trainable) Llama-family language model.
#[derive(Debug, Clone)]
pub struct Llm {
    pub cfg: Config,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
    /// Differentiate through each block as candle's composed ops instead of the block op with
    /// its hand-written backward (the reference the block op is tested against).
    composed_backward: bool,
}

/// Pulls named tensors out of a weight map, checking shapes, so that a wrong file says which
/// tensor is missing or misshapen.
struct WeightMap {
    tensors: HashMap<String, Tensor>,
}

impl WeightMap {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .remove(name)
            .with_context(|| format!("tensor \"{name}\" is missing"))?;
        if t.dims() != shape {
            bail!(
                "tensor \"{name}\" has shape {:?}, expected {:?}",
                t.dims(),
                shape
            );
        }
        Ok(if t.dtype() == DType::F32 {
            t
        } else {
            t.to_dtype(DType::F32)?
        })
    }

    fn take_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.tensors.contains_key(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Llm {
    /// Builds the model from tensors named as in a Hugging Face checkpoint
    /// (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub fn from_tensors(
        cfg: Config,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut w = WeightMap { tensors };
        let d = cfg.hidden_size;
        let q_dim = cfg.num_attention_heads * cfg.head_dim;
        let kv_dim = cfg.kv_dim();
        let ff = cfg.intermediate_size;
        let embed_tokens = w.take("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let norm = |w: &mut WeightMap, name: &str| -> Result<RmsNorm> {
                Ok(RmsNorm {
                    weight: w.take(&format!("{p}.{name}.weight"), &[d])?,
                    eps: cfg.rms_norm_eps,
                })
            };
            let linear = |w: &mut WeightMap, name: &str, out: usize, inp: usize, bias: bool| {
                let weight = w.take(&format!("{p}.{name}.weight"), &[out, inp])?;
                let b = if bias {
                    Some(w.take(&format!("{p}.{name}.bias"), &[out])?)
                } else {
                    w.take_opt(&format!("{p}.{name}.bias"), &[out])?
                };
                Ok::<_, anyhow::Error>(Linear::new(weight, b))
            };
            let bias = cfg.attention_bias;
            layers.push(Layer {
                input_norm: norm(&mut w, "input_layernorm")?,
                q_proj: linear(&mut w, "self_attn.q_proj", q_dim, d, bias)?,
                k_proj: linear(&mut w, "self_attn.k_proj", kv_dim, d, bias)?,
                v_proj: linear(&mut w, "self_attn.v_proj", kv_dim, d, bias)?,
                o_proj: linear(&mut w, "self_attn.o_proj", d, q_dim, false)?,
                post_norm: norm(&mut w, "post_attention_layernorm")?,
                gate_proj: linear(&mut w, "mlp.gate_proj", ff, d, false)?,
                up_proj: linear(&mut w, "mlp.up_proj", ff, d, false)?,
                down_proj: linear(&mut w, "mlp.down_proj", d, ff, false)?,
            });
        }
        let norm = RmsNorm {
            weight: w.take("model.norm.weight", &[d])?,
            eps: cfg.rms_norm_eps,
        };
        let lm_head = match w.take_opt("lm_head.weight", &[cfg.vocab_size, d])? {
            Some(head) if !cfg.tie_word_embeddings => Linear::new(head, None),
            _ if cfg.tie_word_embeddings => Linear::new(embed_tokens.clone(), None),
            _ => bail!("tensor \"lm_head.weight\" is missing and the config does not tie it to the embeddings"),
        };
        let rope = Rope::new(&cfg, device)?;
        Ok(Self {
            cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            device: device.clone(),
            composed_backward: false,
        })
    }

    /// Every weight under its Hugging Face name (a tied head is not repeated).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.clone(),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                l.input_norm.weight.clone(),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                l.post_norm.weight.clone(),
            ));
            for (name, lin) in [
                ("self_attn.q_proj", &l.q_proj),
                ("self_attn.k_proj", &l.k_proj),
                ("self_attn.v_proj", &l.v_proj),
                ("self_attn.o_proj", &l.o_proj),
                ("mlp.gate_proj", &l.gate_proj),
                ("mlp.up_proj", &l.up_proj),
                ("mlp.down_proj", &l.down_proj),
            ] {
                out.push((format!("{p}.{name}.weight"), lin.weight.clone()));
                if let Some(b) = &lin.bias {
                    out.push((format!("{p}.{name}.bias"), b.clone()));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.weight.clone()));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.weight.clone()));
        }
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
        let llm = Llm::from_tensors(self.cfg.clone(), tensors, &self.device)?;
        Ok((llm, vars))
    }

    /// The same weights outside any gradient graph (evaluating a fine-tuned copy must not pay
    /// for the backward it will never run).
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
        if let Some(p) = input.prefix {
            if p.layers.len() != self.layers.len() {
                bail!(
                    "the prefix has {} layers, the model has {}",
                    p.layers.len(),
                    self.layers.len()
                );
            }
        }
        if n + t > self.cfg.max_position_embeddings {
            bail!(
                "{} positions exceed the model's context of {}",
                n + t,
                self.cfg.max_position_embeddings
            );
        }
        let mask = self.attention_bias(b, t, n, input.attention_mask)?;
        let mut x = input.embeds.clone();
        let mut kept = Vec::new();
        let cfg = &self.cfg;
        let dims = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        for (i, layer) in self.layers.iter().enumerate() {
            let prefix = input.prefix.map(|p| &p.layers[i]);
            // A frozen block on a path that trains runs as one op with its own backward.
            let trains = x.track_op() || prefix.is_some_and(|(k, v)| k.track_op() || v.track_op());
            if trains && !input.keep_kv && !self.composed_backward && !self.is_trainable() {
                let op = super::block_op::BlockOp::new(layer, &self.rope, &mask, n, dims);
                x = super::block_op::apply(op, &x, prefix)?;
                continue;
            }
            let (y, kv) = self.layer_forward(layer, &x, &mask, prefix, n)?;
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
            kv: input.keep_kv.then_some(KvPrefix { layers: kept }),
        })
    }

    /// Additive attention bias `[b or 1, 1, t, n + t]`: causal over the text, prefix always
    /// visible, padding keys hidden. A large finite negative instead of -inf keeps a row whose
    /// keys are all padding finite (it can only be a padding row, whose output is never read).
    fn attention_bias(&self, b: usize, t: usize, n: usize, pad: Option<&Tensor>) -> Result<Tensor> {
        const NEG: f32 = -1e9;
        let s = n + t;
        let valid: Option<Vec<Vec<f32>>> = match pad {
            Some(m) => {
                let (mb, mt) = m.dims2()?;
                if (mb, mt) != (b, t) {
                    bail!("attention mask is [{mb}, {mt}], the input is [{b}, {t}]");
                }
                Some(m.to_dtype(DType::F32)?.to_vec2()?)
            }
            None => None,
        };
        let rows = if valid.is_some() { b } else { 1 };
        let mut bias = vec![0f32; rows * t * s];
        for r in 0..rows {
            for i in 0..t {
                for j in 0..t {
                    let hidden = j > i || valid.as_ref().is_some_and(|v| v[r][j] < 0.5);
                    if hidden {
                        bias[(r * t + i) * s + n + j] = NEG;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(bias, (rows, 1, t, s), &self.device)?)
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        mask: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        offset: usize,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let rep = h / kvh;

        let hn = layer.input_norm.forward(x)?;
        let q = layer
            .q_proj
            .forward(&hn)?
            .reshape((b, t, h, hd))?
            .transpose(1, 2)?;
        let k = layer
            .k_proj
            .forward(&hn)?
            .reshape((b, t, kvh, hd))?
            .transpose(1, 2)?;
        let v = layer
            .v_proj
            .forward(&hn)?
            .reshape((b, t, kvh, hd))?
            .transpose(1, 2)?;
        let q = self.rope.apply(&q, offset)?;
        let k = self.rope.apply(&k, offset)?;
        let v = v.contiguous()?;
        let (k, v) = prepend_prefix(k, v, prefix.map(|(pk, pv)| (pk, pv)))?;
        let s = k.dim(2)?;

        // Grouped-query attention without copying keys: the `rep` query heads that share a
        // key/value head are stacked along the sequence axis.
        let q = q.contiguous()?.reshape((b, kvh, rep * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.reshape((b, h, t, s))?;
        let scores = scores.broadcast_add(mask)?;
        let probs = if scores.track_op() {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let attn = probs.reshape((b, kvh, rep * t, s))?.matmul(&v)?;
        let attn = attn
            .reshape((b, h, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, h * hd))?;
        let x = (x + layer.o_proj.forward(&attn)?)?;

        let hn = layer.post_norm.forward(&x)?;
        let gate = candle_nn::ops::silu(&layer.gate_proj.forward(&hn)?)?;
        let up = layer.up_proj.forward(&hn)?;
        let x = (&x + layer.down_proj.forward(&(gate * up)?)?)?;
        Ok((x, (k, v)))
    }
}
