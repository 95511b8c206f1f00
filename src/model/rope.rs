//! Rotary position embeddings (Hugging Face's half-split layout), one table shared by every
//! block. The fused rotation serves frozen paths; a path that trains gets the same rotation
//! from differentiable ops, because candle's fused `rope` silently cuts the gradient graph.

use super::config::Config;
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

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
