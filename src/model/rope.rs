//! Rotary position embeddings (Hugging Face's half-split layout), one table shared by every
//! block. The fused rotation serves frozen paths; a path that trains gets the same rotation
//! from differentiable ops, because candle's fused `rope` silently cuts the gradient graph.

use super::config::Config;
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

/// Where each row's text positions start: one offset for the whole batch, or one per row. Rows
/// that carry key/value prefixes of different lengths (a batch mixing tasks) number their text
/// from the end of their own prefix, as each would alone: a prefix key carries no rotation, so a
/// query's score against it depends on the query's absolute position.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Start {
    Batch(usize),
    Rows(Vec<usize>),
}

impl Start {
    /// Rows of different starts collapse to one when they agree (the fused path's common case).
    pub fn per_row(starts: Vec<usize>) -> Start {
        match starts.first() {
            Some(&s) if starts.iter().all(|&x| x == s) => Start::Batch(s),
            _ => Start::Rows(starts),
        }
    }

    /// The largest start (the context check's worst row).
    pub fn max(&self) -> usize {
        match self {
            Start::Batch(s) => *s,
            Start::Rows(r) => r.iter().copied().max().unwrap_or(0),
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
    pub fn new(cfg: &Config, device: &Device) -> Result<Self> {
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

    /// The rows of a `[max_pos, w]` table for positions `start..start + t`: `[t, w]` for one
    /// start, `[b, t, w]` for one per row (the fused `rope` takes either).
    fn rows(table: &Tensor, start: &Start, t: usize) -> candle_core::Result<Tensor> {
        match start {
            Start::Batch(s) => table.narrow(0, *s, t),
            Start::Rows(starts) => {
                let idx: Vec<u32> = starts
                    .iter()
                    .flat_map(|&s| (s..s + t).map(|p| p as u32))
                    .collect();
                let w = table.dim(1)?;
                table
                    .index_select(&Tensor::new(idx, table.device())?, 0)?
                    .reshape((starts.len(), t, w))
            }
        }
    }

    /// The gradient of `apply` (outside any graph): the rotation by the negative angle.
    pub fn apply_inverse(&self, g: &Tensor, start: &Start) -> candle_core::Result<Tensor> {
        let t = g.dim(2)?;
        let cos = Self::rows(&self.cos, start, t)?;
        let sin = Self::rows(&self.neg_sin, start, t)?;
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &sin)
    }

    /// `x`: `[b, heads, t, head_dim]`, each row at positions `start..start + t`.
    pub fn apply(&self, x: &Tensor, start: &Start) -> candle_core::Result<Tensor> {
        let t = x.dim(2)?;
        if x.track_op() {
            // `[t, hd]`, or `[b, 1, t, hd]` so each row's angles meet all its heads.
            let per_head = |c: Tensor| match start {
                Start::Batch(_) => Ok(c),
                Start::Rows(_) => c.unsqueeze(1),
            };
            let cos = per_head(Self::rows(&self.cos_full, start, t)?)?;
            let sin = per_head(Self::rows(&self.sin_full, start, t)?)?;
            let half = x.dim(3)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        } else {
            let cos = Self::rows(&self.cos, start, t)?.contiguous()?;
            let sin = Self::rows(&self.sin, start, t)?.contiguous()?;
            candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
        }
    }
}
