//! Causal self-attention with grouped-query heads: the q/k/v/o projections, rotary embeddings,
//! a key/value prefix in front of the text, the additive mask and the softmax.
//!
//! On a path that trains only differentiable ops are used (candle's fused softmax and rope
//! silently cut the graph); frozen paths take the fused ones.

use super::config::Config;
use super::linear::Linear;
use super::rope::{Rope, Start};
use super::weights::{join, nest, WeightMap};
use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor, D};

pub(super) const Q_PROJ: &str = "q_proj";
pub(super) const K_PROJ: &str = "k_proj";
pub(super) const V_PROJ: &str = "v_proj";
pub(super) const O_PROJ: &str = "o_proj";

#[derive(Debug, Clone)]
pub(super) struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// `{name}.q_proj`, `k_proj`, `v_proj` (with biases when the config says so) and `o_proj`.
    pub fn load(w: &mut WeightMap, name: &str, cfg: &Config) -> Result<Self> {
        let d = cfg.hidden_size;
        let q_dim = cfg.num_attention_heads * cfg.head_dim;
        let kv_dim = cfg.kv_dim();
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: Linear::load(w, &join(name, Q_PROJ), (q_dim, d), bias)?,
            k_proj: Linear::load(w, &join(name, K_PROJ), (kv_dim, d), bias)?,
            v_proj: Linear::load(w, &join(name, V_PROJ), (kv_dim, d), bias)?,
            o_proj: Linear::load(w, &join(name, O_PROJ), (d, q_dim), false)?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// The same weights outside any gradient graph (storage shared).
    pub fn detached(&self) -> Self {
        Self {
            q_proj: self.q_proj.detached(),
            k_proj: self.k_proj.detached(),
            v_proj: self.v_proj.detached(),
            o_proj: self.o_proj.detached(),
            ..*self
        }
    }

    /// The tensors under the names `load` takes them by.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        [
            (Q_PROJ, &self.q_proj),
            (K_PROJ, &self.k_proj),
            (V_PROJ, &self.v_proj),
            (O_PROJ, &self.o_proj),
        ]
        .into_iter()
        .flat_map(|(name, lin)| nest(name, lin.tensors()))
        .collect()
    }

    /// The heads' outputs, merged (`o_proj`'s input: the caller adds `o_proj` of it to the
    /// residual in one pass) for the normed input `hn`
    /// `[b, t, d]`, each row's text at positions from its `start`, and the keys (after RoPE) and values it
    /// attended to, prefix included.
    pub fn forward(
        &self,
        hn: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        start: &Start,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, _) = hn.dims3()?;
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let rep = h / kvh;

        let q = self
            .q_proj
            .forward(hn)?
            .reshape((b, t, h, hd))?
            .transpose(1, 2)?;
        let k = self
            .k_proj
            .forward(hn)?
            .reshape((b, t, kvh, hd))?
            .transpose(1, 2)?;
        let v = self
            .v_proj
            .forward(hn)?
            .reshape((b, t, kvh, hd))?
            .transpose(1, 2)?;
        let q = rope.apply(&q, start)?;
        let k = rope.apply(&k, start)?;
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
        Ok((attn, (k, v)))
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

/// Additive attention bias `[b or 1, 1, t, n + t]`: causal over the text, the prefix visible
/// (for rows with their own prefix lengths, `prefix_lens`, only that row's first positions),
/// padding keys hidden. A large finite negative instead of -inf keeps a row whose keys are all
/// padding finite (it can only be a padding row, whose output is never read).
pub(super) fn attention_bias(
    b: usize,
    t: usize,
    n: usize,
    pad: Option<&Tensor>,
    prefix_lens: Option<&[usize]>,
    device: &Device,
) -> Result<Tensor> {
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
    if let Some(lens) = prefix_lens {
        if lens.len() != b || lens.iter().any(|&l| l > n) {
            bail!("prefix lengths {lens:?} do not fit a batch of {b} rows with a prefix of {n}");
        }
    }
    let rows = if valid.is_some() || prefix_lens.is_some() {
        b
    } else {
        1
    };
    let mut bias = vec![0f32; rows * t * s];
    for r in 0..rows {
        if let Some(lens) = prefix_lens {
            for i in 0..t {
                bias[(r * t + i) * s + lens[r]..(r * t + i) * s + n].fill(NEG);
            }
        }
        for i in 0..t {
            for j in 0..t {
                let hidden = j > i || valid.as_ref().is_some_and(|v| v[r][j] < 0.5);
                if hidden {
                    bias[(r * t + i) * s + n + j] = NEG;
                }
            }
        }
    }
    Ok(Tensor::from_vec(bias, (rows, 1, t, s), device)?)
}
