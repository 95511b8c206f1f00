//! RMSNorm, fused when nothing trains through it and composed of differentiable ops when
//! something does: candle's fused `rms_norm` silently cuts the gradient graph.

use super::weights::{join, WeightMap};
use candle_core::{Tensor, D};

const WEIGHT: &str = "weight";

#[derive(Debug, Clone)]
pub(super) struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    /// `{name}.weight`, `[dim]`.
    pub fn load(w: &mut WeightMap, name: &str, dim: usize, eps: f64) -> anyhow::Result<Self> {
        Ok(Self {
            weight: w.take(&join(name, WEIGHT), &[dim])?,
            eps,
        })
    }

    /// The tensors under the names `load` takes them by.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        vec![(WEIGHT.to_string(), &self.weight)]
    }

    /// The same weight outside any gradient graph (storage shared).
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            eps: self.eps,
        }
    }

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
