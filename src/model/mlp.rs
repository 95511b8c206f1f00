//! The SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.

use super::config::Config;
use super::kernels;
use super::linear::Linear;
use super::weights::{join, nest, WeightMap};
use anyhow::Result;
use candle_core::{Module, Tensor};

pub(super) const GATE_PROJ: &str = "gate_proj";
pub(super) const UP_PROJ: &str = "up_proj";
pub(super) const DOWN_PROJ: &str = "down_proj";

#[derive(Debug, Clone)]
pub(super) struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// `{name}.gate_proj`, `up_proj` and `down_proj`.
    pub fn load(w: &mut WeightMap, name: &str, cfg: &Config) -> Result<Self> {
        let (d, ff) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: Linear::load(w, &join(name, GATE_PROJ), (ff, d), false)?,
            up_proj: Linear::load(w, &join(name, UP_PROJ), (ff, d), false)?,
            down_proj: Linear::load(w, &join(name, DOWN_PROJ), (d, ff), false)?,
        })
    }

    /// The tensors under the names `load` takes them by.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        [
            (GATE_PROJ, &self.gate_proj),
            (UP_PROJ, &self.up_proj),
            (DOWN_PROJ, &self.down_proj),
        ]
        .into_iter()
        .flat_map(|(name, lin)| nest(name, lin.tensors()))
        .collect()
    }

    /// The same weights outside any gradient graph (storage shared).
    pub fn detached(&self) -> Self {
        Self {
            gate_proj: self.gate_proj.detached(),
            up_proj: self.up_proj.detached(),
            down_proj: self.down_proj.detached(),
        }
    }

    /// `silu(gate(hn)) * up(hn)` for the normed residual stream `hn` `[b, t, d]`: the down
    /// projection's input (the block adds `down_proj` of it to the residual in one pass).
    pub fn activation(&self, hn: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.gate_proj.forward(hn)?;
        let up = self.up_proj.forward(hn)?;
        if gate.track_op() || up.track_op() || !kernels::applies(&gate) {
            return candle_nn::ops::silu(&gate)? * up;
        }
        kernels::swiglu(&gate, &up)
    }
}
